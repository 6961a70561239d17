import { promises as fs, fstatSync, readSync, statSync, writeSync, type Stats } from 'node:fs';

/**
 * Test hook: called before each write with the file and the bytes about to be written. Returning
 * a fault writes `written` bytes (a torn write) and then fails with `error` (e.g. ENOSPC).
 */
export type WriteFault = (file: string, bytes: number) => { written: number; error: Error } | undefined;

export interface IoCounters {
  reads: number;
  bytesRead: number;
}

/**
 * The ledger's file calls, either synchronous (local filesystems: a few microseconds against the
 * page cache, where a thread-pool round trip costs more CPU than the call) or through the thread
 * pool (network shares: a hung server must not stall the event loop). Counts reads, so tests can
 * prove what an open or a lookup costs without timing it.
 */
export class LedgerIo {
  readonly sync: boolean;
  readonly counters: IoCounters;
  readonly #fault: WriteFault | undefined;

  constructor(sync: boolean, counters: IoCounters = { reads: 0, bytesRead: 0 }, fault?: WriteFault) {
    this.sync = sync;
    this.counters = counters;
    this.#fault = fault;
  }

  /** The same counters and fault hook, always through the thread pool (bulk work: merges). */
  threadPool(): LedgerIo {
    return this.sync ? new LedgerIo(false, this.counters, this.#fault) : this;
  }

  async read(handle: fs.FileHandle, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    const n = this.sync ? readSync(handle.fd, buffer, offset, length, position) : (await handle.read(buffer, offset, length, position)).bytesRead;
    this.counters.reads++;
    this.counters.bytesRead += n;
    return n;
  }

  /** Reads until `length` bytes or the end of the file. */
  async readFully(handle: fs.FileHandle, buffer: Buffer, offset: number, length: number, position: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const n = await this.read(handle, buffer, offset + done, length - done, position + done);
      if (n === 0) break;
      done += n;
    }
    return done;
  }

  async size(handle: fs.FileHandle): Promise<number> {
    return this.sync ? fstatSync(handle.fd).size : (await handle.stat()).size;
  }

  /** Stats of a path, or undefined when it does not exist. */
  async stat(file: string): Promise<Stats | undefined> {
    try {
      return this.sync ? statSync(file) : await fs.stat(file);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /** Writes all of `data` at `position` (null: at the file position, or the end for an append handle). */
  async write(handle: fs.FileHandle, file: string, data: Buffer, position: number | null = null): Promise<void> {
    let length = data.length;
    const fault = this.#fault?.(file, data.length);
    if (fault) length = Math.min(fault.written, data.length);
    for (let done = 0; done < length; ) {
      const at = position === null ? null : position + done;
      done += this.sync ? writeSync(handle.fd, data, done, length - done, at) : (await handle.write(data, done, length - done, at)).bytesWritten;
    }
    if (fault) throw fault.error;
  }

  /** Always through the thread pool: an fsync takes milliseconds, far too long to block for. */
  async datasync(handle: fs.FileHandle): Promise<void> {
    await handle.datasync();
  }
}

/**
 * Makes a rename or a new file in `dir` durable. Linux needs the folder itself fsynced; where a
 * folder cannot be opened or synced (some platforms and shares) there is nothing more to do.
 */
export async function syncDir(dir: string): Promise<void> {
  let handle: fs.FileHandle | undefined;
  try {
    handle = await fs.open(dir, 'r');
    await handle.sync();
  } catch {
    // not supported here
  } finally {
    await handle?.close();
  }
}
