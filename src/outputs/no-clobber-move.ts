import { constants, lstatSync } from 'node:fs';
import { link, unlink } from 'node:fs/promises';
import path from 'node:path';
import { FileError, systemCode, UnsafePathError } from '../errors.ts';
import { FolderHandle, identityOf, placePath, type FileIdentity, type FileRef, type FolderPlace } from '../folder-handle.ts';

/** `scan.pdf`, 2 → `scan (2).pdf`; n = 0 is the name itself. */
export function numberedName(fileName: string, n: number): string {
  if (n === 0) return fileName;
  const ext = path.extname(fileName);
  const stem = ext && ext !== fileName ? fileName.slice(0, -ext.length) : fileName;
  return `${stem} (${n})${stem === fileName ? '' : ext}`;
}

/**
 * The first of `scan.pdf`, `scan (1).pdf`, … for which none of the companion names
 * (`<name>`, `<name>.json`, `<name>.error.json`) is taken, so a file, its sidecar and its
 * error note always keep matching names.
 */
export function freeName(fileName: string, taken: (name: string) => boolean, companions: readonly string[] = ['', '.json', '.error.json']): string {
  for (let n = 0; n < 100_000; n++) {
    const candidate = numberedName(fileName, n);
    if (!companions.some((suffix) => taken(candidate + suffix))) return candidate;
  }
  throw new Error(`no free name for ${fileName}`);
}

/** ENOENT, raw or as a FileError's system code. */
export function isGone(err: unknown): boolean {
  return systemCode(err) === 'ENOENT' || (err instanceof FileError && err.sysCode === 'ENOENT');
}

/** Hard links are not everywhere: another device, or a file system without them (some SMB/FAT), or protected_hardlinks for a file of another user. */
const NO_LINK_CODES = new Set(['EXDEV', 'EPERM', 'ENOTSUP', 'ENOSYS']);
const CREATE_NEW = constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL;
const COPY_CHUNK = 256 * 1024;

/** The entry is a regular file, and the one expected when `id` is given; ENOENT (a FileError) when there is none. */
async function expectFile(folder: FolderHandle, name: string, id: FileIdentity | undefined): Promise<void> {
  const where = path.join(folder.dir, name);
  const st = await folder.stat(name);
  if (!st) throw new FileError(`${where} has gone`, where, { cause: Object.assign(new Error('gone'), { code: 'ENOENT' }) });
  if (st.isSymbolicLink()) throw new UnsafePathError(`${where} is a symbolic link; idsync never follows links there`, where);
  if (!st.isFile()) throw new FileError(`${where} is not a regular file`, where);
  if (id !== undefined && identityOf(st) !== id) throw new UnsafePathError(`${where} was replaced since it was seen; it is left alone`, where);
}

/**
 * Moves one entry of `from` to a new name in `to`, never replacing anything there (EEXIST when the
 * name is taken): link() fails instead of replacing (rename() would silently overwrite); without
 * hard links it copies into a new file (O_EXCL). The entry must still be the file `id` names, just
 * before the move and, for the name it gets, just after (a file swapped in between is unlinked again).
 */
async function moveEntry(from: FolderHandle, name: string, to: FolderHandle, destName: string, id: FileIdentity | undefined): Promise<void> {
  await expectFile(from, name, id);
  await to.verify();
  try {
    await link(from.entry(name), to.entry(destName));
    if (id !== undefined) {
      const st = await to.stat(destName);
      if (!st || identityOf(st) !== id) {
        await unlink(to.entry(destName)).catch(() => undefined);
        throw new UnsafePathError(`${path.join(from.dir, name)} was replaced while it was being moved; it is left alone`, path.join(from.dir, name));
      }
    }
  } catch (err) {
    if (!NO_LINK_CODES.has(systemCode(err) ?? '')) throw err;
    await copyEntry(from, name, to, destName, id);
  }
  // Only the file moved goes: one swapped in under its name meanwhile stays.
  const now = await from.stat(name);
  if (now && (id === undefined || identityOf(now) === id)) await unlink(from.entry(name));
}

