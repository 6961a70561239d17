import { promises as fs } from 'node:fs';
import path from 'node:path';
import { compareKeys, KEY_BYTES } from './document-key.ts';
import type { DocState } from './document-state.ts';
import type { LedgerIo } from './ledger-io.ts';
import { decodeRecord, encodeRecord, isTombstone, RECORD_BYTES } from './segment-record.ts';

/**
 * A segment file: an immutable, sorted run of fixed-size records, found with two reads.
 *
 *   header    64 bytes: magic "IDSLSEG1", u32 version, u32 record size, u48 records, u48 live
 *                       (records that are not tombstones), u8 bucket bits b
 *   records   records x RECORD_BYTES, ascending by key
 *   buckets   (2^b + 1) x u32: index of the first record whose key's top b bits are >= i
 *
 * All numbers little-endian. A lookup reads the two bucket bounds of its key (8 bytes), then
 * that bucket's records (about 32 of them, ~2 KB), and searches them in memory. Nothing of a
 * segment is held in memory, so opening one costs one read however many documents it holds.
 */
export const SEGMENT_HEADER_BYTES = 64;
const MAGIC = 'IDSLSEG1';
const VERSION = 1;
/** Records per bucket the writer aims at. */
const BUCKET_TARGET = 32;
/** Caps the bucket table (4 MiB) a writer holds while it writes. */
const MAX_BUCKET_BITS = 20;
/** Bytes a writer or a cursor moves per call. */
const CHUNK_RECORDS = Math.floor((1 << 20) / RECORD_BYTES);

export interface SegmentInfo {
  /** File name inside the ledger folder. */
  file: string;
  records: number;
  live: number;
}

function bucketOf(key: Buffer, at: number, bits: number): number {
  return bits === 0 ? 0 : key.readUInt32BE(at) >>> (32 - bits);
}

export function segmentBytes(records: number, bucketBits: number): number {
  return SEGMENT_HEADER_BYTES + records * RECORD_BYTES + ((1 << bucketBits) + 1) * 4;
}

export class SegmentReader {
  readonly file: string;
  readonly records: number;
  readonly live: number;
  readonly bucketBits: number;
  readonly handle: fs.FileHandle;
  readonly #io: LedgerIo;

  private constructor(file: string, handle: fs.FileHandle, io: LedgerIo, records: number, live: number, bucketBits: number) {
    this.file = file;
    this.handle = handle;
    this.#io = io;
    this.records = records;
    this.live = live;
    this.bucketBits = bucketBits;
  }

  static async open(file: string, io: LedgerIo): Promise<SegmentReader> {
    const handle = await fs.open(file, 'r');
    try {
      const header = Buffer.alloc(SEGMENT_HEADER_BYTES);
      const n = await io.readFully(handle, header, 0, SEGMENT_HEADER_BYTES, 0);
      if (n < SEGMENT_HEADER_BYTES || header.toString('latin1', 0, 8) !== MAGIC) throw new Error(`${file} is not a ledger segment`);
      if (header.readUInt32LE(8) !== VERSION || header.readUInt32LE(12) !== RECORD_BYTES) throw new Error(`${file} is a segment of another format version`);
      const records = header.readUIntLE(16, 6);
      const live = header.readUIntLE(22, 6);
      const bits = header[28]!;
      const size = await io.size(handle);
      if (bits > MAX_BUCKET_BITS || size !== segmentBytes(records, bits)) throw new Error(`${file} is damaged: ${size} bytes, expected ${segmentBytes(records, bits)}`);
      return new SegmentReader(file, handle, io, records, live, bits);
    } catch (err) {
      await handle.close();
      throw err;
    }
  }

  get bytes(): number {
    return segmentBytes(this.records, this.bucketBits);
  }

  get #bucketsAt(): number {
    return SEGMENT_HEADER_BYTES + this.records * RECORD_BYTES;
  }

  /** The record for `key`: a state, null for a tombstone, undefined when this segment has none. */
  async find(key: Buffer): Promise<DocState | null | undefined> {
    if (this.records === 0) return undefined;
    const bounds = Buffer.allocUnsafe(8);
    await this.#io.readFully(this.handle, bounds, 0, 8, this.#bucketsAt + 4 * bucketOf(key, 0, this.bucketBits));
    const first = bounds.readUInt32LE(0);
    const count = bounds.readUInt32LE(4) - first;
    if (count <= 0) return undefined;
    // Its own buffer per call: with the thread pool, lookups interleave.
    const bucket = Buffer.allocUnsafe(count * RECORD_BYTES);
    await this.#io.readFully(this.handle, bucket, 0, bucket.length, SEGMENT_HEADER_BYTES + first * RECORD_BYTES);
    return search(bucket, count, key);
  }

  async close(): Promise<void> {
    await this.handle.close();
  }
}

function search(records: Buffer, count: number, key: Buffer): DocState | null | undefined {
  let lo = 0;
  let hi = count - 1;
  while (lo <= hi) {
    const mid = (lo + hi) >>> 1;
    const c = compareKeys(records, mid * RECORD_BYTES, key, 0);
    if (c === 0) return decodeRecord(records, mid * RECORD_BYTES) ?? null;
    if (c < 0) lo = mid + 1;
    else hi = mid - 1;
  }
  return undefined;
}

/**
 * Writes a segment under a temporary name, streamed: records must come in ascending key order.
 * finish() completes and fsyncs it and only then gives it its name, so a segment file under its
 * final name is always whole. Memory: one chunk of records and the bucket table.
 */
