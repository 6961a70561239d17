import { constants, promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir, type LedgerIo } from './ledger-io.ts';

/**
 * One line of a journal (JSON): a document's step, or the journal's header, or the seal a
 * compaction appends when it takes the journal over.
 */
export interface JournalLine {
  op: 'header' | 'start' | 'stored' | 'abort' | 'seal';
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
  /** The writer's sequence number of the line: it finds its lines again after a seal. */
  s?: number;
  /** On a header: the journal's generation. On a seal: the generation that takes the appends. */
  gen?: number;
}

/** Bytes read per call; a longer line (never written by idsync) grows the buffer. */
const READ_CHUNK = 1 << 20;
const MAX_LINE = 64 << 20;

export function journalName(gen: number): string {
  return `journal-${gen}.jsonl`;
}

export function journalGen(name: string): number | undefined {
  const m = /^journal-(\d+)\.jsonl$/.exec(name);
  return m ? Number(m[1]) : undefined;
}

/**
 * An append-only file of JSON lines that several processes append to at once (O_APPEND: each
 * process's batch lands whole, after whatever is there). A compaction seals it: lines after the
 * first seal line count for nobody, and whoever wrote them appends them again to the journal the
 * manifest names now (see ledger.ts).
 */
export class Journal {
  readonly gen: number;
  readonly file: string;
  readonly handle: fs.FileHandle;
  /** Everything before this offset has been read. */
  offset = 0;
  /** Where the first seal line starts, once seen. */
  sealedAt: number | undefined;
  /** A failed append may have left half a line at the end. */
  mayBeTorn = false;
  /** No longer in the manifest: closed once nothing uses it. */
  retired = false;
  /** Writes and fsyncs under way on it. */
  busy = 0;

  private constructor(gen: number, file: string, handle: fs.FileHandle) {
    this.gen = gen;
    this.file = file;
    this.handle = handle;
  }

  /** Opens an existing journal for reading and appending; never creates one (ENOENT: it was folded). */
  static async open(dir: string, gen: number): Promise<Journal> {
    const file = path.join(dir, journalName(gen));
    return new Journal(gen, file, await fs.open(file, constants.O_RDWR | constants.O_APPEND));
  }

  /** Creates a new journal with its header line, durable before anyone is told its name. */
  static async create(dir: string, gen: number, apiUrl: string, at: number, io: LedgerIo): Promise<void> {
    const file = path.join(dir, journalName(gen));
    const handle = await fs.open(file, constants.O_RDWR | constants.O_APPEND | constants.O_CREAT | constants.O_EXCL, 0o600);
    try {
      await io.write(handle, file, Buffer.from(`${JSON.stringify({ op: 'header', apiUrl, gen, at })}\n`));
      await handle.datasync();
    } finally {
      await handle.close();
    }
    await syncDir(dir);
  }

  /**
   * A crash or a full disk can leave the last line unterminated; the next append would then be
   * glued onto it and both lost. Ending that line first keeps every later line readable.
   */
  async endTornLine(io: LedgerIo): Promise<void> {
    const size = await io.size(this.handle);
    if (size === 0) return;
    const last = Buffer.alloc(1);
    await io.read(this.handle, last, 0, 1, size - 1);
    if (last[0] !== 0x0a) {
      await io.write(this.handle, this.file, Buffer.from('\n'));
      await this.handle.datasync();
    }
  }

  async close(): Promise<void> {
    await this.handle.close().catch(() => undefined);
  }
}

/**
 * Calls `visit` with each complete line between `from` and `to` and its offset, streamed a chunk
 * at a time; stops after a line for which it returns false. Returns the offset after the last
 * line visited (a partial last line is left for later).
 */
export async function readLines(io: LedgerIo, handle: fs.FileHandle, from: number, to: number, visit: (text: string, at: number) => boolean): Promise<number> {
  let position = from;
  let buffer = Buffer.allocUnsafe(Math.min(READ_CHUNK, Math.max(1, to - from)));
  while (position < to) {
    const want = Math.min(buffer.length, to - position);
    const n = await io.read(handle, buffer, 0, want, position);
    if (n === 0) break;
    const view = buffer.subarray(0, n);
    let start = 0;
    for (let nl = view.indexOf(0x0a); nl !== -1; nl = view.indexOf(0x0a, start)) {
      const text = view.toString('utf8', start, nl);
      const at = position + start;
      start = nl + 1;
      if (!visit(text, at)) return position + start;
    }
    if (start === 0) {
      // No line end in a whole buffer: the rest of the file, or a line longer than the buffer.
      if (n < want || position + n >= to) break;
      if (buffer.length >= MAX_LINE) {
        // Not a line idsync writes: skip it whole (the visitor reports it as damaged).
        visit('', position);
        position += n;
        continue;
      }
      buffer = Buffer.allocUnsafe(buffer.length * 2);
      continue;
    }
    position += start;
  }
  return position;
}

/** Parses a line; undefined for a damaged one (torn by a crash or a full disk). */
export function parseLine(text: string): JournalLine | undefined {
  try {
    const line = JSON.parse(text) as JournalLine;
    return line && typeof line === 'object' && typeof line.op === 'string' ? line : undefined;
  } catch {
    return undefined;
  }
}
