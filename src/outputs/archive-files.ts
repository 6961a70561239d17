import { createHash, randomBytes } from 'node:crypto';
import { copyFile, link, lstat, open, rm } from 'node:fs/promises';
import path from 'node:path';
import { prepareOutTarget } from './out-dir.ts';
import type { AllowedFolders } from '../allowed-folders.ts';
import { FileError, fileErrorOf } from '../errors.ts';
import { hashFile } from '../sources/file-hash.ts';

/** Archive files are only ever created, never overwritten in place; these are the two ways in. */

export function sha256Of(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function fileError(what: string, file: string, err: unknown): FileError {
  if (err instanceof FileError) return err;
  return fileErrorOf(what, file, err);
}

/**
 * `outDir/relative` after making sure no link in between leads out of the archive: its folders
 * are created one level at a time, never through a link (OutsideOutError, not retried), and
 * nothing at all outside `allowed` (--allow-write: NotAllowedError).
 */
export async function archivePath(outDir: string, relative: string, allowed?: AllowedFolders): Promise<string> {
  return (await prepareOutTarget(outDir, relative, allowed)).target;
}

/** sha256 of a regular file at `file`, or undefined when there is none. Links are refused. */
export async function existingFile(file: string): Promise<{ sha256: string; bytes: number } | undefined> {
  try {
    const st = await lstat(file);
    if (st.isSymbolicLink()) throw new FileError(`${file} is a link; idsync does not write through links`, file);
    if (!st.isFile()) throw new FileError(`${file} exists and is not a file`, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw fileError('cannot read', file, err);
  }
  return hashFile(file);
}

/**
 * Puts `source` (a complete file) at `target` unless `target` exists: a hard link is atomic
 * and never replaces anything, so two workers racing for one name cannot clobber each other.
 * Returns false when the name was taken. File systems without hard links get a copy to a temp
 * name first, then a link attempt of that (still all-or-nothing at the final name).
 */
export async function linkNew(source: string, target: string): Promise<boolean> {
  try {
    await link(source, target);
    return true;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') return false;
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EXDEV' && code !== 'EOPNOTSUPP') throw fileError('cannot write', target, err);
  }
  // No hard links here: exclusive copy is the next best thing (COPYFILE_EXCL refuses to replace).
  try {
    await copyFile(source, target, 1 /* fs.constants.COPYFILE_EXCL */);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    await rm(target, { force: true }).catch(() => undefined);
    throw fileError('cannot write', target, err);
  }
}

/** Writes `bytes` to a fresh temp file beside `target` (fsynced) and returns its path. */
export async function writeTemp(target: string, bytes: Buffer): Promise<string> {
  const temp = path.join(path.dirname(target), `.${path.basename(target)}.${randomBytes(6).toString('hex')}.part`);
  try {
    const handle = await open(temp, 'wx');
    try {
      await handle.writeFile(bytes);
      await handle.sync();
    } finally {
      await handle.close();
    }
    return temp;
  } catch (err) {
    await rm(temp, { force: true }).catch(() => undefined);
    throw fileError('cannot write', temp, err);
  }
}

/**
 * Stores `bytes` under `target` only if that name is free. Returns 'written', or 'exists'
 * with the sha256 of what holds the name (the caller decides whether that is the same file).
 */
export async function storeNew(target: string, bytes: Buffer): Promise<'written' | 'exists'> {
  const temp = await writeTemp(target, bytes);
  try {
    return (await linkNew(temp, target)) ? 'written' : 'exists';
  } finally {
    await rm(temp, { force: true }).catch(() => undefined);
  }
}
