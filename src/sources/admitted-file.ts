import { constants } from 'node:fs';
import { open, realpath, stat, type FileHandle } from 'node:fs/promises';
import type { AllowedFolders } from '../allowed-folders.ts';
import { FileError, IdsyncError } from '../errors.ts';
import { FD_PATHS, identityOf, realPathOfDescriptor } from '../folder-handle.ts';
import type { OpenedDrop } from './dropped-file.ts';
import { readError } from './file-hash.ts';

/** O_NONBLOCK: a FIFO named by a job must not hang the open; it is refused by fstat instead. */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Throws NotAllowedError unless the open file lies in the allowed folders. Judged by the
 * descriptor (Linux: its path as the kernel holds it), so a link or folder swapped in between a
 * check by name and the open changes nothing; elsewhere by the real path of its name, accepted
 * only when that names the very file open (dev:ino).
 */
export async function admitOpened(handle: FileHandle, shown: string, allowed: AllowedFolders): Promise<void> {
  const real = realPathOfDescriptor(handle.fd);
  if (real !== undefined) {
    allowed.check(shown, real);
    return;
  }
  const byName = await realpath(shown);
  allowed.check(shown, byName);
  const [opened, named] = await Promise.all([handle.stat({ bigint: true }), stat(byName, { bigint: true })]);
  if (identityOf(opened) !== identityOf(named)) throw allowed.refusal(shown, byName, 'the file open is not the one at ');
}

/**
 * Opens a file to upload only if it lies in the allowed folders (--allow-read): its real path is
 * checked before the open (a file outside is not even opened), then the open descriptor again.
 * Read only through what is returned (its `path` names the open file on Linux).
 */
export async function openAdmitted(file: string, allowed: AllowedFolders): Promise<OpenedDrop> {
  let handle: FileHandle | undefined;
  try {
    allowed.check(file, await realpath(file));
    handle = await open(file, READ_FLAGS);
    await admitOpened(handle, file, allowed);
    const st = await handle.stat({ bigint: true });
    if (!st.isFile()) throw new FileError(`${file} is not a regular file`, file);
    const opened = handle;
    const fdPath = FD_PATHS ? `/proc/self/fd/${opened.fd}` : file;
    return { handle: opened, path: fdPath, id: identityOf(st), size: Number(st.size), close: () => opened.close().catch(() => undefined) };
  } catch (err) {
    await handle?.close().catch(() => undefined);
    if (err instanceof IdsyncError) throw err;
    throw readError(file, err);
  }
}
