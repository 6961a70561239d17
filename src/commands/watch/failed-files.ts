import type { Dirent } from 'node:fs';
import { readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { moveIntoFolder } from '../../outputs/no-clobber-move.ts';

const NOTE = '.error.json';
const SIDECAR = '.json';

export interface ReturnedFiles {
  /** Files put back into the drop folder (their sidecars went with them). */
  returned: number;
  /** Files that could not be put back (they stay in the failed folder, with their notes). */
  left: number;
}

/**
 * `idsync watch --retry-failed`: puts every file of the failed folder back where it was dropped,
 * under the same relative folder (`.failed/<personId>/scan.pdf` → `<dir>/<personId>/scan.pdf`,
 * `.failed/stray.pdf` → `<dir>/stray.pdf`), with its sidecar, and removes its `.error.json` note,
 * so the watch takes it again as a new drop. A name taken in the drop folder is never overwritten
 * (`scan (1).pdf`). A `.json` or `.error.json` is a sidecar or a note only when the file it names
 * is beside it, the same rule the watch applies to sidecars; anything else is a file. Dotfiles and
 * links are left alone.
 */
export async function returnFailedFiles(failedRoot: string, dropDir: string, log: Logger): Promise<ReturnedFiles> {
  const out: ReturnedFiles = { returned: 0, left: 0 };
  await returnFolder(failedRoot, '', dropDir, log, out);
  return out;
}

async function returnFolder(root: string, rel: string, dropDir: string, log: Logger, out: ReturnedFiles): Promise<void> {
  const folder = path.join(root, rel);
  let entries: Dirent[];
  try {
    entries = await readdir(folder, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  const files = new Set(entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name));
  for (const e of entries) {
    if (e.isDirectory() && !e.name.startsWith('.')) await returnFolder(root, path.join(rel, e.name), dropDir, log, out);
  }
  for (const name of files) {
    if (name.endsWith(NOTE) && files.has(name.slice(0, -NOTE.length))) continue;
    if (name.endsWith(SIDECAR) && files.has(name.slice(0, -SIDECAR.length))) continue;
    const file = path.join(folder, name);
    const sidecar = files.has(name + SIDECAR) ? path.join(folder, name + SIDECAR) : undefined;
    try {
      const dest = await moveIntoFolder(file, path.join(dropDir, rel), sidecar ? { sidecar } : {});
      out.returned++;
      log.info({ file: path.join(rel, name), to: path.relative(dropDir, dest) }, 'watch --retry-failed: file put back into the drop folder');
    } catch (err) {
      out.left++;
      log.error({ err, file: path.join(rel, name) }, 'watch --retry-failed: cannot put the file back; it stays in the failed folder');
      continue;
    }
    if (files.has(name + NOTE)) await rm(path.join(folder, name + NOTE), { force: true }).catch((err: unknown) => log.warn({ err, note: path.join(rel, name + NOTE) }, 'watch --retry-failed: cannot remove the note'));
  }
  // An emptied person folder goes too; the failed folder itself stays.
  if (rel !== '') await rmdir(folder).catch(() => undefined);
}
