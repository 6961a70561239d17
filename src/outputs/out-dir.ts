import { constants, existsSync } from 'node:fs';
import { lstat, mkdir, open, readlink, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { FileError, OutsideOutError } from '../errors.ts';

/**
 * Writing under --out without ever leaving it, even when a folder on the way is swapped for a
 * link while a download is in flight (issue #15, item 2).
 *
 * Node has no openat/mkdirat/renameat. On Linux, `/proc/self/fd/N/name` stands in for them: the
 * kernel resolves `name` inside the very folder that descriptor N holds open, whatever has been
 * renamed or replaced by a link on the way there since. So each level is opened with
 * O_NOFOLLOW|O_DIRECTORY from the one above (a link is refused, never followed), missing levels
 * are created inside the open parent, and the temp file and the rename happen inside the open
 * target folder. Elsewhere (no /proc), the same walk goes by path with lstat before each step:
 * there a link swapped in between a check and the next step still wins that race.
 */
const FD_PATHS = process.platform === 'linux' && existsSync('/proc/self/fd');
const DIR_FLAGS = constants.O_RDONLY | (constants.O_DIRECTORY ?? 0) | (constants.O_NOFOLLOW ?? 0);
/** Deepest output folder accepted; a bound on the walk (export paths are a few levels). */
const MAX_LEVELS = 64;

/** `relative` resolved under `root`, refused when it leaves it (`..`, absolute). Nothing is touched. */
export function resolveInside(root: string, relative: string): string {
  const target = path.resolve(root, relative);
  if (target === root || !target.startsWith(root + path.sep)) {
    throw new OutsideOutError(`output ${relative} leaves --out`, target);
  }
  return target;
}

function isInside(root: string, p: string): boolean {
  return p === root || p.startsWith(root + path.sep);
}

function codeOf(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

function fileError(what: string, file: string, err: unknown): FileError {
  return new FileError(`${what} ${file}: ${codeOf(err) ?? String(err)}`, file, { cause: err });
}

function linkRefused(root: string, level: string): OutsideOutError {
  return new OutsideOutError(`${path.relative(root, level) || '.'} under --out is a link; idsync does not write through links (it could lead out of --out)`, level);
}

/**
 * The folder a file is written into, held open from creation to the rename. `entry(name)` is the
 * path by which a file of that folder is opened, created, renamed or removed.
 */
export class OutFolder {
  readonly root: string;
  readonly dir: string;
  readonly #handle: FileHandle | undefined;

  private constructor(root: string, dir: string, handle: FileHandle | undefined) {
    this.root = root;
    this.dir = dir;
    this.#handle = handle;
  }

  /**
   * Opens `dir` (absolute, under `root`, which must be a real path), creating missing levels one
   * at a time. A link or a non-folder on the way fails before anything is created below it.
   */
  static async open(root: string, dir: string): Promise<OutFolder> {
    if (!isInside(root, dir)) throw new OutsideOutError(`${dir} leaves --out`, dir);
    const parts = path.relative(root, dir).split(path.sep).filter((p) => p !== '');
    if (parts.length > MAX_LEVELS) throw new FileError(`${dir} is nested more than ${MAX_LEVELS} folders deep under --out`, dir);
    if (!FD_PATHS) {
      await walkByPath(root, dir, parts, true);
      return new OutFolder(root, dir, undefined);
    }
    const folder = new OutFolder(root, dir, await openByDescriptor(root, parts));
    // A level moved while we walked (the descriptors followed it): refuse rather than write there.
    try {
      await folder.verify();
    } catch (err) {
      await folder.close();
      throw err;
    }
    return folder;
  }

  entry(name: string): string {
    if (name === '' || name.includes('/') || name.includes(path.sep) || name === '.' || name === '..') {
      throw new OutsideOutError(`${name} is not a plain file name`, path.join(this.dir, name));
    }
    return this.#handle ? `/proc/self/fd/${this.#handle.fd}/${name}` : path.join(this.dir, name);
  }

  /**
   * Checks, just before the rename, that the folder still sits at its path under --out with no
   * link on the way. What remains (Linux): between this check and the rename the folder itself
   * could be moved elsewhere by a rename of a real folder; the rename then lands in that moved
   * folder. Swapping a link in is caught here. Elsewhere: the walk by path, with its window.
   */
  async verify(): Promise<void> {
    if (this.#handle) {
      let where: string;
      try {
        where = await readlink(`/proc/self/fd/${this.#handle.fd}`);
      } catch (err) {
        throw fileError('cannot check', this.dir, err);
      }
      if (where !== this.dir) {
        throw new OutsideOutError(
          `the folder ${path.relative(this.root, this.dir) || '.'} under --out was moved or replaced (by a link?) during the download; nothing was written`,
          this.dir,
        );
      }
      return;
    }
    await walkByPath(this.root, this.dir, path.relative(this.root, this.dir).split(path.sep).filter((p) => p !== ''), false);
  }

  async close(): Promise<void> {
    await this.#handle?.close().catch(() => undefined);
  }
}

/** The deepest level's descriptor, each level opened from the one above. */
async function openByDescriptor(root: string, parts: string[]): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(root, DIR_FLAGS);
  } catch (err) {
    throw fileError('cannot open --out', root, err);
  }
  let current = root;
  try {
    for (const part of parts) {
      const level = path.join(current, part);
      const entry = `/proc/self/fd/${handle.fd}/${part}`;
      const next = await openChild(root, level, entry);
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

/** Opens one level inside its open parent (`entry` is the /proc path), creating it when missing. */
async function openChild(root: string, level: string, entry: string): Promise<FileHandle> {
  for (let tries = 0; tries < 3; tries++) {
    try {
      return await open(entry, DIR_FLAGS);
    } catch (err) {
      const code = codeOf(err);
      if (code === 'ENOENT') {
        try {
          // mkdir never follows a link at the last component: a link there is EEXIST, seen next round.
          await mkdir(entry);
        } catch (mkErr) {
          if (codeOf(mkErr) !== 'EEXIST') throw fileError('cannot create', level, mkErr);
        }
        continue;
      }
      if (code === 'ELOOP' || code === 'ENOTDIR') {
        const st = await lstat(entry).catch(() => undefined);
        if (st?.isSymbolicLink()) throw linkRefused(root, level);
        throw fileError('cannot create the folder', level, err);
      }
      throw fileError('cannot open', level, err);
    }
  }
  throw new FileError(`cannot create ${level}: it keeps disappearing`, level);
}

/** Each level lstat'ed (and created when `create`), then the real path compared: no link anywhere. */
async function walkByPath(root: string, dir: string, parts: string[], create: boolean): Promise<void> {
  let current = root;
  for (const part of parts) {
    current = path.join(current, part);
    let st = await lstat(current).catch((err: unknown) => {
      if (codeOf(err) === 'ENOENT') return undefined;
      throw fileError('cannot check', current, err);
    });
    if (!st && create) {
      try {
        await mkdir(current);
      } catch (err) {
        if (codeOf(err) !== 'EEXIST') throw fileError('cannot create', current, err);
      }
      st = await lstat(current).catch((err: unknown) => {
        throw fileError('cannot check', current, err);
      });
    }
    if (!st) throw new FileError(`${current} has gone`, current);
    if (st.isSymbolicLink()) throw linkRefused(root, current);
    if (!st.isDirectory()) throw new FileError(`${current} is not a folder`, current, { cause: Object.assign(new Error('not a folder'), { code: 'ENOTDIR' }) });
  }
  let real: string;
  try {
    real = await realpath(dir);
  } catch (err) {
    throw fileError('cannot check', dir, err);
  }
  if (real !== dir) throw new OutsideOutError(`${path.relative(root, dir)} under --out leads elsewhere through a link`, dir);
}

/**
 * For a job, before its request: `relative` under the real --out, its folders created safely,
 * and the target itself not a link. Returns the real root and the target path.
 */
export async function prepareOutTarget(outDir: string, relative: string): Promise<{ root: string; target: string }> {
  let root: string;
  try {
    root = await realpath(outDir);
  } catch (err) {
    throw fileError('cannot open --out', outDir, err);
  }
  const target = resolveInside(root, relative);
  const folder = await OutFolder.open(root, path.dirname(target));
  try {
    const st = await lstat(folder.entry(path.basename(target))).catch((err: unknown) => {
      if (codeOf(err) === 'ENOENT') return undefined;
      throw fileError('cannot check', target, err);
    });
    if (st?.isSymbolicLink()) throw new OutsideOutError(`output ${relative} is a link; idsync does not write through links`, target);
  } finally {
    await folder.close();
  }
  return { root, target };
}
