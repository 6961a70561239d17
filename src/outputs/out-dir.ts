import { constants, existsSync, readlinkSync } from 'node:fs';
import { lstat, mkdir, open, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AllowedFolders } from '../allowed-folders.ts';
import { FileError, OutsideOutError } from '../errors.ts';
import { GroupSync } from './group-sync.ts';

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
/** What fsync of a folder answers where the filesystem does not support it. */
const FOLDER_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EPERM', 'EBADF']);
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
 * A folder opened by descriptor, kept open between downloads (Linux): an export writes thousands
 * of files into a few folders, and opening each level again for every file, twice (the job's
 * check, then the client's write), with a check each time, was 9 of the 15 thread-pool round
 * trips a photo cost. Whether a held folder is still at its path under --out is checked whenever
 * it is handed out, and again before each rename (verify), so holding it changes no guarantee: a
 * folder moved or swapped for a link is let go and opened afresh, or the rename is refused.
 */
interface HeldFolder {
  readonly key: string;
  readonly dir: string;
  readonly handle: FileHandle;
  /** OutFolders handed out and not yet closed. */
  leases: number;
  /** No longer handed out (moved away, or evicted): closed when its last lease ends. */
  retired: boolean;
  idleTimer: NodeJS.Timeout | undefined;
  /** fsyncs of the folder itself, shared by the renames made meanwhile (see OutFolder.syncEntries). */
  readonly sync: GroupSync;
}

/** Folders held at most (least recently used ones without a lease are closed first). */
const HELD_MAX = 64;
/** A held folder nobody used for this long is closed (long-running workers export now and then). */
const HELD_IDLE_MS = 2_000;

const held = new Map<string, HeldFolder>();
const opening = new Map<string, Promise<HeldFolder>>();

/** Where the descriptor's folder is now (readlink of /proc/self/fd/N: kernel memory, no disk I/O). */
function whereNow(handle: FileHandle): string | undefined {
  try {
    return readlinkSync(`/proc/self/fd/${handle.fd}`);
  } catch {
    return undefined;
  }
}

function release(folder: HeldFolder): void {
  if (folder.leases > 0) return;
  if (folder.retired) {
    void folder.handle.close().catch(() => undefined);
    return;
  }
  clearTimeout(folder.idleTimer);
  folder.idleTimer = setTimeout(() => retire(folder), HELD_IDLE_MS);
  folder.idleTimer.unref();
}

function retire(folder: HeldFolder): void {
  if (held.get(folder.key) === folder) held.delete(folder.key);
  folder.retired = true;
  clearTimeout(folder.idleTimer);
  release(folder);
}

function movedError(root: string, dir: string): OutsideOutError {
  return new OutsideOutError(`the folder ${path.relative(root, dir) || '.'} under --out was moved or replaced (by a link?) during the download; nothing was written`, dir);
}

/** A held folder still at `dir`, leased; or a newly opened one (one opening per folder at a time). */
async function leaseFolder(root: string, dir: string, parts: string[]): Promise<HeldFolder> {
  const key = `${root}\0${dir}`;
  for (;;) {
    const found = held.get(key);
    if (found) {
      if (whereNow(found.handle) === dir) {
        found.leases++;
        clearTimeout(found.idleTimer);
        // Most recently used last: eviction takes from the front.
        held.delete(key);
        held.set(key, found);
        return found;
      }
      retire(found);
    }
    const pending = opening.get(key);
    if (pending) {
      await pending.catch(() => undefined);
      continue;
    }
    const open = openHeld(root, dir, key, parts);
    opening.set(key, open);
    try {
      const folder = await open;
      // Moved while we walked (the descriptors followed it): refuse rather than write there.
      if (whereNow(folder.handle) !== dir) {
        retire(folder);
        throw movedError(root, dir);
      }
      folder.leases++;
      return folder;
    } finally {
      opening.delete(key);
    }
  }
}

async function openHeld(root: string, dir: string, key: string, parts: string[]): Promise<HeldFolder> {
  const handle = await openByDescriptor(root, parts);
  const folder: HeldFolder = { key, dir, handle, leases: 0, retired: false, idleTimer: undefined, sync: new GroupSync(() => handle.sync()) };
  held.set(key, folder);
  for (const [k, other] of held) {
    if (held.size <= HELD_MAX) break;
    if (other.leases === 0 && k !== key) retire(other);
  }
  return folder;
}

/**
 * The folder a file is written into, held open from creation to the rename. `entry(name)` is the
 * path by which a file of that folder is opened, created, renamed or removed.
 */
export class OutFolder {
  readonly root: string;
  readonly dir: string;
  readonly #held: HeldFolder | undefined;
  #closed = false;

  private constructor(root: string, dir: string, folder: HeldFolder | undefined) {
    this.root = root;
    this.dir = dir;
    this.#held = folder;
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
    // Handed out only while at `dir`: a level moved while we walked (the descriptors followed it)
    // is opened afresh, and a folder that cannot be found at its path is refused.
    return new OutFolder(root, dir, await leaseFolder(root, dir, parts));
  }

  entry(name: string): string {
    if (name === '' || name.includes('/') || name.includes(path.sep) || name === '.' || name === '..') {
      throw new OutsideOutError(`${name} is not a plain file name`, path.join(this.dir, name));
    }
    return this.#held ? `/proc/self/fd/${this.#held.handle.fd}/${name}` : path.join(this.dir, name);
  }

  /**
   * Checks, just before the rename, that the folder still sits at its path under --out with no
   * link on the way. What remains (Linux): between this check and the rename the folder itself
   * could be moved elsewhere by a rename of a real folder; the rename then lands in that moved
   * folder. Swapping a link in is caught here. Elsewhere: the walk by path, with its window.
   */
  async verify(): Promise<void> {
    if (this.#held) {
      const where = whereNow(this.#held.handle);
      if (where !== this.dir) {
        // Not handed out again: the next download opens the folder afresh.
        retire(this.#held);
        throw movedError(this.root, this.dir);
      }
      return;
    }
    await walkByPath(this.root, this.dir, path.relative(this.root, this.dir).split(path.sep).filter((p) => p !== ''), false);
  }

  /**
   * Makes the folder's entries durable (an fsync of the folder): a renamed file's new name
   * survives a crash only then. Renames made into the folder while an fsync runs wait for the
   * next one, which serves them all: one fsync per batch of files, not one per file.
   */
  async syncEntries(): Promise<void> {
    // Windows cannot open a folder to fsync it (NTFS journals the rename itself).
    if (process.platform === 'win32') return;
    try {
      if (this.#held) {
        await this.#held.sync.sync();
        return;
      }
      const handle = await open(this.dir, constants.O_RDONLY);
      try {
        await handle.sync();
      } finally {
        await handle.close();
      }
    } catch (err) {
      // A filesystem that cannot fsync a folder (some network and FUSE ones) has nothing more to give.
      if (FOLDER_SYNC_UNSUPPORTED.has(codeOf(err) ?? '')) return;
      throw fileError('cannot sync the folder', this.dir, err);
    }
  }

  async close(): Promise<void> {
    if (this.#closed || !this.#held) return;
    this.#closed = true;
    this.#held.leases--;
    release(this.#held);
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

/** --out's real path, per --out as given: resolved once per process rather than once per file. */
const realRoots = new Map<string, Promise<string>>();

function realRoot(outDir: string): Promise<string> {
  let root = realRoots.get(outDir);
  if (!root) {
    root = realpath(outDir).catch((err: unknown) => {
      realRoots.delete(outDir);
      throw fileError('cannot open --out', outDir, err);
    });
    realRoots.set(outDir, root);
  }
  return root;
}

/**
 * For a job, before its request: `relative` under the real --out, its folders created safely,
 * and the target itself not a link. Returns the real root, the target path, and whether a
 * regular file is there already (a download done earlier). `allowed` (--allow-write): the real
 * --out must lie inside it, or NotAllowedError before any folder is made; below the real root no
 * link is followed, so every folder made lies inside it too.
 */
export async function prepareOutTarget(outDir: string, relative: string, allowed?: AllowedFolders): Promise<{ root: string; target: string; exists: boolean }> {
  let root: string;
  try {
    root = await realRoot(outDir);
  } catch (err) {
    // A missing --out outside the allowed folders is refused as such (for good), not as missing.
    if (allowed) allowed.check(outDir, await AllowedFolders.realPathToBe(outDir).catch(() => path.resolve(outDir)), 'the output folder ');
    throw err;
  }
  allowed?.check(outDir, root, 'the output folder ');
  const target = resolveInside(root, relative);
  const folder = await OutFolder.open(root, path.dirname(target));
  try {
    const st = await lstat(folder.entry(path.basename(target))).catch((err: unknown) => {
      if (codeOf(err) === 'ENOENT') return undefined;
      throw fileError('cannot check', target, err);
    });
    if (st?.isSymbolicLink()) throw new OutsideOutError(`output ${relative} is a link; idsync does not write through links`, target);
    return { root, target, exists: st?.isFile() === true };
  } finally {
    await folder.close();
  }
}
