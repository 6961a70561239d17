import { describe, expect, it } from 'vitest';
import { chunkStreamed, collectOldGarbage, COLLECT_EVERY_BYTES, earlyCollectionAvailable } from '../../src/memory.ts';

describe('early collection of streamed chunks', () => {
  it('is available, and does not leave gc() in the global scope', () => {
    expect(earlyCollectionAvailable()).toBe(true);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });

  it('collects the young generation once per COLLECT_EVERY_BYTES streamed, and a full collection on demand', async () => {
    const { PerformanceObserver, constants } = await import('node:perf_hooks');
    const kinds: number[] = [];
    const observer = new PerformanceObserver((list) => {
      for (const entry of list.getEntries()) kinds.push((entry as unknown as { detail: { kind: number } }).detail.kind);
    });
    observer.observe({ entryTypes: ['gc'] });
    const kept = { alive: Buffer.alloc(16, 7) };
    // Nothing is allocated in the loop: the young collections seen are the ones it asked for.
    for (let i = 0; i < 3 * (COLLECT_EVERY_BYTES / 65536); i++) chunkStreamed(65536);
    collectOldGarbage();
    await new Promise((r) => setTimeout(r, 50)); // gc entries are delivered asynchronously
    observer.disconnect();
    expect(kinds.filter((k) => k === constants.NODE_PERFORMANCE_GC_MINOR).length).toBeGreaterThanOrEqual(3);
    expect(kinds).toContain(constants.NODE_PERFORMANCE_GC_MAJOR);
    expect(kept.alive.equals(Buffer.alloc(16, 7))).toBe(true);
  });
});
