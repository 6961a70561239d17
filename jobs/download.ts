import { promises as fs, type Dirent } from 'node:fs';
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

/**
 * For a document whose extension is decided by the server's answer: an earlier download of it, if
 * any. Only a regular file counts: through a link it could be any file of the worker's user (its
 * size and sha256 would go into the report), and a FIFO would hold a thread of the pool forever;
 * either is refused, not retried (only a person can clear it up). A target of known name is never
 * read through a link either: prepareOutTarget refuses one there and counts only a regular file.
 */
async function findExistingDocument(target: string): Promise<string | undefined> {
  const dir = path.dirname(target);
  const stem = path.basename(target);
  let entries: Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  const hit = entries.find((d) => d.name === stem || (d.name.startsWith(`${stem}.`) && !d.name.endsWith('.part')));
  if (!hit) return undefined;
  const file = path.join(dir, hit.name);
  if (hit.isSymbolicLink()) throw new OutsideOutError(`${file} is a symbolic link; idsync never reads or writes through links under --out`, file);
  if (!hit.isFile()) throw new OutsideOutError(`${file} is there and is not a regular file; move it away`, file);
  return file;
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
