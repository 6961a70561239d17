import { createHash, randomUUID } from 'node:crypto';
import { promises as fs, existsSync, fstatSync, mkdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { ConfigError, LedgerWriteError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { isLocalFilesystem } from '../../sources/small-file.ts';
import { CompactionLock } from './compaction-lock.ts';
import { compact, removeOrphans, type CompactionOutcome, type CompactionStep } from './compactor.ts';
import { documentKey, ledgerKey } from './document-key.ts';
import { applyLive, type DocOp, type DocState, type LedgerState } from './document-state.ts';
import { Journal, parseLine, readLines, type JournalLine } from './journal.ts';
import { LedgerIo, type WriteFault } from './ledger-io.ts';
import { MANIFEST_FILE, MANIFEST_FORMAT, manifestIdentity, readManifest, writeManifest, type Manifest, type ManifestStats } from './manifest.ts';
import { finishMigration, migrateV1, MIGRATING } from './migration.ts';
import { SegmentReader } from './segment-file.ts';
import { epochsSeen, noteEpoch } from './epochs-seen.ts';

export { ledgerKey } from './document-key.ts';
export type { LedgerState } from './document-state.ts';
export type { CompactionStep } from './compactor.ts';
export type { WriteFault } from './ledger-io.ts';

/** Fsyncs start at most this often; a `start` waits at most this long beyond its own fsync. */
export const GROUP_COMMIT_MS = 4;

/**
 * A journal past this size is folded into a segment. It bounds what an open reads and what the
 * in-memory index of recent steps holds: 8 MiB of lines is ~15,000 documents (each a start and a
 * stored line), ~25 MB of index, read in ~0.2 s.
 */
export const JOURNAL_MAX_BYTES = 8 << 20;

const RESOLVED = Promise.resolve();

/** How long to leave compaction alone after another process held the lock, or after a failure. */
const RETRY_AFTER_BUSY_MS = 5_000;
const RETRY_AFTER_FAILURE_MS = 30_000;

export interface LedgerOptions {
  log?: Logger;
  now?: () => number;
  syncIo?: boolean;
  /** Test hook: the fsync of the group commit. */
  datasync?: (handle: fs.FileHandle) => Promise<void>;
  /** Test hook: fail writes (a full disk). */
  writeFault?: WriteFault;
  /** Test hook: a compaction starts once the journal holds more than this. */
  journalMaxBytes?: number;
  /** Test hook: see CompactionOptions.step. */
  compactionStep?: (step: CompactionStep) => void | Promise<void>;
}

export interface LedgerStats {
  /** Documents known (started or stored). */
  documents: number;
  segments: number;
  /** Records in segments, tombstones and overridden ones included. */
  segmentRecords: number;
  journals: number;
  journalBytes: number;
  /** Segments, journals and manifest. */
  bytesOnDisk: number;
  /** Documents in the in-memory index of the journals. */
  recentDocuments: number;
  /** Reads and bytes read by this instance since it opened. */
  reads: number;
  bytesRead: number;
}

/** A step in the in-memory index, tagged with the journal that holds it (null: not written yet). */
interface TaggedOp extends DocOp {
  gen: number | null;
}

interface Recent {
  ops: TaggedOp[];
  /** What the segments say (null: nothing); undefined until looked up, and again after a fold. */
  base?: DocState | null;
}

interface PendingLine {
  text: string;
  seq: number;
  key: string;
  op: TaggedOp;
  /** Resolve only once fsynced (start); otherwise once written. */
  durable: boolean;
  resolve: () => void;
  reject: (err: unknown) => void;
}

/**
 * The durable memory of what idsync started and stored on one API, kept outside Redis under
 * `<stateDir>/ledger/<api key>/`, so that even a rerun whose Redis state is gone never sends a
 * document twice. `start` is made durable (fsync) before the upload's first byte leaves, `stored`
 * is appended after the API confirmed it. A `start` with no `stored` after it means doubt: the job
 * asks the API before sending again. Format and rules: docs/ledger.md.
 *
 * Steps are appended to a journal (JSON lines) that every idsync process of the machine appends to;
 * a compaction folds it, once it is past JOURNAL_MAX_BYTES, into immutable sorted segment files.
 * A lookup reads the journal lines appended since the last look (by any process), then the
 * document's record in the segments (two reads per segment) unless the journal's index already
 * has it. Memory and open time depend on the journal's bound, not on the history.
 *
 * Only `start` waits for an fsync. A `stored` or `abort` line resolves once it is written (after an
 * fsync already under way, at most) and causes none: the next one makes it durable too, and if a
 * machine crash loses it first, the `start` before it only costs one "does it exist?" request.
 * Appends from concurrent jobs share one fsync (group commit), and fsyncs start at most every
 * GROUP_COMMIT_MS: each wakes a thread-pool thread, which costs the main thread CPU on a busy
 * machine, so fewer, larger fsyncs leave more of it to the uploads.
 */
export class Ledger {
  readonly #dir: string;
  readonly #apiUrl: string;
  readonly #io: LedgerIo;
  readonly #log: Logger | undefined;
  readonly #now: () => number;
  readonly #datasync: (handle: fs.FileHandle) => Promise<void>;
  readonly #journalMaxBytes: number;
  readonly #compactionStep: LedgerOptions['compactionStep'];
  /** Marks this instance's lines (see JournalLine.w). */
  readonly #writerId = randomUUID().slice(0, 8);
  #seq = 0;

  #manifest!: Manifest;
  #manifestId: string | undefined;
  #manifestStats: ManifestStats = { ino: -1, size: -1, mtimeMs: -1, ctimeMs: -1 };
  readonly #manifestFile: string;
  /** Oldest first, as the manifest lists them. */
  #segments: SegmentReader[] = [];
  /** Segments no longer listed, closed once no lookup reads them. */
  #retiredSegments: SegmentReader[] = [];
  #probing = 0;
  /** Oldest first; the last takes the appends. */
  #journals: Journal[] = [];
  #retiredJournals: Journal[] = [];
  /** The index of the journals' steps, by document: bounded by the journals' size. */
  readonly #recent = new Map<string, Recent>();
  /** Changes whenever the segments do: a lookup that spans a change starts again. */
  #epoch = 0;

  /** Lines not written yet. */
  #pending: PendingLine[] = [];
  /** Durable lines written but not fsynced yet, with the journal each went to. */
  #unsynced: { line: PendingLine; journal: Journal }[] = [];
  #flushing: Promise<void> | undefined;
  /** When the last fsync started (performance.now()); -Infinity before the first. */
  #lastSyncAt = Number.NEGATIVE_INFINITY;
  #reading: Promise<void> | undefined;

  #compaction: Promise<CompactionOutcome> | undefined;
  readonly #stopCompaction = new AbortController();
  #compactAfter = 0;
  #closed = false;

  private constructor(dir: string, apiUrl: string, io: LedgerIo, options: LedgerOptions) {
    this.#dir = dir;
    this.#manifestFile = path.join(dir, MANIFEST_FILE);
    this.#apiUrl = apiUrl;
    this.#io = io;
    this.#log = options.log;
    this.#now = options.now ?? Date.now;
    this.#datasync = options.datasync ?? ((h) => h.datasync());
    this.#journalMaxBytes = options.journalMaxBytes ?? JOURNAL_MAX_BYTES;
    this.#compactionStep = options.compactionStep;
  }

  /**
   * Opens (creating, or converting a format-1 file, when needed) the ledger of `apiUrl` under
   * `<stateDir>/ledger/`. A state dir that cannot be written is a ConfigError naming it.
   */
  static async open(stateDir: string, apiUrl: string, options: LedgerOptions = {}): Promise<Ledger> {
    const root = path.join(stateDir, 'ledger');
    const apiKey = createHash('sha256').update(apiUrl).digest('hex').slice(0, 16);
    const dir = path.join(root, apiKey);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      const io = new LedgerIo(options.syncIo ?? (await isLocalFilesystem(dir)), undefined, options.writeFault);
      const ledger = new Ledger(dir, apiUrl, io, options);
      try {
        await ledger.#ensureManifest(path.join(root, `${apiKey}.jsonl`));
        await ledger.#loadManifest();
        await ledger.#current.endTornLine(io);
        await ledger.#catchUp();
      } catch (err) {
        await ledger.close().catch(() => undefined);
        throw err;
      }
      ledger.#maybeCompact();
      return ledger;
    } catch (err) {
      throw stateDirError(stateDir, err);
    }
  }

  /** The Redis states this state dir has worked with for the API (see epochs-seen.ts). */
  epochsSeen(): Promise<string[]> {
    return epochsSeen(this.#dir);
  }

  noteEpoch(epoch: string): Promise<void> {
    return noteEpoch(this.#dir, epoch);
  }

  /** The journal this instance appends to. */
  get file(): string {
    return this.#current.file;
  }

  get #current(): Journal {
    return this.#journals.at(-1)!;
  }

  /** What this machine knows about a document, including what other local processes appended. */
  async state(personId: string, publicId: string): Promise<LedgerState | undefined> {
    return (await this.lookup(personId, publicId))?.state;
  }

  /** The state and the content (sha256) recorded for a document, and the attempt of its start. */
  async lookup(personId: string, publicId: string): Promise<{ state: LedgerState; sha256?: string; attempt?: string } | undefined> {
    await this.#catchUp();
    return this.#settled(ledgerKey(personId, publicId), (state) => (state ? { ...state } : undefined));
  }

  /**
   * Durable before it resolves: call it before the upload's first byte leaves. `attempt` (any
   * unique string) comes back from lookup() while this start is the document's latest word: a
   * start another process writes later (read back later) replaces it.
   */
  start(personId: string, publicId: string, sha256: string, attempt?: string): Promise<void> {
    return this.#record({ op: 'start', personId, publicId, sha256, ...(attempt ? { attempt } : {}), at: this.#now() }, true);
  }

  /**
   * A start written only if, once caught up with the journal, this machine knows nothing of the
   * document: the check and the record are one step, so two jobs of this process cannot both
   * find it unknown. Undefined when it was known (nothing written); else the durable write.
   */
  async startIfUnknown(personId: string, publicId: string, sha256: string, attempt: string): Promise<{ durable: Promise<void> } | undefined> {
    await this.#catchUp();
    const key = ledgerKey(personId, publicId);
    return this.#settled(key, (state, base) => {
      if (state) return undefined;
      const durable = this.start(personId, publicId, sha256, attempt);
      // Read in this same turn: the job's next lookup need not read the segments again.
      const recent = this.#recent.get(key)!;
      if (recent.base === undefined) recent.base = base ?? null;
      return { durable };
    });
  }

  /** Resolves once written (not fsynced): see the class comment. */
  stored(personId: string, publicId: string, sha256: string | undefined, bytes?: number): Promise<void> {
    return this.#record({ op: 'stored', personId, publicId, sha256, bytes, at: this.#now() }, false);
  }

  /** The attempt failed before anything could have reached the server: no doubt remains. */
  abort(personId: string, publicId: string, attempt?: string): Promise<void> {
    return this.#record({ op: 'abort', personId, publicId, ...(attempt ? { attempt } : {}), at: this.#now() }, false);
  }

  /**
   * Folds the journal into segments now (waiting for a compaction under way here first).
   * 'busy' when another process holds the compaction lock. For tests, benchmarks and tools.
   */
  async compact(): Promise<CompactionOutcome> {
    await this.#compaction?.catch(() => undefined);
    return this.#runCompaction(0, true);
  }

  /** Counts as of this call (its own reads, one lookup per document of the index, come after). */
  async stats(): Promise<LedgerStats> {
    const { reads, bytesRead } = this.#io.counters;
    await this.#catchUp();
    let documents = this.#manifest.documents;
    for (const key of [...this.#recent.keys()]) documents += await this.#settled(key, (state, base) => (state ? 1 : 0) - (base ? 1 : 0));
    let journalBytes = 0;
    for (const journal of this.#journals) journalBytes += await this.#io.size(journal.handle);
    const segmentBytes = this.#segments.reduce((n, s) => n + s.bytes, 0);
    const manifestBytes = (await this.#io.stat(path.join(this.#dir, MANIFEST_FILE)))?.size ?? 0;
    return {
      documents,
      segments: this.#segments.length,
      segmentRecords: this.#segments.reduce((n, s) => n + s.records, 0),
      journals: this.#journals.length,
      journalBytes,
      bytesOnDisk: segmentBytes + journalBytes + manifestBytes,
      recentDocuments: this.#recent.size,
      reads,
      bytesRead,
    };
  }

  /** Makes every line durable (stored and abort lines wait for no fsync of their own), then closes. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#stopCompaction.abort();
    await this.#compaction?.catch(() => undefined);
    await this.#flushing;
    if (this.#journals.length > 0) await this.#datasync(this.#current.handle).catch(() => undefined);
    for (const journal of [...this.#journals, ...this.#retiredJournals]) await journal.close();
    for (const segment of [...this.#segments, ...this.#retiredSegments]) await segment.close().catch(() => undefined);
  }

  // --- opening -------------------------------------------------------------------------------

  /** Creates the ledger, or converts a format-1 file, unless another process has or does. */
  async #ensureManifest(v1File: string): Promise<void> {
    let told = false;
    for (;;) {
      if (await readManifest(this.#dir)) {
        if (existsSync(`${v1File}${MIGRATING}`)) await finishMigration(v1File);
        else if (existsSync(v1File)) this.#log?.warn({ file: v1File }, 'a ledger file of an older idsync version appeared after the conversion; it is ignored (stop older versions before running this one)');
        return;
      }
      const lock = await CompactionLock.acquire(this.#dir, this.#io);
      if (lock) {
        try {
          if (!(await readManifest(this.#dir))) {
            await removeOrphans(this.#dir, undefined);
            if (existsSync(v1File) || existsSync(`${v1File}${MIGRATING}`)) {
              this.#log?.info({ file: v1File }, 'converting the ledger to the segment format (once)');
              await migrateV1({ v1File, dir: this.#dir, apiUrl: this.#apiUrl, io: this.#io, log: this.#log, now: this.#now, onProgress: () => lock.refresh() });
            } else {
              await Journal.create(this.#dir, 1, this.#apiUrl, this.#now(), this.#io);
              await writeManifest(this.#dir, { format: MANIFEST_FORMAT, apiUrl: this.#apiUrl, version: 1, segments: [], journals: [1], documents: 0, nextSegment: 1 }, this.#io);
            }
          }
        } finally {
          await lock.release();
        }
        continue;
      }
      if (!told) this.#log?.info({ dir: this.#dir }, 'waiting for another idsync process to set up the ledger');
      told = true;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }

  // --- reading -------------------------------------------------------------------------------

  /**
   * Reads what was appended since the last look (by this or another process on this machine),
   * after re-reading the manifest if a compaction changed it. Single-flight: concurrent jobs share
   * one read, or two reads would both advance the offsets.
   */
  #catchUp(): Promise<void> {
    if (!this.#reading && this.#io.sync && this.#nothingNew()) return RESOLVED;
    this.#reading ??= this.#readNew().finally(() => {
      this.#reading = undefined;
    });
    return this.#reading;
  }

  /**
   * With synchronous calls, the common case answered without a promise per step: the manifest is
   * the one loaded and no journal grew past what was read (a look-up right after our own append).
   */
  #nothingNew(): boolean {
    const stats = statSync(this.#manifestFile, { throwIfNoEntry: false });
    const known = this.#manifestStats;
    if (!stats || stats.ino !== known.ino || stats.size !== known.size || stats.mtimeMs !== known.mtimeMs || stats.ctimeMs !== known.ctimeMs) return false;
    for (const journal of this.#journals) {
      const size = fstatSync(journal.handle.fd).size;
      if (journal === this.#current && size > this.#journalMaxBytes) return false;
      if (journal.offset < (journal.sealedAt ?? size) || (journal === this.#current && journal.sealedAt !== undefined)) return false;
    }
    return this.#journals.length === 1;
  }

  async #readNew(): Promise<void> {
    if ((await manifestIdentity(this.#dir, this.#io)) !== this.#manifestId) await this.#loadManifest();
    for (const journal of this.#journals) await this.#readJournal(journal);
    // A seal in the journal we append to means a newer manifest, whatever its identity looked like.
    if (this.#current.sealedAt !== undefined) {
      await this.#loadManifest();
      for (const journal of this.#journals) await this.#readJournal(journal);
    }
    if (this.#journals.length > 1) this.#maybeCompact();
  }

  async #readJournal(journal: Journal): Promise<void> {
    const size = await this.#io.size(journal.handle);
    if (journal === this.#current) this.#maybeCompact(size);
    const end = journal.sealedAt ?? size;
    if (journal.offset >= end) return;
    journal.offset = await readLines(this.#io, journal.handle, journal.offset, end, (text, at) => {
      if (!text) return true;
      const line = parseLine(text);
      if (!line) {
        // A line torn by a crash mid-write: what it recorded was never confirmed, so the job will check.
        this.#log?.warn({ file: journal.file }, 'skipping a damaged ledger line');
        return true;
      }
      if (line.op === 'seal') {
        journal.sealedAt = at;
        return false;
      }
      // Our own lines were applied when written; applied again here, a line of ours that sits
      // after another process's in the file would hide that other line.
      if (line.w !== this.#writerId) this.#applyRead(line, journal.gen);
      return true;
    });
  }

  #applyRead(line: JournalLine, gen: number): void {
    if ((line.op !== 'start' && line.op !== 'stored' && line.op !== 'abort') || !line.personId || !line.publicId) return;
    this.#index(ledgerKey(line.personId, line.publicId), { op: line.op, sha256: line.sha256, attempt: line.attempt, gen });
  }

  #index(key: string, op: TaggedOp): void {
    const recent = this.#recent.get(key);
    if (!recent) {
      this.#recent.set(key, { ops: [op] });
      return;
    }
    // A stored line repeats its start's sha256: one string for both (the index is most of the memory).
    const previous = recent.ops.at(-1)?.sha256;
    if (previous !== undefined && op.sha256 === previous) op.sha256 = previous;
    recent.ops.push(op);
  }

  /**
   * Re-reads the manifest and opens what it names. A file it names can vanish before it is opened
   * (a newer compaction removed it): the manifest is then read again.
   */
  async #loadManifest(): Promise<void> {
    let missing: string | undefined;
    for (;;) {
      const loaded = await readManifest(this.#dir);
      if (!loaded) throw new Error(`the ledger manifest in ${this.#dir} has vanished`);
      const { manifest, identity } = loaded;
      if (missing !== undefined && identity === missing) throw new Error(`a file the ledger manifest in ${this.#dir} names is missing (it was removed by hand?)`);
      const opened: { segments: SegmentReader[]; journals: Journal[] } = { segments: [], journals: [] };
      let segments: SegmentReader[];
      let journals: Journal[];
      try {
        segments = await Promise.all(
          manifest.segments.map(async (info) => {
            const known = this.#segments.find((s) => path.basename(s.file) === info.file);
            if (known) return known;
            const reader = await SegmentReader.open(path.join(this.#dir, info.file), this.#io);
            opened.segments.push(reader);
            return reader;
          }),
        );
        journals = await Promise.all(
          manifest.journals.map(async (gen) => {
            const known = this.#journals.find((j) => j.gen === gen);
            if (known) return known;
            const journal = await Journal.open(this.#dir, gen);
            opened.journals.push(journal);
            return journal;
          }),
        );
      } catch (err) {
        for (const s of opened.segments) await s.close();
        for (const j of opened.journals) await j.close();
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
          missing = identity;
          continue;
        }
        throw err;
      }
      const segmentsChanged = segments.length !== this.#segments.length || segments.some((s, i) => s !== this.#segments[i]);
      const journalsFolded = this.#journals.some((j) => !journals.includes(j));
      for (const s of this.#segments) if (!segments.includes(s)) this.#retiredSegments.push(s);
      for (const j of this.#journals) {
        if (!journals.includes(j)) {
          j.retired = true;
          this.#retiredJournals.push(j);
        }
      }
      this.#manifest = manifest;
      this.#manifestId = identity;
      this.#manifestStats = loaded.stats;
      this.#segments = segments;
      this.#journals = journals;
      if (segmentsChanged || journalsFolded) {
        this.#epoch++;
        // What the folded journals said is in the segments now: their steps leave the index, and
        // every document's record is looked up again.
        const listed = new Set(manifest.journals);
        for (const [key, recent] of this.#recent) {
          recent.ops = recent.ops.filter((op) => op.gen === null || listed.has(op.gen));
          if (recent.ops.length === 0) this.#recent.delete(key);
          else delete recent.base;
        }
      }
      await this.#closeRetired();
      return;
    }
  }

  async #closeRetired(): Promise<void> {
    if (this.#probing === 0) {
      const segments = this.#retiredSegments;
      this.#retiredSegments = [];
      for (const s of segments) await s.close().catch(() => undefined);
    }
    const idle = this.#retiredJournals.filter((j) => j.busy === 0 && !this.#unsynced.some((u) => u.journal === j));
    this.#retiredJournals = this.#retiredJournals.filter((j) => !idle.includes(j));
    for (const j of idle) await j.close();
  }

  /**
   * Calls `then` with the document's state and its segments' record, in the same turn as the
   * state was computed (so a start written by `then` cannot race another job's check). Starts
   * again when a compaction changed the segments during the lookup.
   */
  async #settled<T>(key: string, then: (state: DocState | undefined, base: DocState | undefined) => T): Promise<T> {
    for (;;) {
      const recent = this.#recent.get(key);
      if (recent?.base !== undefined) return then(fold(recent.base, recent.ops), recent.base ?? undefined);
      const epoch = this.#epoch;
      const base = await this.#probe(key);
      if (epoch !== this.#epoch) continue;
      const now = this.#recent.get(key);
      if (now) now.base = base;
      return then(fold(base, now?.ops), base ?? undefined);
    }
  }

  async #probe(key: string): Promise<DocState | null> {
    const segments = this.#segments;
    if (segments.length === 0) return null;
    const hash = documentKey(key);
    this.#probing++;
    try {
      for (let i = segments.length - 1; i >= 0; i--) {
        const found = await segments[i]!.find(hash);
        if (found !== undefined) return found;
      }
      return null;
    } finally {
      if (--this.#probing === 0 && this.#retiredSegments.length > 0) void this.#closeRetired();
    }
  }

  // --- writing -------------------------------------------------------------------------------

  /** Applies the step at once (the index answers with it from now on), then appends it. */
  #record(line: JournalLine & { op: 'start' | 'stored' | 'abort'; personId: string; publicId: string }, durable: boolean): Promise<void> {
    const key = ledgerKey(line.personId, line.publicId);
    const op: TaggedOp = { op: line.op, sha256: line.sha256, attempt: line.attempt, gen: null };
    this.#index(key, op);
    const seq = ++this.#seq;
    return new Promise((resolve, reject) => {
      this.#pending.push({ text: `${JSON.stringify({ ...line, w: this.#writerId, s: seq })}\n`, seq, key, op, durable, resolve, reject });
      if (!this.#flushing) this.#flushing = this.#flushLoop();
    });
  }

  async #flushLoop(): Promise<void> {
    // Never finish synchronously: #record assigns #flushing after this returns, and the finally
    // below must clear it afterwards (with synchronous writes and no fsync, nothing else awaits).
    await null;
    try {
      while (this.#pending.length > 0 || this.#unsynced.length > 0) {
        if (this.#pending.length > 0) {
          const batch = this.#pending;
          this.#pending = [];
          await this.#writeBatch(batch);
          continue;
        }
        // Group commit: lines that arrive while we wait are written first and share this fsync.
        const wait = this.#lastSyncAt + GROUP_COMMIT_MS - performance.now();
        if (wait > 0) {
          await new Promise((resolve) => setTimeout(resolve, wait));
          continue;
        }
        const waiting = this.#unsynced;
        this.#unsynced = [];
        this.#lastSyncAt = performance.now();
        const failures = new Map<Journal, unknown>();
        for (const journal of new Set(waiting.map((w) => w.journal))) {
          journal.busy++;
          try {
            await this.#datasync(journal.handle);
          } catch (err) {
            journal.mayBeTorn = true;
            failures.set(journal, new LedgerWriteError(this.#dir, err));
          } finally {
            journal.busy--;
          }
        }
        for (const { line, journal } of waiting) {
          if (failures.has(journal)) line.reject(failures.get(journal));
          else line.resolve();
        }
        if (this.#retiredJournals.length > 0) await this.#closeRetired();
      }
    } finally {
      this.#flushing = undefined;
    }
  }

  /**
   * Appends a batch to the current journal, then makes sure it counts: if a compaction sealed that
   * journal before the batch landed, the lines after the seal are written again to the journal
   * that replaced it (they go back to the front of the queue).
   */
  async #writeBatch(batch: PendingLine[]): Promise<void> {
    const journal = this.#current;
    journal.busy++;
    try {
      let size: number | undefined;
      try {
        // An append that failed half-way (disk full) left a torn line: end it first, or this
        // batch would be glued onto it and lost with it.
        if (journal.mayBeTorn) {
          await journal.endTornLine(this.#io);
          journal.mayBeTorn = false;
        }
        size = await this.#append(journal, Buffer.from(batch.map((p) => p.text).join(''), 'utf8'));
      } catch (err) {
        journal.mayBeTorn = true;
        const failure = new LedgerWriteError(this.#dir, err);
        for (const p of batch) p.reject(failure);
        return;
      }
      const again = await this.#linesAfterSeal(journal, batch);
      const listed = this.#journals.includes(journal);
      for (const p of batch) {
        if (again.has(p.seq)) continue;
        if (listed) p.op.gen = journal.gen;
        else this.#forget(p.key, p.op); // folded already: the segments hold it now
        if (p.durable) this.#unsynced.push({ line: p, journal });
        else p.resolve();
      }
      if (again.size > 0) {
        this.#log?.info({ file: journal.file, lines: again.size }, 'ledger lines landed after a compaction sealed the journal; appending them to the new one');
        this.#pending = [...batch.filter((p) => again.has(p.seq)), ...this.#pending];
      }
      if (size !== undefined && journal === this.#current) this.#maybeCompact(size);
    } finally {
      journal.busy--;
    }
  }

  /**
   * Appends our own lines (already applied in memory). When nothing else was appended around
   * them, the read position moves past them, so the next look-up does not read them back.
   * Returns the journal's size after it when known (synchronous calls).
   */
  async #append(journal: Journal, data: Buffer): Promise<number | undefined> {
    if (!this.#io.sync) {
      await this.#io.write(journal.handle, journal.file, data);
      return undefined;
    }
    const fd = journal.handle.fd;
    const before = fstatSync(fd).size;
    await this.#io.write(journal.handle, journal.file, data);
    const after = fstatSync(fd).size;
    if (before === journal.offset && after === before + data.length) journal.offset = after;
    return after;
  }

  /**
   * The sequence numbers of the batch's lines that landed after a seal. None when the manifest
   * still names the journal as current: a seal is only ever appended after the manifest moved
   * on, so it will land after the batch. Otherwise the journal is scanned from where no seal was.
   */
  async #linesAfterSeal(journal: Journal, batch: PendingLine[]): Promise<Set<number>> {
    const none = new Set<number>();
    if ((await manifestIdentity(this.#dir, this.#io)) === this.#manifestId && journal === this.#current && journal.sealedAt === undefined) return none;
    await this.#catchUp();
    if (journal === this.#current && journal.sealedAt === undefined) return none;
    const seqs = new Set(batch.map((p) => p.seq));
    const found = new Set<number>();
    let sealAt = journal.sealedAt;
    await readLines(this.#io, journal.handle, sealAt ?? journal.offset, await this.#io.size(journal.handle), (text, at) => {
      const line = text ? parseLine(text) : undefined;
      if (!line) return true;
      if (sealAt === undefined) {
        if (line.op === 'seal') sealAt = journal.sealedAt ??= at;
      } else if (at > sealAt && line.w === this.#writerId && line.s !== undefined && seqs.has(line.s)) {
        found.add(line.s);
      }
      return true;
    });
    return found.size > 0 ? found : none;
  }

  #forget(key: string, op: TaggedOp): void {
    const recent = this.#recent.get(key);
    if (!recent) return;
    recent.ops = recent.ops.filter((o) => o !== op);
    if (recent.ops.length === 0) this.#recent.delete(key);
  }

  // --- compaction ----------------------------------------------------------------------------

  /** Starts a compaction in the background when the journal is past its bound or older ones wait. */
  #maybeCompact(currentSize?: number): void {
    if (this.#closed || this.#compaction || performance.now() < this.#compactAfter) return;
    const over = currentSize !== undefined && currentSize > this.#journalMaxBytes;
    if (!over && this.#journals.length <= 1) return;
    this.#runCompaction(this.#journalMaxBytes, false).catch(() => undefined);
  }

  #runCompaction(rotateAbove: number, explicit: boolean): Promise<CompactionOutcome> {
    const run = (async () => {
      try {
        const outcome = await compact({
          dir: this.#dir,
          apiUrl: this.#apiUrl,
          io: this.#io,
          log: this.#log,
          now: this.#now,
          rotateAbove,
          signal: this.#stopCompaction.signal,
          step: this.#compactionStep,
        });
        this.#compactAfter = outcome === 'busy' ? performance.now() + RETRY_AFTER_BUSY_MS : 0;
        if (!this.#closed) await this.#catchUp();
        return outcome;
      } catch (err) {
        this.#compactAfter = performance.now() + RETRY_AFTER_FAILURE_MS;
        if (!this.#stopCompaction.signal.aborted) {
          this.#log?.warn({ err, dir: this.#dir }, 'ledger compaction failed; the journal keeps every step and it is tried again later');
        }
        throw err;
      }
    })();
    const tracked = run.finally(() => {
      if (this.#compaction === tracked) this.#compaction = undefined;
    });
    this.#compaction = tracked;
    if (!explicit) tracked.catch(() => undefined);
    return tracked;
  }
}

function fold(base: DocState | null | undefined, ops: readonly DocOp[] | undefined): DocState | undefined {
  let state = base ?? undefined;
  if (ops) for (const op of ops) state = applyLive(state, op);
  return state;
}

/** A state dir that cannot be used is the operator's to fix: say which, why and how. */
function stateDirError(stateDir: string, err: unknown): unknown {
  const e = err as NodeJS.ErrnoException;
  if (typeof e?.code !== 'string' || !e.syscall) return err;
  const where = e.path ? ` (${e.syscall} ${e.path})` : ` (${e.syscall})`;
  return new ConfigError(`the state dir ${path.resolve(stateDir)} cannot hold the ledger: ${e.code}${where}; make it writable or choose another with --state-dir`, '--state-dir');
}
