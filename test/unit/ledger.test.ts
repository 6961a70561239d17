import { appendFileSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { GROUP_COMMIT_MS, Ledger } from '../../src/store/ledger/ledger.ts';
import { tempDir } from '../helpers/fixtures.ts';

const API = 'https://acme.example/identities';

// Every behaviour holds both ways: synchronous file calls (local filesystems) and the thread pool (shares).
for (const syncIo of [true, false]) {
  const openLedger = (dir: string, api: string, options: Parameters<typeof Ledger.open>[2] = {}) => Ledger.open(dir, api, { ...options, syncIo });

  describe(`with ${syncIo ? 'synchronous' : 'thread-pool'} file calls`, () => {
    describe('Ledger', () => {
      it('remembers started and stored documents across reopen', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API, { now: () => 1 });
        await a.start('p1', 'd1', 'sha1');
        await a.stored('p1', 'd1', 'sha1', 10);
        await a.start('p2', 'd2', 'sha2');
        await a.start('p3', 'd3', 'sha3');
        await a.abort('p3', 'd3');
        await a.close();
        const b = await openLedger(dir, API);
        expect(await b.state('p1', 'd1')).toBe('stored');
        expect(await b.state('p2', 'd2')).toBe('started');
        expect(await b.state('p3', 'd3')).toBeUndefined();
        await b.close();
      });

      it('keeps one file per API', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API);
        await a.stored('p', 'd', 's');
        const other = await openLedger(dir, 'https://other.example');
        expect(await other.state('p', 'd')).toBeUndefined();
        await a.close();
        await other.close();
      });

      it('sees what another process on the machine appended, and skips a torn last line', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API);
        const b = await openLedger(dir, API);
        await a.stored('p', 'd', 's');
        expect(await b.state('p', 'd')).toBe('stored');
        appendFileSync(a.file, '{"op":"stored","personId":"x","publi');
        expect(await b.state('x', 'y')).toBeUndefined();
        await a.close();
        await b.close();
      });

      it('group-commits concurrent appends and loses none', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API);
        await Promise.all(Array.from({ length: 200 }, (_, i) => a.stored(`p${i}`, `d${i}`, `s${i}`)));
        await a.close();
        const lines = readFileSync(a.file, 'utf8').trim().split('\n');
        expect(lines).toHaveLength(201);
        const b = await openLedger(dir, API);
        expect((await b.stats()).documents).toBe(200);
        await b.close();
      });
      it('a start resolves only after an fsync begun once it was written; stored and abort lines cause none', async () => {
        const dir = tempDir();
        const events: string[] = [];
        let release: () => void = () => {};
        let hold = false;
        let file = '';
        const a = await openLedger(dir, API, {
          datasync: async (h) => {
            // Lines in the file when the fsync begins (the header's own fsync comes before `file` is known).
            if (file) events.push(`sync@${readFileSync(file, 'utf8').trim().split('\n').length}`);
            if (hold) await new Promise<void>((r) => (release = r));
            await h.datasync();
          },
        });
        file = a.file;
        await a.stored('p0', 'd0', 's0', 5);
        await a.abort('p0', 'd0');
        expect(events).toEqual([]);
        hold = true;
        let started = false;
        const start = a.start('p1', 'd1', 's1').then(() => (started = true));
        await new Promise((r) => setTimeout(r, 30));
        expect(events).toEqual(['sync@4']);
        expect(started).toBe(false);
        hold = false;
        release();
        await start;
        await a.close();
        // close() makes what is written durable, whatever waited for an fsync or not.
        expect(events).toEqual(['sync@4', 'sync@4']);
      });

      it(`starts fsyncs at most every ${GROUP_COMMIT_MS} ms however many starts come, and every start gets one`, async () => {
        const dir = tempDir();
        const syncs: number[] = [];
        const a = await openLedger(dir, API, {
          datasync: async (h) => {
            syncs.push(performance.now());
            await h.datasync();
          },
        });
        syncs.length = 0;
        const t0 = performance.now();
        let n = 0;
        // 16 writers, each starting documents one after another for ~120 ms.
        await Promise.all(
          Array.from({ length: 16 }, async (_, w) => {
            while (performance.now() - t0 < 120) await a.start(`p${w}`, `d${n++}`, 's');
          }),
        );
        const whileRunning = syncs.length;
        await a.close();
        expect(syncs).toHaveLength(whileRunning + 1); // close's own
        syncs.length = whileRunning;
        const gaps = syncs.slice(1).map((t, i) => t - syncs[i]!);
        // Timers may fire a little early by the clock (rounding): allow 1 ms.
        expect(Math.min(...gaps)).toBeGreaterThanOrEqual(GROUP_COMMIT_MS - 1);
        expect(n).toBeGreaterThan(syncs.length);
        const b = await openLedger(dir, API);
        expect((await b.stats()).documents).toBe(n);
        await b.close();
      });
    });

    describe('Ledger attempts (several processes on one file)', () => {
      it("a start another process appended before ours replaces ours once read, whatever the order in the file", async () => {
        const dir = tempDir();
        const ours = await openLedger(dir, API);
        const theirs = await openLedger(dir, API);
        expect(await ours.lookup('p', 'd')).toBeUndefined();
        await theirs.start('p', 'd', 'sha', 'their-attempt'); // in the file first
        await ours.start('p', 'd', 'sha', 'our-attempt'); // then ours
        expect(await ours.lookup('p', 'd')).toMatchObject({ state: 'started', attempt: 'their-attempt' });
        await Promise.all([ours.close(), theirs.close()]);
      });

      it('an abort takes back only the start of its own attempt', async () => {
        const dir = tempDir();
        const ours = await openLedger(dir, API);
        const theirs = await openLedger(dir, API);
        await ours.start('p', 'd', 'sha', 'our-attempt');
        await theirs.start('p', 'd', 'sha', 'their-attempt');
        await ours.abort('p', 'd', 'our-attempt');
        expect(await ours.state('p', 'd')).toBe('started');
        const third = await openLedger(dir, API); // replaying the file gives the same answer
        expect(await third.lookup('p', 'd')).toMatchObject({ state: 'started', attempt: 'their-attempt' });
        await ours.abort('p', 'd', 'their-attempt');
        expect(await ours.state('p', 'd')).toBeUndefined();
        await Promise.all([ours.close(), theirs.close(), third.close()]);
      });

      it('startIfUnknown: of two jobs asking at once, one writes the start; a known document gets none', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API);
        const [x, y] = await Promise.all([a.startIfUnknown('p', 'd', 'sha', 'x'), a.startIfUnknown('p', 'd', 'sha', 'y')]);
        expect([x !== undefined, y !== undefined].sort()).toEqual([false, true]);
        await (x ?? y)!.durable;
        await a.stored('p', 'e', 'sha', 1);
        expect(await a.startIfUnknown('p', 'e', 'sha', 'z')).toBeUndefined();
        await a.close();
      });
    });

    describe('Ledger under concurrent lookups', () => {
      it('reads each appended line exactly once however many lookups run at once', async () => {
        const dir = tempDir();
        const writer = await openLedger(dir, API);
        const reader = await openLedger(dir, API);
        let damaged = 0;
        const log = { warn: () => damaged++ } as never;
        const watcher = await openLedger(dir, API, { log });
        for (let round = 0; round < 20; round++) {
          await Promise.all(Array.from({ length: 10 }, (_, i) => writer.stored(`p${round}`, `d${i}`, 's')));
          const states = await Promise.all(Array.from({ length: 10 }, (_, i) => watcher.state(`p${round}`, `d${i}`)));
          expect(states.every((s) => s === 'stored')).toBe(true);
        }
        expect(damaged).toBe(0);
        await Promise.all([writer.close(), reader.close(), watcher.close()]);
      });
    });

    describe('Ledger after a torn write', () => {
      it('ends a torn last line at open, so the next entries stay readable', async () => {
        const dir = tempDir();
        const a = await openLedger(dir, API);
        await a.stored('p1', 'd1', 's1');
        await a.close();
        appendFileSync(a.file, '{"op":"start","personId":"p2","publ');
        const b = await openLedger(dir, API);
        await b.start('p3', 'd3', 's3');
        await b.close();
        const c = await openLedger(dir, API);
        expect(await c.state('p1', 'd1')).toBe('stored');
        expect(await c.state('p3', 'd3')).toBe('started');
        await c.close();
      });
    });

    it('reads back nothing it wrote itself, yet sees a line another process appended between its own', async () => {
      const dir = tempDir();
      const a = await openLedger(dir, API);
      const b = await openLedger(dir, API);
      await a.stored('p1', 'd1', 's1');
      await b.start('p2', 'd2', 's2');
      await a.stored('p3', 'd3', 's3');
      expect(await a.state('p2', 'd2')).toBe('started');
      expect(await b.state('p1', 'd1')).toBe('stored');
      expect(await b.state('p3', 'd3')).toBe('stored');
      await Promise.all([a.close(), b.close()]);
    });
  });
}
