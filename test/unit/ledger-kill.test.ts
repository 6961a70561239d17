import { spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

const API = 'https://acme.example/identities';
const WRITER = path.join(REPO_ROOT, 'test/fixtures/ledger-writer.ts');

describe('Ledger and kill -9', () => {
  it('a process killed while it writes and compacts loses nothing it was told was written; another process writing beside it neither', async () => {
    const dir = tempDir();
    const ours = await Ledger.open(dir, API, { journalMaxBytes: 16 * 1024 });
    const acknowledged = new Map<string, 'started' | 'stored'>();
    let mine = 0;
    // Killed after more and more acknowledged steps, so the kill falls in different phases.
    for (const [round, steps] of [150, 500, 1000].entries()) {
      const child = spawn(process.execPath, ['--import', 'tsx', WRITER, dir, API, `child${round}`], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
      let buffered = '';
      let seen = 0;
      const enough = new Promise<void>((resolve) => {
        child.stdout.on('data', (chunk: Buffer) => {
          buffered += chunk.toString();
          const lines = buffered.split('\n');
          buffered = lines.pop()!;
          for (const line of lines) {
            const [state, i] = line.split(' ') as ['started' | 'stored', string];
            acknowledged.set(`child${round}/d${i}`, state);
            if (++seen === steps) resolve();
          }
        });
      });
      // Meanwhile this process writes to the same ledger.
      let stop = false;
      const writing = (async () => {
        while (!stop) {
          const i = mine++;
          await ours.start('parent', `d${i}`, 'a'.repeat(64), `parent-${i}`);
          await ours.stored('parent', `d${i}`, 'a'.repeat(64), 1);
          acknowledged.set(`parent/d${i}`, 'stored');
        }
      })();
      await enough;
      child.kill('SIGKILL');
      await once(child, 'exit');
      stop = true;
      await writing;
    }
    // The dead writers' lock (if they died holding it) is taken over; the work finishes.
    let outcome = await ours.compact();
    for (let tries = 0; outcome === 'busy' && tries < 50; tries++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      outcome = await ours.compact();
    }
    expect(outcome).toBe('compacted');
    await ours.close();
    const fresh = await Ledger.open(dir, API);
    for (const [key, state] of acknowledged) {
      const [personId, publicId] = key.split('/') as [string, string];
      const got = await fresh.state(personId, publicId);
      if (state === 'stored') expect(got, key).toBe('stored');
      else expect(['started', 'stored'], key).toContain(got);
    }
    const stats = await fresh.stats();
    expect(stats.documents).toBeGreaterThanOrEqual(acknowledged.size);
    expect(stats.segments).toBeGreaterThanOrEqual(1);
    await fresh.close();
  }, 120_000);
});
