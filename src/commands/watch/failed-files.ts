import type { Dirent } from 'node:fs';
import { rmdir, unlink } from 'node:fs/promises';
import path from 'node:path';
import { FolderHandle, type FolderPlace } from '../../folder-handle.ts';
import type { Logger } from '../../log.ts';
import { isGone, moveIntoFolder } from '../../outputs/no-clobber-move.ts';

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
 * links are left alone: every folder is opened without following links (FolderHandle), so a link
 * planted in the failed folder never brings a file of idsync's user into the drop folder.
 */
export async function returnFailedFiles(failed: FolderPlace, dropDir: string, log: Logger): Promise<ReturnedFiles> {
  const out: ReturnedFiles = { returned: 0, left: 0 };
  await returnFolder(failed, [], dropDir, log, out);
  return out;
}

async function returnFolder(failed: FolderPlace, rel: string[], dropDir: string, log: Logger, out: ReturnedFiles): Promise<void> {
  const place = { root: failed.root, levels: [...failed.levels, ...rel] };
  let folder: FolderHandle;
  let entries: Dirent[];
  try {
    folder = await FolderHandle.open(place);
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
  try {
    entries = await folder.list();
    const files = new Set(entries.filter((e) => e.isFile() && !e.name.startsWith('.')).map((e) => e.name));
    for (const e of entries) {
      if (e.isDirectory() && !e.name.startsWith('.')) await returnFolder(failed, [...rel, e.name], dropDir, log, out);
    }
    for (const name of files) {
      if (name.endsWith(NOTE) && files.has(name.slice(0, -NOTE.length))) continue;
      if (name.endsWith(SIDECAR) && files.has(name.slice(0, -SIDECAR.length))) continue;
      const shown = path.join(...rel, name);
      try {
        const dest = await moveIntoFolder({ ...place, name }, { root: dropDir, levels: rel }, files.has(name + SIDECAR) ? { sidecar: name + SIDECAR } : {});
        out.returned++;
        log.info({ file: shown, to: path.relative(dropDir, dest) }, 'watch --retry-failed: file put back into the drop folder');
      } catch (err) {
        out.left++;
        log.error({ err, file: shown }, 'watch --retry-failed: cannot put the file back; it stays in the failed folder');
        continue;
      }
      if (files.has(name + NOTE)) await unlink(folder.entry(name + NOTE)).catch((err: unknown) => (isGone(err) ? undefined : log.warn({ err, note: shown + NOTE }, 'watch --retry-failed: cannot remove the note')));
    }
  } finally {
    await folder.close();
  }
  // An emptied person folder goes too; the failed folder itself stays. Removed from its parent,
  // held open, so a link swapped in meanwhile is not followed (rmdir refuses a link anyway).
  if (rel.length > 0) {
    const parent = await FolderHandle.open({ root: failed.root, levels: [...failed.levels, ...rel.slice(0, -1)] }).catch(() => undefined);
    if (parent) {
      await rmdir(parent.entry(rel[rel.length - 1]!)).catch(() => undefined);
      await parent.close();
    }
  }
}
