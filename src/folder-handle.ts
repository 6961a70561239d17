import { constants, existsSync, readlinkSync, type BigIntStats, type Dirent } from 'node:fs';
import { lstat, mkdir, open, readdir, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FileError, fileErrorOf, systemCode, UnsafePathError } from './errors.ts';

/**
 * A folder held open by descriptor, reached from a trusted root one level at a time without
 * following a link at any level, and the files inside it named relative to it. Whoever may write
 * into a folder idsync works in (a watched drop folder on a share) may swap any level for a link
 * to a folder of idsync's user: a path walked by name would then read, move or create there.
 *
 * Node has no openat/mkdirat/linkat. On Linux `/proc/self/fd/N/name` stands in for them: the
 * kernel resolves `name` inside the very folder that descriptor N holds open, whatever has been
 * renamed or replaced by a link on the way there since. So each level is opened with
 * O_NOFOLLOW|O_DIRECTORY from the one above (a link is refused, never followed), missing levels
 * are created inside the open parent (mkdir never follows a link at the last component), and files
 * are opened, linked and removed by their entry in the open folder. Elsewhere (no /proc) the same
 * walk goes by path with lstat before each step: there a link swapped in between a check and the
 * next step still wins that race.
 */
export const FD_PATHS = process.platform === 'linux' && existsSync('/proc/self/fd');

/**
 * The real path of an open file or folder, from its descriptor (Linux: the kernel's own name for
 * it, which no rename or link swapped in since can change), or undefined where that cannot be
 * read. Synchronous: a readlink of /proc reads kernel memory, no disk.
 */
export function realPathOfDescriptor(fd: number): string | undefined {
  if (!FD_PATHS) return undefined;
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return undefined;
  }
}

/** O_NOFOLLOW where the platform has it. */
export const NO_FOLLOW = constants.O_NOFOLLOW ?? 0;
/** A folder opened to walk from: never through a link at its last component. */
export const DIR_FLAGS = constants.O_RDONLY | (constants.O_DIRECTORY ?? 0) | NO_FOLLOW;
/** Deepest folder accepted below a root; a bound on the walk. */
export const MAX_LEVELS = 64;

/** dev:ino of a file or folder, from bigint stats (inode numbers may pass 2^53): the same identity is the same file. */
export type FileIdentity = string;

export function identityOf(st: BigIntStats): FileIdentity {
  return `${st.dev}:${st.ino}`;
}

/** A folder: a trusted real path, and the levels below it that are walked without following links. */
export interface FolderPlace {
  root: string;
  levels: readonly string[];
}

/** A file in such a folder, and, when known, what it and its folder must still be (the ones that were seen). */
export interface FileRef extends FolderPlace {
  name: string;
  id?: FileIdentity;
  folderId?: FileIdentity;
}

export function placePath(place: FolderPlace): string {
  return path.join(place.root, ...place.levels);
}

/** The place of `dir` under `root` when `dir` is `root` or lies (by its path) inside it. */
export function placeUnder(root: string, dir: string): FolderPlace | undefined {
  const rel = path.relative(root, dir);
  if (rel === '') return { root, levels: [] };
  if (rel.startsWith('..') || path.isAbsolute(rel)) return undefined;
  return { root, levels: rel.split(path.sep) };
}

function plainName(name: string, where: string): void {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes(path.sep) || name.includes('\0')) {
    throw new UnsafePathError(`"${name}" is not a plain file name`, path.join(where, name));
  }
}

export class FolderHandle {
  readonly place: FolderPlace;
  /** The folder's path (root and levels). */
  readonly dir: string;
  readonly #handle: FileHandle | undefined;

  private constructor(place: FolderPlace, dir: string, handle: FileHandle | undefined) {
    this.place = place;
    this.dir = dir;
    this.#handle = handle;
  }

  /**
   * Opens the folder, level by level from its root (which must be a real path, not a link),
   * creating missing levels when `create`. A link or a non-folder on the way fails before anything
   * is created below it (UnsafePathError for a link); a missing level without `create` is a
   * FileError with the system's ENOENT.
   */
  static async open(place: FolderPlace, options: { create?: boolean } = {}): Promise<FolderHandle> {
    const dir = placePath(place);
    if (place.levels.length > MAX_LEVELS) throw new FileError(`${dir} is nested more than ${MAX_LEVELS} folders deep`, dir);
    let current = place.root;
    for (const part of place.levels) {
      plainName(part, current);
      current = path.join(current, part);
    }
    if (!FD_PATHS) {
      await walkByPath(place, unsafePathRefusals, { create: options.create === true, checkRoot: true });
      return new FolderHandle(place, dir, undefined);
    }
    const folder = new FolderHandle(place, dir, await openByDescriptor(place, options.create === true));
    // A level moved while we walked (the descriptors followed it): refuse rather than work there.
    try {
      await folder.verify();
    } catch (err) {
      await folder.close();
      throw err;
    }
    return folder;
  }

