import { appendFileSync, readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/state/ledger.ts';
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
        expect(b.size).toBe(200);
        await b.close();
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
