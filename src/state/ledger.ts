import { createHash, randomUUID } from 'node:crypto';
import { promises as fs, fstatSync, mkdirSync, readSync, writeSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { isLocalFilesystem } from '../sources/small-file.ts';

export type LedgerState = 'started' | 'stored';

interface LedgerLine {
  op: 'header' | 'start' | 'stored' | 'abort';
  personId?: string;
  publicId?: string;
  sha256?: string;
  bytes?: number;
  at: number;
  apiUrl?: string;
  /**
   * On a start: the attempt that wrote it, so that attempt can tell its own start from another's.
   * On an abort: the start it cancels (an abort without one cancels any, as older versions wrote).
   */
  attempt?: string;
  /** The Ledger instance (process) that wrote the line: it skips its own lines when reading back. */
  w?: string;
}

interface Known {
  state: LedgerState;
  sha256?: string;
  /** The attempt of the start that made it 'started'. */
  attempt?: string;
}

/** Fsyncs start at most this often; a `start` waits at most this long beyond its own fsync. */
export const GROUP_COMMIT_MS = 4;

interface PendingLine {
  line: string;
  /** Resolve only once fsynced (start, header); otherwise once written. */
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

export function ledgerKey(personId: string, publicId: string): string {
  return `${personId}/${publicId}`;
}

/**
 * The durable memory of what idsync started and stored on one API, kept outside Redis under
 * `<stateDir>/ledger/`, so that even a rerun whose Redis state is gone never sends a document
 * twice. An append-only JSON-lines file: `start` is made durable (fsync) before the upload's
 * first byte leaves, `stored` is appended after the API confirmed it. A `start` with no `stored`
 * after it means doubt: the job asks the API before sending again.
 *
 * Only `start` (and the header) waits for an fsync. A `stored` or `abort` line resolves once it
 * is written (after an fsync already under way, at most) and causes none: the next one makes it
 * durable too, and if a machine crash loses it first, the `start` before it only costs one
 * "does it exist?" request. Appends from concurrent jobs share one fsync (group commit), and
 * fsyncs start at most every GROUP_COMMIT_MS: each wakes a thread-pool thread, which on a busy
 * 2-vCPU machine cost the main thread ~90 µs per fsync (an import of 2,000 files made ~700 of
 * them, one per ~3 documents; now ~270).
 */
export class Ledger {
  readonly file: string;
  readonly #handle: fs.FileHandle;
  readonly #known = new Map<string, Known>();
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  #offset = 0;
  /** Lines not written yet. */
  #pending: PendingLine[] = [];
  /** Durable lines written but not fsynced yet. */
  #unsynced: PendingLine[] = [];
  #flushing: Promise<void> | undefined;
  /** When the last fsync started (performance.now()); -Infinity before the first. */
  #lastSyncAt = Number.NEGATIVE_INFINITY;
  #mayBeTorn = false;
  /**
   * On a local filesystem, appends and look-ups use synchronous calls (a few microseconds against
   * the page cache) and only the fsync goes to the thread pool; each thread-pool round trip cost
   * more CPU than the work itself, per document (bench/run.ts). On a network share everything
   * stays asynchronous, so a hung server cannot stall the process.
   */
  readonly #syncIo: boolean;

  readonly #datasync: (handle: fs.FileHandle) => Promise<void>;
  /** Marks this instance's lines (see LedgerLine.w). */
  readonly #writerId = randomUUID().slice(0, 8);

  private constructor(file: string, handle: fs.FileHandle, log: Logger | undefined, now: () => number, syncIo: boolean, datasync: (handle: fs.FileHandle) => Promise<void>) {
    this.file = file;
    this.#datasync = datasync;
    this.#handle = handle;
    this.#log = log;
    this.#now = now;
    this.#syncIo = syncIo;
  }

  static async open(
    stateDir: string,
    apiUrl: string,
    options: { log?: Logger; now?: () => number; syncIo?: boolean; /** Test hook: the fsync of the group commit. */ datasync?: (handle: fs.FileHandle) => Promise<void> } = {},
  ): Promise<Ledger> {
    const dir = path.join(stateDir, 'ledger');
    const apiKey = createHash('sha256').update(apiUrl).digest('hex').slice(0, 16);
    const file = path.join(dir, `${apiKey}.jsonl`);
    let handle: fs.FileHandle;
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      handle = await fs.open(file, 'a+', 0o600);
    } catch (err) {
      // A could-not-start error (exit 2) naming the setting, not an unexpected one with a stack.
      const code = (err as NodeJS.ErrnoException).code ?? String(err);
      throw new ConfigError(`the state dir ${stateDir} cannot be written (${code} on ${(err as NodeJS.ErrnoException).path ?? file}); give a writable --state-dir (IDSYNC_STATE_DIR)`, '--state-dir');
    }
    const ledger = new Ledger(file, handle, options.log, options.now ?? Date.now, options.syncIo ?? (await isLocalFilesystem(dir)), options.datasync ?? ((h) => h.datasync()));
    await ledger.#catchUp();
    if (ledger.#offset === 0) await ledger.#append({ op: 'header', apiUrl, at: ledger.#now() }, true);
    else await ledger.#endTornLine();
    return ledger;
  }

  /** What this machine knows about a document, including what other local processes appended. */
  async state(personId: string, publicId: string): Promise<LedgerState | undefined> {
    return (await this.lookup(personId, publicId))?.state;
  }

  /** The state and the content (sha256) recorded for a document, and the attempt of its start. */
  async lookup(personId: string, publicId: string): Promise<{ state: LedgerState; sha256?: string; attempt?: string } | undefined> {
    await this.#catchUp();
    const known = this.#known.get(ledgerKey(personId, publicId));
    return known ? { ...known } : undefined;
  }

  get size(): number {
    return this.#known.size;
  }

  /**
   * Durable before it resolves: call it before the upload's first byte leaves. `attempt` (any
   * unique string) comes back from lookup() while this start is the document's latest word: a
   * start another process writes later (read back later) replaces it.
   */
  start(personId: string, publicId: string, sha256: string, attempt?: string): Promise<void> {
    this.#apply({ op: 'start', personId, publicId, sha256, attempt, at: 0 });
    return this.#append({ op: 'start', personId, publicId, sha256, ...(attempt ? { attempt } : {}), at: this.#now() }, true);
  }

  /**
   * A start written only if, once caught up with the file, this machine knows nothing of the
   * document: the check and the record are one step, so two jobs of this process cannot both
   * find it unknown. Undefined when it was known (nothing written); else the durable write.
   */
  async startIfUnknown(personId: string, publicId: string, sha256: string, attempt: string): Promise<{ durable: Promise<void> } | undefined> {
    await this.#catchUp();
    if (this.#known.has(ledgerKey(personId, publicId))) return undefined;
    return { durable: this.start(personId, publicId, sha256, attempt) };
  }

  /** Resolves once written (not fsynced): see the class comment. */
  stored(personId: string, publicId: string, sha256: string | undefined, bytes?: number): Promise<void> {
    this.#apply({ op: 'stored', personId, publicId, at: 0 });
    return this.#append({ op: 'stored', personId, publicId, sha256, bytes, at: this.#now() }, false);
  }

  /** The attempt failed before anything could have reached the server: no doubt remains. */
  abort(personId: string, publicId: string, attempt?: string): Promise<void> {
    this.#apply({ op: 'abort', personId, publicId, attempt, at: 0 });
    return this.#append({ op: 'abort', personId, publicId, ...(attempt ? { attempt } : {}), at: this.#now() }, false);
  }

  /**
   * A crash or a full disk can leave the last line unterminated; the next append would then be
   * glued onto it and both lost. Ending that line first keeps every later line readable.
   */
  async #endTornLine(): Promise<void> {
    const { size } = await this.#handle.stat();
    if (size === 0) return;
    const last = Buffer.alloc(1);
    await this.#handle.read(last, 0, 1, size - 1);
    if (last[0] !== 0x0a) {
      await this.#handle.appendFile('\n');
      await this.#handle.datasync();
    }
  }

  /** Makes every line durable (stored and abort lines wait for no fsync of their own), then closes. */
  async close(): Promise<void> {
    await this.#flushing;
    await this.#datasync(this.#handle).catch(() => undefined);
    await this.#handle.close();
  }

  #apply(line: LedgerLine): void {
    if (!line.personId || !line.publicId) return;
    const key = ledgerKey(line.personId, line.publicId);
    const current = this.#known.get(key);
    switch (line.op) {
      case 'start':
        if (current?.state !== 'stored') this.#known.set(key, { state: 'started', sha256: line.sha256, ...(line.attempt ? { attempt: line.attempt } : {}) });
        break;
      case 'stored':
        this.#known.set(key, { state: 'stored', sha256: line.sha256 ?? current?.sha256 });
        break;
      case 'abort':
        // Only the start it names: another attempt's start, written since, keeps its doubt.
        if (current?.state === 'started' && (line.attempt === undefined || line.attempt === current.attempt)) this.#known.delete(key);
        break;
      default:
        break;
    }
  }

  #reading: Promise<void> | undefined;

  /**
   * Reads lines appended since the last look (by this or another process on this machine).
   * Single-flight: concurrent jobs share one read, or two reads would both advance the offset.
   */
  #catchUp(): Promise<void> {
    this.#reading ??= this.#readNew().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  async #readNew(): Promise<void> {
    const size = this.#syncIo ? fstatSync(this.#handle.fd).size : (await this.#handle.stat()).size;
    if (size <= this.#offset) return;
    const length = size - this.#offset;
    const buffer = Buffer.alloc(length);
    const bytesRead = this.#syncIo ? readSync(this.#handle.fd, buffer, 0, length, this.#offset) : (await this.#handle.read(buffer, 0, length, this.#offset)).bytesRead;
    const end = buffer.subarray(0, bytesRead).lastIndexOf(0x0a);
    if (end < 0) return; // only a partial line so far
    const text = buffer.subarray(0, end + 1).toString('utf8');
    this.#offset += end + 1;
    for (const raw of text.split('\n')) {
      if (!raw) continue;
      try {
        const line = JSON.parse(raw) as LedgerLine;
        // Our own lines were applied when written; applied again here, a line of ours that sits
        // after another process's in the file would hide that other line.
        if (line.w !== this.#writerId) this.#apply(line);
      } catch {
        // A line torn by a crash mid-write: what it recorded was never confirmed, so the job will check.
        this.#log?.warn({ file: this.file }, 'skipping a damaged ledger line');
      }
    }
  }

  #append(line: LedgerLine, durable: boolean): Promise<void> {
    return new Promise((resolve, reject) => {
      this.#pending.push({ line: `${JSON.stringify({ ...line, w: this.#writerId })}\n`, durable, resolve, reject });
      if (!this.#flushing) this.#flushing = this.#flushLoop();
    });
  }

  /**
   * Appends our own lines (already applied in memory). When nothing else was appended around
   * them, the read position moves past them, so the next look-up does not read them back.
   */
  #appendSync(text: string): void {
    const fd = this.#handle.fd;
    const data = Buffer.from(text, 'utf8');
    const before = fstatSync(fd).size;
    for (let done = 0; done < data.length; ) done += writeSync(fd, data, done, data.length - done);
    const after = fstatSync(fd).size;
    if (before === this.#offset && after === before + data.length) this.#offset = after;
  }

  async #flushLoop(): Promise<void> {
    // Never finish synchronously: #append assigns #flushing after this returns, and the finally
    // below must clear it afterwards (with synchronous writes and no fsync, nothing else awaits).
    await null;
    try {
      while (this.#pending.length > 0 || this.#unsynced.length > 0) {
        if (this.#pending.length > 0) {
          const batch = this.#pending;
          this.#pending = [];
          try {
            // An append that failed half-way (disk full) left a torn line: end it first, or this
            // batch would be glued onto it and lost with it.
            if (this.#mayBeTorn) {
              await this.#endTornLine();
              this.#mayBeTorn = false;
            }
            const text = batch.map((p) => p.line).join('');
            if (this.#syncIo) this.#appendSync(text);
            else await this.#handle.appendFile(text);
          } catch (err) {
            this.#mayBeTorn = true;
            for (const p of batch) p.reject(err);
            continue;
          }
          for (const p of batch) {
            if (p.durable) this.#unsynced.push(p);
            else p.resolve();
          }
        }
        if (this.#unsynced.length === 0) continue;
        // Group commit: lines that arrive while we wait are written first and share this fsync.
        const wait = this.#lastSyncAt + GROUP_COMMIT_MS - performance.now();
        if (wait > 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          continue;
        }
        const waiting = this.#unsynced;
        this.#unsynced = [];
        this.#lastSyncAt = performance.now();
        try {
          await this.#datasync(this.#handle);
        } catch (err) {
          this.#mayBeTorn = true;
          for (const p of waiting) p.reject(err);
          continue;
        }
        for (const p of waiting) p.resolve();
      }
    } finally {
      this.#flushing = undefined;
    }
  }
}
