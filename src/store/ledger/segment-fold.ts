import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { compareKeys, documentKey } from './document-key.ts';
import { applyCompacting, sameState, type DocOp, type DocState } from './document-state.ts';
import type { LedgerIo } from './ledger-io.ts';
import { SegmentCursor, SegmentWriter, type SegmentInfo, type SegmentReader } from './segment-file.ts';
import { decodeRecord } from './segment-record.ts';

/** Lookups between two yields to the event loop while a fold reads synchronously. */
const PROBES_PER_TURN = 256;

/**
 * The steps a stretch of history took, per document, in file order: what a fold applies. Its
 * size is bounded by the caller (one journal's worth, or one chunk of a migration).
 */
export class StepsByDocument {
  readonly #steps = new Map<string, DocOp[]>();

  add(key: string, op: DocOp): void {
    const steps = this.#steps.get(key);
    if (steps) steps.push(op);
    else this.#steps.set(key, [op]);
  }

  get size(): number {
    return this.#steps.size;
  }

  entries(): IterableIterator<[string, DocOp[]]> {
    return this.#steps.entries();
  }
}

/**
 * A fold asks for ascending keys. A segment with few records per key asked is read through
 * alongside them (a chunk per call); a larger one is asked per key (two small reads each).
 */
const SCAN_WHEN_RECORDS_PER_KEY_BELOW = 16;

interface Seeker {
  /** The record for `key` (keys must ascend): a state, null for a tombstone, undefined when none. */
  seek(key: Buffer): Promise<DocState | null | undefined>;
}

function seekerFor(segment: SegmentReader, keys: number, io: LedgerIo): Seeker {
  if (segment.records >= keys * SCAN_WHEN_RECORDS_PER_KEY_BELOW) return { seek: (key) => segment.find(key) };
  const cursor = new SegmentCursor(segment, io.threadPool());
  let live: boolean | undefined;
  return {
    async seek(key) {
      live ??= await cursor.next();
      while (live && compareKeys(cursor.buffer, cursor.at, key, 0) < 0) live = await cursor.next();
      if (!live || compareKeys(cursor.buffer, cursor.at, key, 0) !== 0) return undefined;
      return decodeRecord(cursor.buffer, cursor.at) ?? null;
    },
  };
}

export interface FoldResult {
  /** The new segment, or undefined when the steps changed nothing. */
  segment: SegmentInfo | undefined;
  /** Documents known after the fold minus before. */
  documentsDelta: number;
}

/**
 * Applies `steps` onto what `segments` know and writes every document whose state changed into a
 * new segment `name` (a tombstone where the steps took a document back). Memory: the steps, their
 * keys sorted, one chunk of records.
 */
export async function foldIntoSegment(options: {
  dir: string;
  name: string;
  steps: StepsByDocument;
  segments: readonly SegmentReader[];
  io: LedgerIo;
  signal?: AbortSignal;
  onProgress?: () => Promise<void>;
}): Promise<FoldResult> {
  const { steps, segments, io, signal } = options;
  const sorted = [...steps.entries()].map(([key, ops]) => {
    const hash = documentKey(key);
    // Latin-1 strings compare in byte order, natively: several times faster than a comparator over buffers.
    return { key: hash, order: hash.toString('latin1'), ops };
  });
  sorted.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0));
  const seekers = segments.map((segment) => seekerFor(segment, sorted.length, io));
  const writer = await SegmentWriter.create(options.dir, options.name, sorted.length, io.threadPool());
  let delta = 0;
  try {
    for (let i = 0; i < sorted.length; i++) {
      if (i % PROBES_PER_TURN === PROBES_PER_TURN - 1) {
        signal?.throwIfAborted();
        if (io.sync) await yieldToEventLoop();
        await options.onProgress?.();
      }
      const { key, ops } = sorted[i]!;
      let base: DocState | undefined;
      for (let s = seekers.length - 1; s >= 0; s--) {
        const found = await seekers[s]!.seek(key);
        if (found !== undefined) {
          base = found ?? undefined;
          break;
        }
      }
      const after = ops.reduce<DocState | undefined>(applyCompacting, base);
      if (sameState(base, after)) continue;
      await writer.add(key, after);
      delta += (after ? 1 : 0) - (base ? 1 : 0);
    }
    signal?.throwIfAborted();
    if (writer.records === 0) {
      await writer.abandon();
      return { segment: undefined, documentsDelta: 0 };
    }
    return { segment: await writer.finish(), documentsDelta: delta };
  } catch (err) {
    await writer.abandon();
    throw err;
  }
}
