import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { DownloadResult, ResponseMeta } from '../src/api/client.ts';
import { OutsideOutError } from '../src/errors.ts';
import { prepareOutTarget } from '../src/outputs/out-dir.ts';
import { hashFile } from '../src/sources/file-hash.ts';
import { extensionFor } from '../src/sources/content-type.ts';
import type { ExportItem } from '../src/sources/export-items.ts';
import type { JobOutcome, RowJobKind } from './job-kind.ts';

export interface DownloadPayload {
  item: ExportItem;
  /** Absolute --out folder. */
  outDir: string;
}

/** For a document whose extension is decided by the server's answer: an earlier download of it, if any. */
async function findExistingDocument(target: string): Promise<string | undefined> {
  const dir = path.dirname(target);
  const stem = path.basename(target);
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return undefined;
  }
  const hit = names.find((n) => n === stem || (n.startsWith(`${stem}.`) && !n.endsWith('.part')));
  return hit ? path.join(dir, hit) : undefined;
}

/**
 * A file found at a target's name is hashed only when it is a regular file: through a link it
 * could be any file of the worker's user (its size and sha256 would go into the report), and a
 * FIFO would hold a thread of the pool forever. Not retried: only a person can clear it up.
 */
async function mustBePlainFile(file: string): Promise<void> {
  const st = await fs.lstat(file);
  if (st.isSymbolicLink()) throw new OutsideOutError(`${file} is a symbolic link; idsync never reads or writes through links under --out`, file);
  if (!st.isFile()) throw new OutsideOutError(`${file} is there and is not a regular file; move it away`, file);
}

/**
 * Downloads one photo or document into --out. The client writes a temp file beside the target
 * and renames it when complete, so a final name never holds a partial file; a file already at
 * its final name is complete and is not fetched again.
 */
export const download: RowJobKind<DownloadPayload> = {
  type: 'row',
  name: 'download',
  action: 'download',
  ids: ({ item }) => idsOf(item),
  async run(job, ctx): Promise<JobOutcome> {
    const { item, outDir } = job.payload;
    const signal = job.signal;
    // Folders created level by level, never through a link; the client checks again before its rename.
    const { root, target, exists } = await prepareOutTarget(outDir, item.output, ctx.allowWrite);
    const ids = idsOf(item);
    const rel = (file: string) => path.relative(outDir, file).split(path.sep).join('/');

    const already = item.type === 'document' && !item.explicitOutput ? await findExistingDocument(target) : exists ? target : undefined;
    if (already) {
      await mustBePlainFile(already);
      const { sha256, bytes } = await hashFile(already);
      // No download leaves an empty file (an empty answer is E_BAD_CONTENT): an empty one was
      // emptied since (a full disk, a tool gone wrong) and is fetched again over it.
      if (bytes > 0) return { status: 'skipped', action: 'exists-locally', ...ids, output: rel(already), bytes, sha256 };
    }

    let result: DownloadResult;
    switch (item.type) {
      case 'enrollmentPhoto':
        result = await ctx.client.downloadEnrollmentPhoto(item.faceId!, { root, path: target }, signal);
        break;
      case 'detectionPhoto':
        result = await ctx.client.downloadDetectionPhoto(item.faceId!, item.detectionId!, { root, path: target }, signal);
        break;
      case 'document':
        result = await ctx.client.downloadDocument(
          item.personId!,
          item.documentId!,
          { root, path: item.explicitOutput ? target : (meta: ResponseMeta) => `${target}${extensionFor(meta)}` },
          signal,
        );
        break;
    }
    return { status: 'succeeded', action: 'downloaded', ...ids, output: rel(result.path), bytes: result.bytes, sha256: result.sha256 };
  },
};

function idsOf(item: ExportItem): Record<string, string> {
  return {
    ...(item.personId ? { personId: item.personId } : {}),
    ...(item.faceId ? { faceId: item.faceId } : {}),
    ...(item.detectionId ? { detectionId: item.detectionId } : {}),
    ...(item.documentId ? { documentId: item.documentId } : {}),
    output: item.output,
  };
}
