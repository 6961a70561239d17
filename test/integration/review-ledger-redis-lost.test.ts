import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

/**
 * Review: "idsync remembers what it stored in a durable ledger in the state dir and in the shared
 * Redis, so even a rerun whose Redis state is gone sends nothing twice" (cli.md, "Rerunning").
 *
 * Two machines (state dirs A and B) share one Redis. A uploads the manifest; B runs the same
 * manifest and reports every row `skipped, already-stored` (Redis told it). Then the Redis state is
 * lost and B runs the manifest again. B's ledger knows nothing of those documents (a skip on
 * Redis's word is not written to the ledger), yet B's ledger is not empty, so the "no record of
 * earlier uploads … --check-existing" warning is not given either: every document is uploaded a
 * second time, silently.
 */
describe('review: a rerun after the Redis state is lost, from a machine that skipped the rows on Redis word', () => {
  it('sends nothing twice', async () => {
    const s = await withSandbox();
    const dir = tempDir('review-redis-lost');
    const manifest = writeImportManifest(dir, 6);
    const other = writeImportManifest(path.join(dir, 'other'), 1); // B has uploaded something of its own before
    const base = { apiUrl: s.url, username: 'migrator', password: s.password };
    const shared = keyPrefixFor(dir);

    const a = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-A'), reportDir: path.join(dir, 'r1'), keyPrefix: shared });
    expect(a.summary.counts.succeeded).toBe(6);
    const bOwn = await runJob({ ...base, command: 'import', manifest: other, stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r2'), keyPrefix: shared });
    expect(bOwn.summary.counts.succeeded).toBe(1);
    const b = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r3'), keyPrefix: shared });
    expect(b.summary.counts.skipped).toBe(6);

    // The Redis state is gone (a new Redis, a flush, a failover without persistence): B reruns.
    const again = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r4'), keyPrefix: freshKeyPrefix() });

    expect(s.documents().filter((d) => d.uploads > 1)).toEqual([]);
    expect(again.summary.counts.succeeded).toBe(0);
  });
});
