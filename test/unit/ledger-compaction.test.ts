import { spawnSync } from 'node:child_process';
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { tempDir } from '../helpers/fixtures.ts';

const API = 'https://acme.example/identities';

function enospc(): Error {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
}

/** A pid that belonged to a process which has exited. */
function deadPid(): number {
  return spawnSync(process.execPath, ['-e', '']).pid!;
}

function ledgerDir(ledger: Ledger): string {
  return path.dirname(ledger.file);
}

function manifestOf(dir: string): { segments: { file: string; records: number }[]; journals: number[]; documents: number } {
  return JSON.parse(readFileSync(path.join(dir, 'manifest.json'), 'utf8'));
}

/** What every document below should be, checked through any Ledger. */
type Expected = Map<string, { state: 'started' | 'stored'; sha256?: string; attempt?: string } | undefined>;

async function expectAll(ledger: Ledger, expected: Expected): Promise<void> {
  for (const [key, want] of expected) {
    const [personId, publicId] = key.split('/') as [string, string];
    const got = await ledger.lookup(personId, publicId);
    if (want === undefined) expect(got, key).toBeUndefined();
    else expect(got, key).toMatchObject(want);
  }
}

for (const syncIo of [true, false]) {
  const openLedger = (dir: string, options: Parameters<typeof Ledger.open>[2] = {}) => Ledger.open(dir, API, { ...options, syncIo });

  describe(`Ledger segments and compaction (${syncIo ? 'synchronous' : 'thread-pool'} file calls)`, () => {
    it('answers from the journal and several segments, newest record first, and counts documents exactly', async () => {
      const dir = tempDir();
      const a = await openLedger(dir);
      const expected: Expected = new Map();
      const uuid = randomUUID();
      const long = `an attempt name longer than a record holds ${randomUUID()}`;
      // Round 1 (oldest segment): 300 stored, plus documents later rounds change.
      for (let i = 0; i < 300; i++) await a.stored('p', `old${i}`, `${i}`.padStart(64, '0'), 10);
      await a.start('p', 'taken-back', 'a'.repeat(64), uuid);
      await a.start('p', 'finished-later', 'b'.repeat(64), 'x');
      await a.start('p', 'long-attempt', 'c'.repeat(64), long);
      await a.stored('p', 'restarted', 'd'.repeat(64));
      expect(await a.compact()).toBe('compacted');
      // Round 2: a tombstone over round 1's start, a stored over another.
      await a.abort('p', 'taken-back', uuid);
      await a.stored('p', 'finished-later', undefined, 3);
      for (let i = 0; i < 40; i++) await a.start('p', `mid${i}`, 'e'.repeat(64), `attempt-${i}`);
      expect(await a.compact()).toBe('compacted');
      // Round 3: a start on a stored document changes nothing; an abort naming a long attempt.
      await a.start('p', 'restarted', 'f'.repeat(64), 'y');
      await a.abort('p', 'long-attempt', long);
      for (let i = 0; i < 4; i++) await a.stored('p', `mid${i}`, 'e'.repeat(64));
      expect(await a.compact()).toBe('compacted');
      // And the journal on top.
      await a.abort('p', 'mid10', 'attempt-10');
      await a.start('p', 'journal-only', '1'.repeat(64), uuid);

      for (let i = 0; i < 300; i++) expected.set(`p/old${i}`, { state: 'stored', sha256: `${i}`.padStart(64, '0') });
      expected.set('p/taken-back', undefined);
      expected.set('p/finished-later', { state: 'stored', sha256: 'b'.repeat(64) });
      expected.set('p/long-attempt', undefined);
      expected.set('p/restarted', { state: 'stored', sha256: 'd'.repeat(64) });
      for (let i = 0; i < 40; i++) expected.set(`p/mid${i}`, i < 4 ? { state: 'stored' } : i === 10 ? undefined : { state: 'started', attempt: `attempt-${i}` });
      expected.set('p/journal-only', { state: 'started', attempt: uuid });
      expected.set('p/never', undefined);
      const documents = [...expected.values()].filter(Boolean).length;

      await expectAll(a, expected);
      expect((await a.stats()).documents).toBe(documents);
      await a.close();
      const b = await openLedger(dir);
      await expectAll(b, expected);
      const stats = await b.stats();
      expect(stats.segments).toBeGreaterThanOrEqual(3);
      expect(stats.documents).toBe(documents);
      expect((await b.stats()).documents).toBe(documents);
      await b.close();
    });

    it('keeps a long attempt as a digest: another attempt sees doubt, and an abort naming it still takes it back', async () => {
      const dir = tempDir();
      const a = await openLedger(dir);
      const long = `x${'long attempt '.repeat(4)}`;
      await a.start('p', 'd', 'a'.repeat(64), long);
      await a.start('p', 'e', 'a'.repeat(64), long);
      await a.compact();
      await a.close();
      const b = await openLedger(dir);
      const seen = await b.lookup('p', 'd');
      expect(seen?.state).toBe('started');
      expect(seen?.attempt).not.toBe(long);
      await b.abort('p', 'd', 'some other attempt');
      expect(await b.state('p', 'd')).toBe('started');
      await b.abort('p', 'd', long);
      expect(await b.state('p', 'd')).toBeUndefined();
      await b.compact();
      await b.close();
      const c = await openLedger(dir);
      expect(await c.state('p', 'd')).toBeUndefined();
      expect(await c.state('p', 'e')).toBe('started');
      await c.close();
    });

    it('of two starts of different attempts, a compaction keeps the doubt for both owners', async () => {
      const dir = tempDir();
      const ours = await openLedger(dir);
      const theirs = await openLedger(dir);
      await ours.start('p', 'd', 's', 'our-attempt');
      await theirs.start('p', 'd', 's', 'their-attempt');
      await ours.compact();
      for (const ledger of [ours, theirs]) {
        const seen = await ledger.lookup('p', 'd');
        expect(seen?.state).toBe('started');
        expect(seen?.attempt).toBeUndefined(); // neither takes it for its own
      }
      await ours.abort('p', 'd', 'our-attempt');
      expect(await theirs.state('p', 'd')).toBe('started'); // their doubt stays
      await Promise.all([ours.close(), theirs.close()]);
    });

    it('compacts in the background while another instance on the same files keeps writing and reading', async () => {
      const dir = tempDir();
      const options = { journalMaxBytes: 8 * 1024 };
      const a = await openLedger(dir, options);
      const b = await openLedger(dir, options);
      const expected: Expected = new Map();
      const writer = async (ledger: Ledger, name: string) => {
        for (let i = 0; i < 150; i++) {
          const attempt = `${name}-${i}`;
          const sha = createHash('sha256').update(`${name}${i}`).digest('hex');
          await ledger.start(name, `d${i}`, sha, attempt);
          // Its own start is what it sees, whatever compaction runs meanwhile.
          expect(await ledger.lookup(name, `d${i}`)).toMatchObject({ state: 'started' });
          if (i % 3 === 0) {
            await ledger.abort(name, `d${i}`, attempt);
            expected.set(`${name}/d${i}`, undefined);
          } else if (i % 3 === 1) {
            await ledger.stored(name, `d${i}`, sha, 1);
            expected.set(`${name}/d${i}`, { state: 'stored', sha256: sha });
          } else {
            expected.set(`${name}/d${i}`, { state: 'started', sha256: sha });
          }
          // And it sees the other's finished work.
          const other = name === 'pa' ? 'pb' : 'pa';
          const j = i - 5;
          if (j >= 0 && j % 3 === 1 && expected.has(`${other}/d${j}`)) expect(await ledger.state(other, `d${j}`)).toBe('stored');
        }
      };
      await Promise.all([writer(a, 'pa'), writer(b, 'pb')]);
      await expectAll(a, expected);
      await expectAll(b, expected);
      await Promise.all([a.close(), b.close()]);
      const c = await openLedger(dir);
      await expectAll(c, expected);
      const stats = await c.stats();
      expect(stats.segments).toBeGreaterThanOrEqual(1); // compactions did run
      expect(stats.documents).toBe([...expected.values()].filter(Boolean).length);
      await c.close();
      expect(readdirSync(dir + '/ledger/' + readdirSync(dir + '/ledger')[0]!).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    });

    it('a line that lands in a journal after its seal is appended again to the new journal; one before the seal is folded', async () => {
      const dir = tempDir();
      let before: Ledger | undefined;
      let after: Ledger | undefined;
      const a = await openLedger(dir, {
        compactionStep: async (step) => {
          // Neither has looked since the compaction began: each still appends to the old journal.
          if (step === 'rotated') await before!.stored('p', 'before-seal', 's1');
          if (step === 'sealed') await after!.start('p', 'after-seal', 's2', 'late-attempt');
        },
      });
      before = await openLedger(dir);
      after = await openLedger(dir);
      await a.stored('p', 'first', 's0');
      const oldJournal = a.file;
      expect(await a.compact()).toBe('compacted');
      expect(existsSync(oldJournal)).toBe(false);
      // The late start went to the journal that replaced the old one.
      expect(after.file).not.toBe(oldJournal);
      expect(readFileSync(after.file, 'utf8')).toContain('late-attempt');
      await Promise.all([a.close(), before.close(), after.close()]);
      const fresh = await openLedger(dir);
      expect(await fresh.state('p', 'first')).toBe('stored');
      expect(await fresh.state('p', 'before-seal')).toBe('stored');
      expect(await fresh.lookup('p', 'after-seal')).toMatchObject({ state: 'started', attempt: 'late-attempt' });
      await fresh.close();
    });

    it('a full disk during an append rejects that write only; later writes land and stay readable', async () => {
      const dir = tempDir();
      let full = false;
      const a = await openLedger(dir, {
        writeFault: (file, bytes) => (full && file.endsWith('.jsonl') ? { written: Math.floor(bytes / 2), error: enospc() } : undefined),
      });
      await a.stored('p', 'd1', 's1');
      full = true;
      await expect(a.start('p', 'd2', 's2')).rejects.toMatchObject({ code: 'E_STATE_DIR', sysCode: 'ENOSPC' });
      full = false;
      await a.start('p', 'd3', 's3');
      await a.close();
      let damaged = 0;
      const b = await openLedger(dir, { log: { warn: () => damaged++, info: () => undefined } as never });
      expect(await b.state('p', 'd1')).toBe('stored');
      expect(await b.state('p', 'd2')).toBeUndefined();
      expect(await b.state('p', 'd3')).toBe('started');
      expect(damaged).toBe(1); // the torn half line, ended before d3 was appended
      await b.close();
    });

    it('a full disk during a compaction loses nothing; the next compaction finishes the work', async () => {
      const dir = tempDir();
      let full = true;
      const a = await openLedger(dir, { writeFault: (file, bytes) => (full && /seg-\d+\.seg\.tmp$/.test(file) ? { written: Math.min(bytes, 100), error: enospc() } : undefined) });
      const expected: Expected = new Map();
      for (let i = 0; i < 50; i++) {
        await a.stored('p', `d${i}`, `s${i}`);
        expected.set(`p/d${i}`, { state: 'stored', sha256: `s${i}` });
      }
      await expect(a.compact()).rejects.toMatchObject({ code: 'ENOSPC' });
      const ledgerFiles = readdirSync(ledgerDir(a));
      expect(ledgerFiles.filter((f) => f.endsWith('.tmp') || f.endsWith('.seg'))).toEqual([]);
      expect(ledgerFiles).not.toContain('compact.lock');
      await expectAll(a, expected);
      // Appends go on meanwhile.
      await a.start('p', 'later', 'sl', 'att');
      expected.set('p/later', { state: 'started', attempt: 'att' });
      const b = await openLedger(dir);
      await expectAll(b, expected);
      // (b may have started a compaction of its own meanwhile: closing stops it.)
      await b.close();
      full = false;
      expect(await a.compact()).toBe('compacted');
      await expectAll(a, expected);
      const m = manifestOf(ledgerDir(a));
      expect(m.journals).toHaveLength(1);
      expect(m.documents).toBe(51);
      await a.close();
      const c = await openLedger(dir);
      await expectAll(c, expected);
      await c.close();
    });

    it('a full disk while the manifest is replaced leaves the old manifest in force', async () => {
      const dir = tempDir();
      let full = false;
      const a = await openLedger(dir, { writeFault: (file) => (full && file.endsWith('manifest.json.tmp') ? { written: 10, error: enospc() } : undefined) });
      await a.stored('p', 'd', 's');
      full = true;
      await expect(a.compact()).rejects.toMatchObject({ code: 'ENOSPC' });
      full = false;
      expect(manifestOf(ledgerDir(a)).segments).toEqual([]);
      expect(await a.state('p', 'd')).toBe('stored');
      expect(await a.compact()).toBe('compacted');
      expect(await a.state('p', 'd')).toBe('stored');
      await a.close();
    });
  });
}

describe('Ledger compaction interrupted as by kill -9', () => {
  for (const step of ['rotated', 'sealed', 'segment-written', 'installed', 'merged'] as const) {
    it(`loses nothing when the compacting process dies at "${step}"; the next one takes the stale lock over and cleans up`, async () => {
      const dir = tempDir();
      const expected: Expected = new Map();
      let kill = false;
      const a = await Ledger.open(dir, API, {
        compactionStep: (at) => {
          if (kill && at === step) throw new Error('killed');
        },
      });
      // Two rounds of equal size, so the second compaction also merges.
      for (let i = 0; i < 20; i++) {
        await a.start('p', `d${i}`, `s${i}`, `a${i}`);
        if (i % 2 === 0) await a.stored('p', `d${i}`, `s${i}`);
      }
      await a.compact();
      for (let i = 0; i < 20; i++) {
        if (i % 4 === 1) await a.abort('p', `d${i}`, `a${i}`);
        await a.stored('p', `e${i}`, `t${i}`);
      }
      for (let i = 0; i < 20; i++) {
        expected.set(`p/d${i}`, i % 2 === 0 ? { state: 'stored', sha256: `s${i}` } : i % 4 === 1 ? undefined : { state: 'started', attempt: `a${i}` });
        expected.set(`p/e${i}`, { state: 'stored', sha256: `t${i}` });
      }
      kill = true;
      await expect(a.compact()).rejects.toThrow(`compaction stopped at ${step}`);
      const files = ledgerDir(a);
      await a.close();
      // What kill -9 leaves: the lock of a process that is gone, and a half-written segment.
      const lock = JSON.parse(readFileSync(path.join(files, 'compact.lock'), 'utf8'));
      writeFileSync(path.join(files, 'compact.lock'), JSON.stringify({ ...lock, pid: deadPid() }));
      writeFileSync(path.join(files, 'seg-00000099.seg.tmp'), Buffer.alloc(1000, 7));

      const b = await Ledger.open(dir, API);
      await expectAll(b, expected);
      expect(await b.compact()).toBe('compacted');
      await expectAll(b, expected);
      const m = manifestOf(files);
      expect(m.documents).toBe([...expected.values()].filter(Boolean).length);
      const named = new Set([...m.segments.map((s) => s.file), ...m.journals.map((g) => `journal-${g}.jsonl`), 'manifest.json']);
      expect(readdirSync(files).filter((f) => !named.has(f))).toEqual([]);
      await b.close();
      const c = await Ledger.open(dir, API);
      await expectAll(c, expected);
      await c.close();
    });
  }

  it('a fold that leaves nothing to write still empties the index of what it folded', async () => {
    const dir = tempDir();
    const a = await Ledger.open(dir, API);
    for (let i = 0; i < 50; i++) {
      await a.start('p', `d${i}`, 's', `a${i}`);
      await a.abort('p', `d${i}`, `a${i}`);
    }
    expect((await a.stats()).recentDocuments).toBe(50);
    expect(await a.compact()).toBe('compacted');
    expect(manifestOf(ledgerDir(a)).segments).toEqual([]);
    const stats = await a.stats();
    expect(stats.recentDocuments).toBe(0);
    expect(stats.documents).toBe(0);
    await a.close();
  });

  it('a journal removed by hand is an error at open, not a hang', async () => {
    const dir = tempDir();
    const a = await Ledger.open(dir, API);
    await a.close();
    (await import('node:fs')).rmSync(a.file);
    await expect(Ledger.open(dir, API)).rejects.toThrow(/names is missing/);
  });

  it('leaves a lock held by a live process alone', async () => {
    const dir = tempDir();
    const a = await Ledger.open(dir, API);
    await a.stored('p', 'd', 's');
    writeFileSync(path.join(ledgerDir(a), 'compact.lock'), JSON.stringify({ pid: process.pid, host: (await import('node:os')).hostname(), token: 'someone', at: Date.now() }));
    expect(await a.compact()).toBe('busy');
    expect(manifestOf(ledgerDir(a)).segments).toEqual([]);
    await a.close();
  });
});
