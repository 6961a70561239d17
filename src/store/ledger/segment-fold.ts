import { setImmediate as yieldToEventLoop } from 'node:timers/promises';
import { compareKeys, documentKey } from './document-key.ts';
import { applyCompacting, sameState, type DocOp, type DocState } from './document-state.ts';
import type { LedgerIo } from './ledger-io.ts';
import { SegmentWriter, type SegmentInfo, type SegmentReader } from './segment-file.ts';

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

/** A document's state as the segments (oldest first) know it: the newest record wins; null when none. */
export async function probeSegments(segments: readonly SegmentReader[], key: Buffer): Promise<DocState | null> {
  for (let i = segments.length - 1; i >= 0; i--) {
    const found = await segments[i]!.find(key);
    if (found !== undefined) return found;
  }
  return null;
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
  const sorted = [...steps.entries()].map(([key, ops]) => ({ key: documentKey(key), ops }));
  sorted.sort((a, b) => compareKeys(a.key, 0, b.key, 0));
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
      const base = (await probeSegments(segments, key)) ?? undefined;
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
