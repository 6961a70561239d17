import { constants } from 'node:fs';
import type { FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FileError, UnsafePathError } from '../errors.ts';
import { FD_PATHS, FolderHandle, identityOf, type FileIdentity, type FileRef } from '../folder-handle.ts';

/** A file of a watched folder, open for reading: the very file that was checked, whatever its path names now. */
export interface OpenedDrop {
  handle: FileHandle;
  /**
   * A path naming this open file, for readers that open by path (Linux: /proc/self/fd/N, which
   * opens the same file again even after a rename or a swap of its folder). Elsewhere the file's
   * path, checked just before.
   */
  path: string;
  id: FileIdentity;
  size: number;
  close(): Promise<void>;
}

/**
 * O_NONBLOCK: a FIFO swapped in under the file's name would otherwise block the open (and a
 * thread of the pool) until someone writes to it; it is refused by fstat instead. No effect on
 * regular files.
 */
const READ_FLAGS = constants.O_RDONLY | (constants.O_NONBLOCK ?? 0);

/**
 * Opens a file of a watched folder only if its whole path below the folder is link-free now and
 * it is the file that was seen: each level opened with O_NOFOLLOW (FolderHandle), the folder
 * checked to be `ref.folderId`, the file opened with O_NOFOLLOW and checked to be a regular file
 * and `ref.id` (when given). UnsafePathError otherwise, before a byte is read: a folder swapped for
 * a link to a private folder never makes idsync read (and upload) a file of its own user.
 */
export async function openDropped(ref: FileRef): Promise<OpenedDrop> {
  const folder = await FolderHandle.openSeen(ref);
  const where = path.join(folder.dir, ref.name);
  let handle: FileHandle | undefined;
  try {
    handle = await folder.openFile(ref.name, READ_FLAGS);
    const st = await handle.stat({ bigint: true });
    if (!st.isFile()) throw new FileError(`${where} is not a regular file`, where);
    const id = identityOf(st);
    if (ref.id !== undefined && id !== ref.id) throw new UnsafePathError(`${where} was replaced since it was seen; it is left alone`, where);
    const opened = handle;
    return { handle: opened, path: FD_PATHS ? `/proc/self/fd/${opened.fd}` : where, id, size: Number(st.size), close: () => opened.close().catch(() => undefined) };
  } catch (err) {
    await handle?.close().catch(() => undefined);
    throw err;
  } finally {
    await folder.close();
  }
}

/** A small text file of a watched folder (a sidecar), read the same way; its size, and its text when at most `maxBytes`. */
export async function readDroppedText(ref: FileRef, maxBytes: number): Promise<{ size: number; text: string }> {
  const opened = await openDropped(ref);
  try {
    return { size: opened.size, text: opened.size > maxBytes ? '' : await opened.handle.readFile('utf8') };
  } finally {
    await opened.close();
  }
}
