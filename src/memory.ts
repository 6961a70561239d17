import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/**
 * V8 lets the old generation grow, after each full collection, to what survived it times a factor
 * it picks from how cheap collections have been: up to 4 on a machine where they are quick. A long
 * import promotes ~20 KB per document (each job's objects outlive two scavenges while its upload and
 * Redis calls are under way), so the heap swung between ~35 MB live and ~140 MB and peak RSS reached
 * 270-300 MB after 30,000-50,000 documents (bench/scale.ts, section atscale). A fixed factor of 1.3
 * held it at ~170 MB, for no CPU per document that the bench could tell apart: the collections it
 * adds are incremental and concurrent, on ~40 MB of live heap.
 */
export const HEAP_GROWING_PERCENT = 30;

/**
 * Caps V8's heap growth factor (see HEAP_GROWING_PERCENT); the earlier in a process, the better.
 * `setting`: IDSYNC_HEAP_GROWING_PERCENT, a whole number; 0 leaves the factor to V8.
 */
export function boundHeapGrowth(setting?: string): void {
  const percent = setting !== undefined && /^\d+$/.test(setting.trim()) ? Number(setting) : HEAP_GROWING_PERCENT;
  setFlagsFromString(`--heap-growing-percent=${percent}`);
}

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
