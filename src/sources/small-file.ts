import { createHash } from 'node:crypto';
import { closeSync, constants, fstatSync, openSync, readSync } from 'node:fs';
import { open, statfs } from 'node:fs/promises';
import path from 'node:path';
import { EmptyFileError } from '../errors.ts';
import { hashFile, readError } from './file-hash.ts';

/**
 * Files up to this size are read once, hashed and sent from memory; larger ones are streamed twice
 * (hash, then upload). Small enough that the 3 x --concurrency jobs holding one each stay cheap.
 */
export const READ_ONCE_MAX_BYTES = 1024 * 1024;

/**
 * A synchronous read slower than this turns them off for a while (a failing or saturated disk).
 * Well above a cold seek (~10 ms) and above what CPU contention adds to a fast read (a process
 * preempted mid-read on a busy machine measured 5-10 ms), or every busy run would lose the fast path.
 */
export const SLOW_READ_MS = 50;
export const ASYNC_AFTER_SLOW_READ_MS = 60_000;

/**
 * Linux filesystem types (statfs f_type) that live on this machine. Only on these are small
 * files read synchronously: on a network share (NFS, SMB, FUSE…) a hung server would stall the
 * whole event loop (lock renewals, Ctrl-C) inside a synchronous read, so those keep the thread pool.
 */
const LOCAL_FS_TYPES = new Set([
  0xef53, // ext2/3/4
  0x58465342, // xfs
  0x9123683e, // btrfs
  0x01021994, // tmpfs
  0x794c7630, // overlayfs
  0x2fc12fc1, // zfs
  0xf2f52010, // f2fs
  0x3153464a, // jfs
  0x52654973, // reiserfs
  0x858458f6, // ramfs
]);

export interface SmallFile {
  sha256: string;
  bytes: number;
  /** The content, when the file is at most READ_ONCE_MAX_BYTES. */
  data?: Buffer;
}

const NOT_READ = Symbol('not read here');
/** O_NOFOLLOW where the platform has it (not on Windows, where reads stay asynchronous anyway). */
const NO_FOLLOW = constants.O_NOFOLLOW ?? 0;

type FsType = (dir: string) => number | undefined | Promise<number | undefined>;

export interface SmallFileReaderOptions {
  now?: () => number;
  /** Filesystem type of a folder (statfs f_type), or undefined when unknown. */
  fsType?: FsType;
}

/**
 * Reads a file to upload: small ones whole (hashed and kept for the request), large ones hashed
 * by streaming. On a local filesystem small files are read synchronously: a read from the page
 * cache takes microseconds, while each thread-pool round trip (open, stat, read, close) costs more
 * CPU than the read itself and, under load, milliseconds of latency. Network filesystems, platforms without statfs
 * and, for the next minute, any read slower than SLOW_READ_MS use the thread pool.
 */
export class SmallFileReader {
  readonly #now: () => number;
  readonly #fsType: FsType;
  readonly #localDirs = new Map<string, boolean>();
  #asyncUntil = 0;
  syncReads = 0;
  asyncReads = 0;

  constructor(options: SmallFileReaderOptions = {}) {
    this.#now = options.now ?? (() => performance.now());
    this.#fsType = options.fsType ?? defaultFsType;
  }

  /** Throws EmptyFileError (permanent) for a file that has 0 bytes now. */
  async read(file: string): Promise<SmallFile> {
    let data: Buffer | undefined;
    try {
      const sync = (await this.#syncAllowed(file)) ? this.#readSync(file) : NOT_READ;
      data = sync === NOT_READ ? await this.#readAsync(file) : sync;
    } catch (err) {
      throw readError(file, err);
    }
    // Too large (or grown past the limit since validation): streamed like any large one.
    if (!data || data.length > READ_ONCE_MAX_BYTES) {
      const hashed = await hashFile(file);
      if (hashed.bytes === 0) throw new EmptyFileError(file);
      return hashed;
    }
    // Emptied since the manifest was checked: an empty document is never what was meant.
    if (data.length === 0) throw new EmptyFileError(file);
    return { sha256: createHash('sha256').update(data).digest('hex'), bytes: data.length, data };
  }

  async #syncAllowed(file: string): Promise<boolean> {
    if (this.#now() < this.#asyncUntil) return false;
    const dir = path.dirname(file);
    let local = this.#localDirs.get(dir);
    if (local === undefined) {
      // Asked asynchronously: on a hung network share even statfs would block.
      local = await isLocalFilesystem(dir, this.#fsType);
      if (this.#localDirs.size > 10_000) this.#localDirs.clear();
      this.#localDirs.set(dir, local);
    }
    return local;
  }

  /**
   * Four system calls: open, fstat, read, close. The open refuses a symlink (O_NOFOLLOW: it may
   * lead to a share), and then, like any file that cannot be opened here, the thread pool reads
   * it and reports what is wrong. A file that grew since its fstat comes back as undefined and
   * is streamed.
   */
  #readSync(file: string): Buffer | undefined | typeof NOT_READ {
    const started = this.#now();
    let fd: number;
    try {
      fd = openSync(file, constants.O_RDONLY | NO_FOLLOW);
    } catch {
      return NOT_READ;
    }
    this.syncReads++;
    try {
      const size = fstatSync(fd).size;
      if (size > READ_ONCE_MAX_BYTES) return undefined;
      // One byte more than the size: reading it means the file grew.
      const buffer = Buffer.allocUnsafe(size + 1);
      let filled = 0;
      for (let n: number; filled < buffer.length && (n = readSync(fd, buffer, filled, buffer.length - filled, null)) > 0; ) filled += n;
      return filled > size ? undefined : buffer.subarray(0, filled);
    } finally {
      closeSync(fd);
      if (this.#now() - started > SLOW_READ_MS) this.#asyncUntil = this.#now() + ASYNC_AFTER_SLOW_READ_MS;
    }
  }

  async #readAsync(file: string): Promise<Buffer | undefined> {
    this.asyncReads++;
    const handle = await open(file, 'r');
    try {
      const { size } = await handle.stat();
      return size <= READ_ONCE_MAX_BYTES ? await handle.readFile() : undefined;
    } finally {
      await handle.close();
    }
  }
}

/** Whether `dir` lies on a filesystem of this machine (Linux, by statfs type); false when unknown. */
export async function isLocalFilesystem(dir: string, fsType: FsType = defaultFsType): Promise<boolean> {
  const type = await fsType(dir);
  return type !== undefined && LOCAL_FS_TYPES.has(type);
}

async function defaultFsType(dir: string): Promise<number | undefined> {
  if (process.platform !== 'linux') return undefined;
  try {
    return (await statfs(dir)).type;
  } catch {
    return undefined;
  }
}