export class SegmentWriter {
  readonly name: string;
  readonly #dir: string;
  readonly #temp: string;
  readonly #handle: fs.FileHandle;
  readonly #io: LedgerIo;
  readonly #bits: number;
  readonly #counts: Uint32Array;
  readonly #chunk = Buffer.alloc(CHUNK_RECORDS * RECORD_BYTES);
  #inChunk = 0;
  #position = SEGMENT_HEADER_BYTES;
  #records = 0;
  #live = 0;
  readonly #lastKey = Buffer.alloc(KEY_BYTES);

  private constructor(dir: string, name: string, handle: fs.FileHandle, io: LedgerIo, bits: number) {
    this.#dir = dir;
    this.name = name;
    this.#temp = path.join(dir, `${name}.tmp`);
    this.#handle = handle;
    this.#io = io;
    this.#bits = bits;
    this.#counts = new Uint32Array((1 << bits) + 1);
  }

  /** `atMost`: an upper bound of the records to come (it sizes the bucket table). */
  static async create(dir: string, name: string, atMost: number, io: LedgerIo): Promise<SegmentWriter> {
    const bits = Math.max(0, Math.min(MAX_BUCKET_BITS, Math.ceil(Math.log2(Math.max(1, atMost) / BUCKET_TARGET))));
    const handle = await fs.open(path.join(dir, `${name}.tmp`), 'wx', 0o600);
    return new SegmentWriter(dir, name, handle, io, bits);
  }

  get records(): number {
    return this.#records;
  }

  /** Adds a document's state, or a tombstone (undefined). */
  async add(key: Buffer, state: DocState | undefined): Promise<void> {
    this.#checkOrder(key, 0);
    encodeRecord(key, state, this.#chunk, this.#inChunk * RECORD_BYTES);
    await this.#added(key, 0, state === undefined);
  }

  /** Adds a record copied from another segment. */
  async addRaw(source: Buffer, at: number): Promise<void> {
    this.#checkOrder(source, at);
    source.copy(this.#chunk, this.#inChunk * RECORD_BYTES, at, at + RECORD_BYTES);
    await this.#added(source, at, isTombstone(source, at));
  }

  #checkOrder(key: Buffer, at: number): void {
    if (this.#records > 0 && compareKeys(this.#lastKey, 0, key, at) >= 0) throw new Error('segment records out of order');
    key.copy(this.#lastKey, 0, at, at + KEY_BYTES);
  }

  async #added(key: Buffer, at: number, tombstone: boolean): Promise<void> {
    this.#counts[bucketOf(key, at, this.#bits)]!++;
    this.#records++;
    if (!tombstone) this.#live++;
    if (++this.#inChunk === CHUNK_RECORDS) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#inChunk === 0) return;
    const bytes = this.#inChunk * RECORD_BYTES;
    await this.#io.write(this.#handle, this.#temp, this.#chunk.subarray(0, bytes), this.#position);
    this.#position += bytes;
    this.#inChunk = 0;
  }

  async finish(): Promise<SegmentInfo> {
    await this.#flush();
    const buckets = Buffer.alloc(this.#counts.length * 4);
    let first = 0;
    for (let i = 0; i < this.#counts.length - 1; i++) {
      buckets.writeUInt32LE(first, i * 4);
      first += this.#counts[i]!;
    }
    buckets.writeUInt32LE(first, (this.#counts.length - 1) * 4);
    await this.#io.write(this.#handle, this.#temp, buckets, this.#position);
    const header = Buffer.alloc(SEGMENT_HEADER_BYTES);
    header.write(MAGIC, 0, 'latin1');
    header.writeUInt32LE(VERSION, 8);
    header.writeUInt32LE(RECORD_BYTES, 12);
    header.writeUIntLE(this.#records, 16, 6);
    header.writeUIntLE(this.#live, 22, 6);
    header[28] = this.#bits;
    await this.#io.write(this.#handle, this.#temp, header, 0);
    await this.#handle.sync();
    await this.#handle.close();
    await fs.rename(this.#temp, path.join(this.#dir, this.name));
    return { file: this.name, records: this.#records, live: this.#live };
  }

  /** Drops the unfinished file. */
  async abandon(): Promise<void> {
    await this.#handle.close().catch(() => undefined);
    await fs.rm(this.#temp, { force: true });
  }
}

/** Reads a segment's records in order, a chunk at a time (merges). */
export class SegmentCursor {
  readonly #reader: SegmentReader;
  readonly #io: LedgerIo;
  readonly buffer = Buffer.alloc(CHUNK_RECORDS * RECORD_BYTES);
  /** Offset of the current record in `buffer`. */
  at = -RECORD_BYTES;
  #inBuffer = 0;
  #next = 0;

  constructor(reader: SegmentReader, io: LedgerIo) {
    this.#reader = reader;
    this.#io = io;
  }

  /** Moves to the next record; false past the last. */
  async next(): Promise<boolean> {
    this.at += RECORD_BYTES;
    if (this.at < this.#inBuffer * RECORD_BYTES) return true;
    const count = Math.min(CHUNK_RECORDS, this.#reader.records - this.#next);
    if (count <= 0) return false;
    const bytes = count * RECORD_BYTES;
    const n = await this.#io.readFully(this.#reader.handle, this.buffer, 0, bytes, SEGMENT_HEADER_BYTES + this.#next * RECORD_BYTES);
    if (n !== bytes) throw new Error(`${this.#reader.file} ended early`);
    this.#next += count;
    this.#inBuffer = count;
    this.at = 0;
    return true;
  }
}
