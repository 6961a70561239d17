import { copyFileSync, cpSync, mkdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { logCapture } from '../helpers/log-lines.ts';
import { freshKeyPrefix, keyPrefixFor, runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

/**
 * "Even a rerun whose Redis state is gone sends nothing twice." Two machines (state dirs A and B)
 * share one Redis. A uploads the manifest; B runs it and skips every row on Redis's word (B's
 * ledger never saw those uploads). The Redis state is then lost and B runs the manifest again:
 * B's ledger is not empty, so the "no record anywhere" warning does not apply, but B remembers
 * working with another Redis state, so it looks each document up before sending it.
 */
describe('a rerun after the Redis state is lost, from a machine that skipped the rows on Redis word', () => {
  it('sends nothing twice', async () => {
    const s = await withSandbox();
    const dir = tempDir('redis-state-lost');
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
    const lost = freshKeyPrefix();
    const logs = logCapture();
    const again = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r4'), keyPrefix: lost, log: createLogger({ level: 'warn', format: 'json', destination: logs.stream }) });

    expect(s.documents().filter((d) => d.uploads > 1)).toEqual([]);
    expect(again.summary.counts).toMatchObject({ succeeded: 0, skipped: 6 });
    // B's ledger learnt those documents when Redis said they were stored: no question to the API.
    expect(readFileSync(path.join(dir, 'r4', 'report.csv'), 'utf8').match(/,exists-on-server,/g)).toHaveLength(6);
    expect(logs.text()).toContain('holds none of the state this state dir worked with for this API before');
    expect(again.summary.counts.skipped).toBe(6);

    // That run had every row done: its Redis state is now the one B knows, and a rerun trusts it.
    const quiet = logCapture();
    const trusted = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r5'), keyPrefix: lost, log: createLogger({ level: 'warn', format: 'json', destination: quiet.stream }) });
    expect(trusted.summary.counts.skipped).toBe(6);
    expect(quiet.text()).not.toContain('holds none of the state');
  });

  it('documents another machine stored are learnt by this ledger when Redis says so', async () => {
    const s = await withSandbox();
    const dir = tempDir('redis-state-lost-learnt');
    const manifest = writeImportManifest(dir, 4);
    // The same rows under another folder: another run (another manifest path), the same documents.
    const copy = path.join(dir, 'copy');
    mkdirSync(copy);
    cpSync(path.join(dir, 'files'), path.join(copy, 'files'), { recursive: true });
    copyFileSync(manifest, path.join(copy, 'import.csv'));
    const base = { apiUrl: s.url, username: 'migrator', password: s.password };
    const shared = keyPrefixFor(dir);

    const a = await runJob({ ...base, command: 'import', manifest, stateDir: path.join(dir, 'state-A'), reportDir: path.join(dir, 'r1'), keyPrefix: shared });
    expect(a.summary.counts.succeeded).toBe(4);
    const b = await runJob({ ...base, command: 'import', manifest: path.join(copy, 'import.csv'), stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r2'), keyPrefix: shared });
    expect(readFileSync(path.join(dir, 'r2', 'report.csv'), 'utf8').match(/,already-stored,/g)).toHaveLength(4);
    expect(b.exitCode).toBe(0);

    s.resetStats();
    const again = await runJob({ ...base, command: 'import', manifest: path.join(copy, 'import.csv'), stateDir: path.join(dir, 'state-B'), reportDir: path.join(dir, 'r3'), keyPrefix: freshKeyPrefix() });
    expect(again.summary.counts.skipped).toBe(4);
    expect(readFileSync(path.join(dir, 'r3', 'report.csv'), 'utf8').match(/,in-ledger,/g)).toHaveLength(4);
    expect(s.stats().uploadRequests).toBe(0);
  });
});