  /** The path by which the file `name` of this folder is opened, created, linked or removed. */
  entry(name: string): string {
    plainName(name, this.dir);
    return this.#handle ? `/proc/self/fd/${this.#handle.fd}/${name}` : path.join(this.dir, name);
  }

  /** dev:ino of the folder held (the one opened, wherever it is now). */
  /**
   * The folder of a file seen earlier, opened only if it is still the folder it was then
   * (`ref.folderId`, when given); UnsafePathError otherwise: the file is left alone.
   */
  static async openSeen(ref: FileRef): Promise<FolderHandle> {
    const folder = await FolderHandle.open(ref);
    if (ref.folderId !== undefined && (await folder.identity()) !== ref.folderId) {
      await folder.close();
      throw new UnsafePathError(`the folder ${path.relative(ref.root, folder.dir) || '.'} in ${ref.root} was replaced since ${ref.name} was seen; the file is left alone`, folder.dir);
    }
    return folder;
  }

  async identity(): Promise<FileIdentity> {
    try {
      return identityOf(this.#handle ? await this.#handle.stat({ bigint: true }) : await lstat(this.dir, { bigint: true }));
    } catch (err) {
      throw fileErrorOf('cannot check', this.dir, err);
    }
  }

  /** lstat of an entry (a link is reported as a link, never followed); undefined when there is none. */
  async stat(name: string): Promise<BigIntStats | undefined> {
    try {
      return await lstat(this.entry(name), { bigint: true });
    } catch (err) {
      if (systemCode(err) === 'ENOENT') return undefined;
      throw fileErrorOf('cannot check', path.join(this.dir, name), err);
    }
  }

  /** The folder's entries (a link is a link: Dirent types are not followed). */
  async list(): Promise<Dirent[]> {
    try {
      return await readdir(this.#handle ? `/proc/self/fd/${this.#handle.fd}` : this.dir, { withFileTypes: true });
    } catch (err) {
      throw fileErrorOf('cannot read', this.dir, err);
    }
  }

  /**
   * Opens an entry with O_NOFOLLOW added to `flags`: a link is refused (UnsafePathError), other
   * failures keep the system's error (ENOENT, EEXIST …) for the caller to judge.
   */
  async openFile(name: string, flags: number, mode?: number): Promise<FileHandle> {
    const entry = this.entry(name);
    try {
      return await open(entry, flags | NO_FOLLOW, mode);
    } catch (err) {
      if (systemCode(err) === 'ELOOP') throw new UnsafePathError(`${path.relative(this.place.root, path.join(this.dir, name))} in ${this.place.root} is a symbolic link; idsync never follows links there`, path.join(this.dir, name));
      throw err;
    }
  }

  /**
   * Checks that the folder held is still at its path with no link on the way. What remains (Linux):
   * between this check and the next step the folder itself could be renamed elsewhere (a real
   * folder, by someone who may write where it lies); the step then happens in that moved folder.
   */
  async verify(): Promise<void> {
    if (this.#handle) {
      let where: string;
      try {
        where = await readlink(`/proc/self/fd/${this.#handle.fd}`);
      } catch (err) {
        throw fileErrorOf('cannot check', this.dir, err);
      }
      if (where !== this.dir) {
        throw new UnsafePathError(`${path.relative(this.place.root, this.dir) || '.'} in ${this.place.root} was moved or replaced (by a link?) while idsync worked in it`, this.dir);
      }
      return;
    }
    await walkByPath(this.place, unsafePathRefusals, { create: false, checkRoot: true });
  }

  async close(): Promise<void> {
    await this.#handle?.close().catch(() => undefined);
  }
}

/** The deepest level's descriptor, each level opened from the one above. */
async function openByDescriptor(place: FolderPlace, create: boolean): Promise<FileHandle> {
  const { root } = place;
  let handle: FileHandle;
  try {
    handle = await open(root, DIR_FLAGS);
  } catch (err) {
    // O_NOFOLLOW|O_DIRECTORY on a link to a folder: ENOTDIR on Linux, ELOOP elsewhere.
    if ((systemCode(err) === 'ELOOP' || systemCode(err) === 'ENOTDIR') && (await lstat(root).catch(() => undefined))?.isSymbolicLink()) {
      throw new UnsafePathError(`${root} is a symbolic link; idsync never follows links there`, root);
    }
    throw fileErrorOf('cannot open', root, err);
  }
  return openLevels(handle, place, create, unsafePathRefusals);
}

/**
 * What a walk throws where a level is not a plain folder. Whose folder it is decides the class and
 * the words: in a watched folder a link is an UnsafePathError, under --out an OutsideOutError (it
 * could lead out of --out); and a FileError's system code decides whether it is retried.
 */
export interface WalkRefusals {
  /** `level` (below `root`, or `root` itself) is a symbolic link. */
  link(root: string, level: string): Error;
  /** `level` is there and is no folder: `err` is the system's (ENOTDIR, ELOOP), or undefined when lstat showed it. */
  notFolder(level: string, err?: unknown): Error;
  /** `level` is missing in the walk by path (not to be created, or gone again). */
  missing(level: string): Error;
  /** The walk by path: the folder `dir` resolves elsewhere, through a link on the way. */
  elsewhere(root: string, dir: string): Error;
}

const unsafePathRefusals: WalkRefusals = {
  link: (root, level) => new UnsafePathError(`${path.relative(root, level) || '.'} in ${root} is a symbolic link; idsync never follows links there`, level),
  notFolder: (level, err) => fileErrorOf('not a folder:', level, err ?? errnoError('not a folder', 'ENOTDIR')),
  missing: (level) => fileErrorOf('cannot open', level, errnoError('gone', 'ENOENT')),
  elsewhere: (root, dir) => new UnsafePathError(`${path.relative(root, dir) || '.'} in ${root} leads elsewhere through a link`, dir),
};

function errnoError(message: string, code: string): NodeJS.ErrnoException {
  return Object.assign(new Error(message), { code });
}

/**
 * From the open root (`rootHandle`, taken over: closed here, or on failure), each level of `place`
 * opened inside the one above; the deepest level's descriptor.
 */
export async function openLevels(rootHandle: FileHandle, place: FolderPlace, create: boolean, refusals: WalkRefusals): Promise<FileHandle> {
  let handle = rootHandle;
  let current = place.root;
  try {
    for (const part of place.levels) {
      const level = path.join(current, part);
      const next = await openChild(place.root, level, `/proc/self/fd/${handle.fd}/${part}`, create, refusals);
      await handle.close();
      handle = next;
      current = level;
    }
  } catch (err) {
    await handle.close().catch(() => undefined);
    throw err;
  }
  return handle;
}

/** Opens one level inside its open parent (`entry` is its /proc path), creating it when missing and asked to. */
async function openChild(root: string, level: string, entry: string, create: boolean, refusals: WalkRefusals): Promise<FileHandle> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      return await open(entry, DIR_FLAGS);
    } catch (err) {
      const code = systemCode(err);
      if (code === 'ENOENT' && create) {
        try {
          // mkdir never follows a link at the last component: a link there is EEXIST, seen next round.
          await mkdir(entry);
        } catch (mkErr) {
          if (systemCode(mkErr) !== 'EEXIST') throw fileErrorOf('cannot create', level, mkErr);
        }
        continue;
      }
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        const st = await lstat(entry).catch(() => undefined);
        if (st?.isSymbolicLink()) throw refusals.link(root, level);
        throw refusals.notFolder(level, err);
      }
      throw fileErrorOf('cannot open', level, err);
    }
  }
  throw new FileError(`cannot create ${level}: it keeps disappearing`, level);
}

