import { realpath } from 'node:fs/promises';
import path from 'node:path';
import type { ApiClient } from '../src/api/client.ts';
import { mayHaveBeenProcessed } from '../src/api/classify.ts';
import { UnsafePathError } from '../src/errors.ts';
import type { FileRef } from '../src/folder-handle.ts';
import { admitOpened, openAdmitted } from '../src/sources/admitted-file.ts';
import { openDropped, type OpenedDrop } from '../src/sources/dropped-file.ts';
import type { ImportItem } from '../src/sources/import-items.ts';
import { mediaTypeOfFile } from '../src/sources/media-type.ts';
import { derivePublicId } from '../src/sources/public-id.ts';
import { SmallFileReader } from '../src/sources/small-file.ts';
import { uploadOnce, type ServerCopy } from '../src/store/document-commit.ts';
import { throwIfRowSettled } from '../src/store/row-signals.ts';
import type { RowJobKind } from './job-kind.ts';

export interface UploadPayload {
  item: ImportItem;
  /** --check-existing: ask the API about the document even when nothing is in doubt. */
  checkExisting: boolean;
  /**
   * A file of a watched folder (`idsync watch`), where whoever drops files may also swap a folder
   * for a link: the file is read only through a link-free path below the folder, only if it is
   * still the file and folder that were taken (dev:ino), and sent only with the content that was
   * hashed. Anything else fails the row for good (E_UNSAFE_PATH), nothing read or sent.
   */
  drop?: FileRef & { sha256: string };
}

/** One per process: it remembers which folders are local and whether reads have been slow. */
const files = new SmallFileReader();

/**
 * What the server holds under the id. A derived publicId names the content (it is made from
 * the file's sha256), so "there" means "the same"; an explicit one may hold other content, so its
 * bytes are hashed and compared (E_CONFLICT on a mismatch, never a silent skip).
 */
async function serverCopy(client: ApiClient, item: ImportItem, publicId: string, sha256: string, signal: AbortSignal): Promise<ServerCopy> {
  if (!item.publicId) return (await client.documentExists(item.personId, publicId, signal)) ? 'same' : 'absent';
  const held = await client.hashDocument(item.personId, publicId, signal);
  if (!held) return 'absent';
  return held.sha256 === sha256 ? 'same' : { otherSha256: held.sha256 };
}

/** Uploads one manifest row's document exactly once (src/store/document-commit.ts). */
export const upload: RowJobKind<UploadPayload> = {
  type: 'row',
  name: 'upload',
  action: 'upload',
  // The row's start is asked together with its document's claim (uploadOnce).
  startsItself: true,
  ids: ({ item }) => ({ personId: item.personId, file: item.file, ...(item.publicId ? { documentId: item.publicId } : {}) }),
  async run(job, ctx) {
    const { item, checkExisting, drop } = job.payload;
    const run = ctx.store.run(job.runId);
    let file: Awaited<ReturnType<SmallFileReader['read']>>;
    // A dropped file (or any file under --allow-read) is opened once and checked, then read and
    // sent only through that descriptor: whatever its path names by then is never read.
    let opened: OpenedDrop | undefined;
    try {
      // The watched folder's real path first: below it openDropped follows no link, so nothing
      // outside --allow-read is even opened (a FIFO or a device would react to an open).
      if (drop && ctx.allowRead) ctx.allowRead.check(drop.root, await realpath(drop.root), 'the watched folder ');
      if (drop) opened = await openDropped(drop);
      // --allow-read: judged on the open file, before a byte is read, whatever the job names.
      if (opened && ctx.allowRead) await admitOpened(opened.handle, item.file, ctx.allowRead);
      else if (ctx.allowRead) opened = await openAdmitted(item.file, ctx.allowRead);
      file = await files.read(opened?.path ?? item.file);
      if (drop && file.sha256 !== drop.sha256) {
        throw new UnsafePathError(`${item.file} changed since it was taken (sha256 ${file.sha256.slice(0, 12)}…, not ${drop.sha256.slice(0, 12)}…); not sent`, item.file);
      }
    } catch (err) {
      await opened?.close();
      // A settled row or a stopped run wins over a file that has gone since: the claim, which
      // asks that otherwise, is not reached.
      throwIfRowSettled(await run.jobStart(job.row));
      throw err;
    }
    const readPath = opened?.path ?? item.file;
    try {
      const { sha256, bytes, data } = file;
      const publicId = item.publicId ?? derivePublicId(item.personId, sha256);
      const recorded = await uploadOnce({
        run,
        documents: ctx.store.documents,
        ledger: ctx.ledger,
        row: job.row,
        doc: { personId: item.personId, publicId, sha256, bytes },
        base: { personId: item.personId, documentId: publicId, file: item.file, bytes, sha256 },
        attempts: job.attempt,
        jobDoubt: job.inDoubt,
        checkExisting,
        check: (signal) => serverCopy(ctx.client, item, publicId, sha256, signal),
        send: async (signal) => {
          await ctx.client.uploadDocument(
            {
              personId: item.personId,
              name: item.name,
              ...(item.description ? { description: item.description } : {}),
              publicId,
              filePath: readPath,
              ...(data ? { data } : {}),
              fileName: path.basename(item.file),
              // The file's own type (its first bytes, else its extension), as the vendor's curl line sends it.
              contentType: await mediaTypeOfFile(readPath, data, item.file),
              // The bytes sent must be the bytes hashed: a file that changed meanwhile fails the attempt (E_FILE_CHANGED).
              expect: { sha256, bytes },
            },
            signal,
          );
        },
        mayHaveReachedServer: mayHaveBeenProcessed,
        markJobInDoubt: () => job.markInDoubt(),
        ...(job.signal ? { signal: job.signal } : {}),
        now: () => ctx.clock.now(),
        log: ctx.log,
      });
      return { recorded };
    } finally {
      await opened?.close();
    }
  },
};
