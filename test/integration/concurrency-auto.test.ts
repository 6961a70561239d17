import path from 'node:path';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.ts';
import { HttpStatusError } from '../../src/errors.ts';
import { Secret } from '../../src/config/secret.ts';
import { createLogger } from '../../src/log.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { PEOPLE, runJob, sandboxRunArgs, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const CAPACITY = 4;

/** JSON log lines at debug level, kept in memory. */
function memoryLog() {
  const lines: Array<{ level: number; msg: string; concurrency?: number }> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk.toString('utf8').split('\n')) if (line) lines.push(JSON.parse(line));
      cb();
    },
  });
  return { log: createLogger({ level: 'debug', format: 'json', destination }), lines };
}

/** `items` GETs from `workers` loops at once; a 503 puts the item back. Returns the 503s seen. */
async function drive(client: ApiClient, items: number, workers: number): Promise<number> {
  let left = items;
  let refused = 0;
  await Promise.all(
    Array.from({ length: workers }, async () => {
      while (left > 0) {
        left--;
        try {
          await client.getPerson(PEOPLE[left % PEOPLE.length]!);
        } catch (err) {
          if (!(err instanceof HttpStatusError) || err.status !== 503) throw err;
          refused++;
          left++;
        }
      }
    }),
  );
  return refused;
}

describe('--concurrency auto against a sandbox with a capacity', () => {
  it('grows to a larger capacity, shrinks to a smaller one and then draws few over-capacity answers; a fixed concurrency above it draws many', async () => {
    const s = await withSandbox({ faults: { latencyMs: 10, capacity: 16 } });
    const { log, lines } = memoryLog();
    const auto = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(s.password), connections: 32, concurrencyMode: 'auto', log });
    await auto.login();
    // 24 callers at once: always more demand than the limit, as a worker running 3 jobs per request.
    await drive(auto, 400, 24);
    expect(auto.concurrencyLimit()).toBeGreaterThanOrEqual(13);
    expect(auto.concurrencyLimit()).toBeLessThanOrEqual(17);
    expect(s.stats().maxHandling).toBe(16);

    // The capacity falls to a quarter: a burst of 503s while the limit steps down, then few.
    s.setFaults({ latencyMs: 10, capacity: CAPACITY });
    s.resetStats();
    const stepDown = await drive(auto, 200, 24);
    expect(stepDown).toBeLessThan(4 * 16);
    expect(auto.concurrencyLimit()).toBeLessThanOrEqual(CAPACITY + 1);
    s.resetStats();
    const before = auto.stats().overloaded;
    const refused = await drive(auto, 600, 24);
    await auto.close();
    const stats = s.stats();
    expect(stats.overCapacity).toBe(refused);
    expect(auto.stats().overloaded - before).toBe(refused);
    expect(stats.overCapacity / stats.requests).toBeLessThan(0.02);
    expect(stats.maxHandling).toBe(CAPACITY);
    expect(auto.concurrencyLimit()).toBeGreaterThanOrEqual(CAPACITY - 1);
    expect(auto.concurrencyLimit()).toBeLessThanOrEqual(CAPACITY + 1);
    expect(auto.concurrencyStats()).toMatchObject({ inFlight: 0, waiting: 0 });

    // Every change is in the debug log; only the large ones at info, with the reason.
    const changes = lines.filter((l) => /^concurrency limit/.test(l.msg));
    const loud = changes.filter((l) => l.level >= 30);
    expect(loud.length).toBeLessThan(changes.length / 2);
    expect(loud.some((l) => /^concurrency limit now \d+: the API keeps up$/.test(l.msg))).toBe(true);
    expect(loud.some((l) => /^concurrency limit now \d+: the API refused requests for capacity$/.test(l.msg))).toBe(true);
    expect(changes.at(-1)!.concurrency).toBe(auto.concurrencyLimit());

    s.resetStats();
    const fixed = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(s.password), connections: 16 });
    await fixed.login();
    const fixedRefused = await drive(fixed, 200, 24);
    await fixed.close();
    expect(fixed.concurrencyLimit()).toBe(16);
    expect(fixed.concurrencyStats()).toBeUndefined();
    expect(fixedRefused / s.stats().requests).toBeGreaterThan(0.3);
  }, 60_000);

  it('an import with --concurrency auto stores every document once and draws few over-capacity answers', async () => {
    const s = await withSandbox({ faults: { latencyMs: 10, capacity: CAPACITY } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 150);
    const { log, lines } = memoryLog();
    const r = await runJob({ command: 'import', manifest, ...sandboxRunArgs(s, dir), flags: { concurrency: 'auto', concurrencyMax: 32, attempts: 10 }, log });
    expect(r.exitCode).toBe(0);
    expect(r.summary.counts).toMatchObject({ succeeded: 150, failed: 0 });
    const docs = s.documents();
    expect(docs).toHaveLength(150);
    expect(docs.every((d) => d.uploads === 1)).toBe(true);
    const stats = s.stats();
    expect(stats.maxHandling).toBe(CAPACITY);
    expect(stats.overCapacity / stats.requests).toBeLessThan(0.05);
    // Where the limit ended, by the log: the run's client is not exposed.
    const last = lines.filter((l) => /^concurrency limit/.test(l.msg)).at(-1)?.concurrency ?? 4;
    expect(last).toBeGreaterThanOrEqual(CAPACITY - 1);
    expect(last).toBeLessThanOrEqual(CAPACITY + 1);
  }, 60_000);
});