async function copyEntry(from: FolderHandle, name: string, to: FolderHandle, destName: string, id: FileIdentity | undefined): Promise<void> {
  const src = await from.openFile(name, constants.O_RDONLY);
  try {
    const st = await src.stat({ bigint: true });
    if (!st.isFile() || (id !== undefined && identityOf(st) !== id)) {
      throw new UnsafePathError(`${path.join(from.dir, name)} was replaced while it was being moved; it is left alone`, path.join(from.dir, name));
    }
    const dest = await to.openFile(destName, CREATE_NEW, Number(st.mode & 0o777n));
    try {
      const buffer = Buffer.allocUnsafe(COPY_CHUNK);
      for (let at = 0; ; ) {
        const { bytesRead } = await src.read(buffer, 0, COPY_CHUNK, at);
        if (bytesRead === 0) break;
        for (let written = 0; written < bytesRead; ) written += (await dest.write(buffer, written, bytesRead - written, at + written)).bytesWritten;
        at += bytesRead;
      }
    } catch (err) {
      await unlink(to.entry(destName)).catch(() => undefined);
      throw err;
    } finally {
      await dest.close();
    }
  } finally {
    await src.close();
  }
}

/** Writes a new file into an open folder; never replaces one. */
async function writeNew(to: FolderHandle, name: string, text: string): Promise<void> {
  const handle = await to.openFile(name, CREATE_NEW, 0o666);
  try {
    await handle.writeFile(text);
  } finally {
    await handle.close();
  }
}

/**
 * Moves a file (and its sidecar, when one is named, from the same folder) into `dest` under a free
 * name, and writes `<name>.error.json` beside it when a note is given. When another process takes
 * the chosen name meanwhile, the exclusive move fails and the next free name is tried.
 *
 * Neither folder is reached through a link at any level (FolderHandle: UnsafePathError), missing
 * levels of `dest` are created the same way, and the file must still be a regular file in the
 * folder that was seen (`file.folderId`) and the file that was seen (`file.id`), when given.
 * Returns the new path of the file.
 */
export async function moveIntoFolder(file: FileRef, dest: FolderPlace, options: { sidecar?: string; note?: string } = {}): Promise<string> {
  const from = await FolderHandle.openSeen(file);
  try {
    await expectFile(from, file.name, file.id);
    const to = await FolderHandle.open(dest, { create: true });
    try {
      for (let tries = 0; tries < 20; tries++) {
        const name = freeName(file.name, (n) => lstatSync(to.entry(n), { throwIfNoEntry: false }) !== undefined);
        try {
          await moveEntry(from, file.name, to, name, file.id);
        } catch (err) {
          if (systemCode(err) === 'EEXIST') continue;
          throw err;
        }
        if (options.sidecar) {
          try {
            await moveEntry(from, options.sidecar, to, `${name}.json`, undefined);
          } catch (err) {
            // Gone, or a link (never followed, never moved): the sidecar stays where it is.
            if (!isGone(err) && !(err instanceof UnsafePathError)) throw err;
          }
        }
        if (options.note !== undefined) await writeNew(to, `${name}.error.json`, options.note);
        return path.join(to.dir, name);
      }
      throw new Error(`cannot find a free name for ${file.name} in ${placePath(dest)}`);
    } finally {
      await to.close();
    }
  } finally {
    await from.close();
  }
}

/** Removes a file (the one seen, in the folder seen, never through a link) and its sidecar; a file already gone is no error. */
export async function removeFileAndSidecar(file: FileRef, sidecar?: string): Promise<void> {
  let from: FolderHandle;
  try {
    from = await FolderHandle.openSeen(file);
  } catch (err) {
    if (isGone(err)) return;
    throw err;
  }
  try {
    const st = await from.stat(file.name);
    if (st) {
      await expectFile(from, file.name, file.id);
      await unlink(from.entry(file.name));
    }
    if (sidecar) {
      const side = await from.stat(sidecar);
      if (side && !side.isDirectory()) await unlink(from.entry(sidecar)).catch((err: unknown) => (systemCode(err) === 'ENOENT' ? undefined : Promise.reject(err)));
    }
  } finally {
    await from.close();
  }
}
