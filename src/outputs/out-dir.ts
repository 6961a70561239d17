import { constants, mkdirSync } from 'node:fs';
import { lstat, open, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { AllowedFolders, requireOutInside } from '../allowed-folders.ts';
import { ConfigError, FileError, fileErrorOf, OutsideOutError, systemCode } from '../errors.ts';
import { DIR_FLAGS, FD_PATHS, MAX_LEVELS, openLevels, realPathOfDescriptor, walkByPath, type FolderPlace, type WalkRefusals } from '../folder-handle.ts';
import { GroupSync } from './group-sync.ts';

/**
 * Writing under --out without ever leaving it, even when a folder on the way is swapped for a
 * link while a download is in flight (issue #15, item 2): the folders are reached by the walk of
 * src/folder-handle.ts (each level opened from the one above with O_NOFOLLOW through
 * /proc/self/fd/N; elsewhere by path with lstat), and the temp file and the rename happen inside
 * the open target folder.
 */
/** What fsync of a folder answers where the filesystem does not support it. */
const FOLDER_SYNC_UNSUPPORTED = new Set(['EINVAL', 'ENOTSUP', 'EOPNOTSUPP', 'EISDIR', 'EPERM', 'EBADF']);

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

/** `dir` (under `root`) as the root, trusted as real, and the levels walked below it. */
function placeOf(root: string, dir: string): FolderPlace {
  return { root, levels: path.relative(root, dir).split(path.sep).filter((p) => p !== '') };
}

/** Refusals under --out: a link is an OutsideOutError (it could lead out of --out). */
const outRefusals: WalkRefusals = {
  link: (root, level) => new OutsideOutError(`${path.relative(root, level) || '.'} under --out is a link; idsync does not write through links (it could lead out of --out)`, level),
  notFolder: (level, err) =>
    err === undefined ? new FileError(`${level} is not a folder`, level, { cause: Object.assign(new Error('not a folder'), { code: 'ENOTDIR' }) }) : fileErrorOf('cannot create the folder', level, err),
  missing: (level) => new FileError(`${level} has gone`, level),
  elsewhere: (root, dir) => new OutsideOutError(`${path.relative(root, dir)} under --out leads elsewhere through a link`, dir),
};

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
async function leaseFolder(place: FolderPlace, dir: string): Promise<HeldFolder> {
  const { root } = place;
  const key = `${root}\0${dir}`;
  for (;;) {
    const found = held.get(key);
    if (found) {
      if (realPathOfDescriptor(found.handle.fd) === dir) {
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
    const open = openHeld(place, dir, key);
    opening.set(key, open);
    try {
      const folder = await open;
      // Moved while we walked (the descriptors followed it): refuse rather than write there.
      if (realPathOfDescriptor(folder.handle.fd) !== dir) {
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

async function openHeld(place: FolderPlace, dir: string, key: string): Promise<HeldFolder> {
  const handle = await openByDescriptor(place);
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
    const place = placeOf(root, dir);
    if (place.levels.length > MAX_LEVELS) throw new FileError(`${dir} is nested more than ${MAX_LEVELS} folders deep under --out`, dir);
    if (!FD_PATHS) {
      await walkByPath(place, outRefusals, { create: true, checkRoot: false });
      return new OutFolder(root, dir, undefined);
    }
    // Handed out only while at `dir`: a level moved while we walked (the descriptors followed it)
    // is opened afresh, and a folder that cannot be found at its path is refused.
    return new OutFolder(root, dir, await leaseFolder(place, dir));
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
      const where = realPathOfDescriptor(this.#held.handle.fd);
      if (where !== this.dir) {
        // Not handed out again: the next download opens the folder afresh.
        retire(this.#held);
        throw movedError(this.root, this.dir);
      }
      return;
    }
    await walkByPath(placeOf(this.root, this.dir), outRefusals, { create: false, checkRoot: false });
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
      if (FOLDER_SYNC_UNSUPPORTED.has(systemCode(err) ?? '')) return;
      throw fileErrorOf('cannot sync the folder', this.dir, err);
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
async function openByDescriptor(place: FolderPlace): Promise<FileHandle> {
  let handle: FileHandle;
  try {
    handle = await open(place.root, DIR_FLAGS);
  } catch (err) {
    throw fileErrorOf('cannot open --out', place.root, err);
  }
  return openLevels(handle, place, true, outRefusals);
}

/** --out's real path, per --out as given: resolved once per process rather than once per file. */
const realRoots = new Map<string, Promise<string>>();

function realRoot(outDir: string): Promise<string> {
  let root = realRoots.get(outDir);
  if (!root) {
    root = realpath(outDir).catch((err: unknown) => {
      realRoots.delete(outDir);
      throw fileErrorOf('cannot open --out', outDir, err);
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
      if (systemCode(err) === 'ENOENT') return undefined;
      throw fileErrorOf('cannot check', target, err);
    });
    if (st?.isSymbolicLink()) throw new OutsideOutError(`output ${relative} is a link; idsync does not write through links`, target);
    return { root, target, exists: st?.isFile() === true };
  } finally {
    await folder.close();
  }
}

/**
 * A command's --out at its start: inside --allow-write when that is set (checked before anything
 * is made), then created; ConfigError (exit 2) naming --out otherwise, before anything is sent.
 */
export async function createOutAtStart(outDir: string, allowWrite: AllowedFolders | undefined): Promise<void> {
  if (allowWrite) await requireOutInside(outDir, allowWrite);
  try {
    mkdirSync(outDir, { recursive: true });
  } catch (err) {
    throw new ConfigError(`--out ${outDir} cannot be created: ${systemCode(err) ?? String(err)}`, '--out');
  }
}
