import { describe, expect, it } from 'vitest';
import { chunkStreamed, collectOldGarbage, COLLECT_EVERY_BYTES, earlyCollectionAvailable } from '../../src/memory.ts';

describe('early collection of streamed chunks', () => {
  it('is available, and does not leave gc() in the global scope', () => {
    expect(earlyCollectionAvailable()).toBe(true);
    expect((globalThis as { gc?: unknown }).gc).toBeUndefined();
  });

  it('runs as chunks stream by without disturbing anything', () => {
    const kept = { alive: Buffer.alloc(16, 7) };
    for (let i = 0; i < 3 * (COLLECT_EVERY_BYTES / 65536); i++) chunkStreamed(65536);
    collectOldGarbage();
    expect(kept.alive.equals(Buffer.alloc(16, 7))).toBe(true);
  });
});
