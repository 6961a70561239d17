import { createHash, randomBytes } from 'node:crypto';
import { openSync, writeSync, closeSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Writes `bytes` of random data in 1 MiB chunks (never all in memory) and returns its sha256. */
export function writeBigFile(filePath: string, bytes: number): string {
  const hash = createHash('sha256');
  const fd = openSync(filePath, 'w');
  try {
    for (let left = bytes; left > 0; ) {
      const chunk = randomBytes(Math.min(left, 1 << 20));
      hash.update(chunk);
      writeSync(fd, chunk);
      left -= chunk.length;
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex');
}

/**
 * V8 collects garbage Buffers only after tens of MB of external memory pile up, which would
 * look like buffering. With `collect`, a full GC runs before each sample so the peak shows
 * what is actually held.
 */
function exposeGc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Samples RSS every few ms while `work` runs; returns the work's result and the peak growth. */
export async function peakRssGrowth<T>(work: () => Promise<T>, options: { collect?: boolean } = {}): Promise<{ result: T; growth: number; peak: number }> {
  const gc = options.collect ? exposeGc() : () => undefined;
  gc();
  const base = process.memoryUsage.rss();
  let peak = base;
  const timer = setInterval(() => {
    gc();
    peak = Math.max(peak, process.memoryUsage.rss());
  }, options.collect ? 25 : 5);
  try {
    const result = await work();
    peak = Math.max(peak, process.memoryUsage.rss());
    return { result, growth: peak - base, peak };
  } finally {
    clearInterval(timer);
  }
}
