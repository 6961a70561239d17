import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * Keeps memory flat where idsync streams a lot through short-lived objects.
 *
 * Large transfers: every chunk a big upload reads from disk, or a big download receives from the
 * socket, is a fresh Buffer outside the V8 heap; V8 only collects the
 * dead ones when their total passes a soft limit of tens of MB, so a long transfer carries that
 * much garbage for nothing (docs/benchmarks.md, "Why the code is shaped so"). A young-generation collection every
 * COLLECT_EVERY_BYTES streamed frees them early: a scavenge of a mostly empty young generation
 * costs well under a millisecond, against the tens of milliseconds the bytes take to move.
 *
 * The collector is Node's `gc()`, reached the way the `expose-gc` package does it (turn the flag
 * on, take `gc` from a fresh context, turn it off again), so the process's global scope does not
 * gain a `gc`. Where that fails, nothing is collected early and idsync just uses more memory.
 */
export const COLLECT_EVERY_BYTES = 4 * 2 ** 20;

type Collector = (options?: { type: 'minor' }) => void;

let collector: Collector | null | undefined;
let streamed = 0;

function getCollector(): Collector | null {
  if (collector !== undefined) return collector;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('typeof gc === "function" ? gc : undefined');
    setFlagsFromString('--no-expose-gc');
    collector = typeof gc === 'function' ? (gc as Collector) : null;
  } catch {
    collector = null;
  }
  return collector;
}

/** Call with the size of each chunk of a streamed transfer. */
export function chunkStreamed(bytes: number): void {
  streamed += bytes;
  if (streamed < COLLECT_EVERY_BYTES) return;
  streamed = 0;
  getCollector()?.({ type: 'minor' });
}

/** For tests: whether early collection is available in this process. */
export function earlyCollectionAvailable(): boolean {
  return getCollector() !== null;
}

/**
 * Enqueue: rows of a large manifest live for a batch's Redis round trip, long enough for V8 to
 * promote them to the old generation, where they pile up between the collections V8 chooses
 * itself, so the peak grows with the manifest. A full collection every ENQUEUE_COLLECT_EVERY_ROWS
 * rows bounds it for a few percent of the enqueue's speed (figures in docs/benchmarks.md).
 */
export const ENQUEUE_COLLECT_EVERY_ROWS = 10_000;

export function collectOldGarbage(): void {
  // gc() with no options is a full collection ({ type: 'major' } is not understood by Node 20's V8).
  (getCollector() as unknown as (() => void) | null)?.();
}
