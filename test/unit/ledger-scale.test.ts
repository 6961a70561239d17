import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createWriteStream, mkdirSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { tempDir } from '../helpers/fixtures.ts';

const API = 'https://acme.example/identities';

const API_KEY = createHash('sha256').update(API).digest('hex').slice(0, 16);

/** Unique per document, and of a sha256's form. */
function sha(i: number): string {
  return i.toString(16).padStart(64, '0');
}

/**
 * A ledger of `documents` stored documents: a format-1 file (as older versions wrote it: the
 * quickest to generate), converted into segments at the first open.
 */
async function build(documents: number): Promise<string> {
  const dir = tempDir();
  mkdirSync(path.join(dir, 'ledger'));
  const out = createWriteStream(path.join(dir, 'ledger', `${API_KEY}.jsonl`));
  out.write(`${JSON.stringify({ op: 'header', apiUrl: API, at: 1 })}\n`);
  for (let i = 0; i < documents; i++) {
    const line = `${JSON.stringify({ op: 'stored', personId: `person${i % 1000}`, publicId: `doc${i}`, sha256: sha(i), bytes: 100, at: 1, w: 'old' })}\n`;
    if (!out.write(line)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  const ledger = await Ledger.open(dir, API, { syncIo: true });
  await ledger.close();
  return dir;
}

/** What a fresh instance reads to open, and then to answer one lookup. */
async function openCost(dir: string, probe: number) {
  const ledger = await Ledger.open(dir, API, { syncIo: true });
  const atOpen = await ledger.stats();
  const hit = await ledger.lookup(`person${probe % 1000}`, `doc${probe}`);
  const afterHit = await ledger.stats();
  const miss = await ledger.lookup('nobody', 'nothing');
  const afterMiss = await ledger.stats();
  await ledger.close();
  return {
    atOpen,
    hit,
    miss,
    hitReads: afterHit.reads - atOpen.reads,
    hitBytes: afterHit.bytesRead - atOpen.bytesRead,
    missReads: afterMiss.reads - afterHit.reads,
  };
}

describe('Ledger cost does not grow with its history', () => {
  it('opens a 200,000-document ledger reading exactly what it reads for 2,000, and answers in a few reads', async () => {
    const small = await openCost(await build(2_000), 1_234);
    const big = await openCost(await build(200_000), 123_456);
    expect(small.atOpen.documents).toBe(2_000);
    expect(big.atOpen.documents).toBe(200_000);
    expect(big.atOpen.segments).toBe(1);
    // Open: the segment's header, the journal's header line, its last byte. Nothing per document.
    expect(big.atOpen.reads).toBe(small.atOpen.reads);
    expect(big.atOpen.bytesRead).toBe(small.atOpen.bytesRead);
    expect(big.atOpen.bytesRead).toBeLessThan(1_000);
    // Nothing of the history in memory.
    expect(big.atOpen.recentDocuments).toBe(0);
    // A lookup: the two bounds of the key's bucket, then the bucket (about 32 records of 68 bytes).
    expect(big.hit).toMatchObject({ state: 'stored', sha256: sha(123_456) });
    expect(big.miss).toBeUndefined();
    expect(big.hitReads).toBe(2);
    expect(big.missReads).toBeLessThanOrEqual(2);
    expect(big.hitBytes).toBeLessThan(8 + 100 * 68);
  }, 120_000);

  it('keeps in memory only the steps of the journal, however many documents went through', async () => {
    const dir = tempDir();
    const journalMaxBytes = 64 * 1024;
    const ledger = await Ledger.open(dir, API, { syncIo: true, journalMaxBytes });
    for (let i = 0; i < 3_000; i += 100) {
      const writes: Promise<void>[] = [];
      for (let j = i; j < i + 100; j++) writes.push(ledger.start('p', `d${j}`, sha(j), `attempt-${j}`), ledger.stored('p', `d${j}`, sha(j), 1));
      await Promise.all(writes);
    }
    // The journal went past its bound many times: compactions ran in the background meanwhile.
    expect((await ledger.stats()).segments).toBeGreaterThanOrEqual(1);
    // Once folded, nothing of those documents stays in memory.
    expect(await ledger.compact()).toBe('compacted');
    const stats = await ledger.stats();
    expect(stats.recentDocuments).toBe(0);
    expect(stats.documents).toBe(3_000);
    // A few more: exactly those are in the index.
    for (let j = 3_000; j < 3_010; j++) await ledger.stored('p', `d${j}`, sha(j), 1);
    expect((await ledger.stats()).recentDocuments).toBe(10);
    await ledger.close();
    const again = await Ledger.open(dir, API, { syncIo: true, journalMaxBytes });
    const reopened = await again.stats();
    expect(reopened.recentDocuments).toBe(10);
    expect(reopened.bytesRead).toBeLessThan(journalMaxBytes);
    expect(await again.lookup('p', 'd0')).toMatchObject({ state: 'stored', sha256: sha(0) });
    expect(await again.lookup('p', 'd3009')).toMatchObject({ state: 'stored', sha256: sha(3_009) });
    await again.close();
  }, 120_000);
});