/**
 * The walk without descriptors: each level lstat'ed (and created when `create`), then the real
 * path compared: no link anywhere. The root itself is checked too when `checkRoot` (a root not
 * resolved by the caller).
 */
export async function walkByPath(place: FolderPlace, refusals: WalkRefusals, options: { create: boolean; checkRoot: boolean }): Promise<void> {
  const { root } = place;
  let current = root;
  for (const part of options.checkRoot ? ['', ...place.levels] : place.levels) {
    current = path.join(current, part);
    let st = await lstat(current).catch((err: unknown) => {
      if (systemCode(err) === 'ENOENT') return undefined;
      throw fileErrorOf('cannot check', current, err);
    });
    if (!st && options.create && part !== '') {
      try {
        await mkdir(current);
      } catch (err) {
        if (systemCode(err) !== 'EEXIST') throw fileErrorOf('cannot create', current, err);
      }
      st = await lstat(current).catch((err: unknown) => {
        throw fileErrorOf('cannot check', current, err);
      });
    }
    if (!st) throw refusals.missing(current);
    if (st.isSymbolicLink()) throw refusals.link(root, current);
    if (!st.isDirectory()) throw refusals.notFolder(current);
  }
  let real: string;
  try {
    real = await realpath(current);
  } catch (err) {
    throw fileErrorOf('cannot check', current, err);
  }
  if (real !== current) throw refusals.elsewhere(root, current);
}
