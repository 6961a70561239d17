import { Writable } from 'node:stream';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ApiClient } from '../../src/api/client.ts';
import { Secret } from '../../src/config/secret.ts';
import { AuthRefusedError, TlsError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { ManualClock } from '../../src/pacing/clock.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, sandboxRunArgs, writeImportManifest } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const FACE = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';

function client(url: string, password: string, extra: Partial<ConstructorParameters<typeof ApiClient>[0]> = {}): ApiClient {
  return new ApiClient({ apiUrl: url, username: 'migrator', password: new Secret(password), connections: 8, ...extra });
}

describe('API client against the sandbox', () => {
  it('with 2-second tokens, a long series of calls fails none and renews rather than logs in', async () => {
    // One injected clock for server and client, moved 100 ms between calls: 6 s, three token
    // lifetimes, however slow the machine (a wall-clock loop drew a 401 under load when a call
    // outlived its token's last moments).
    const clock = new ManualClock(Date.now());
    const s = await withSandbox({ tokenTtlSeconds: 2, prefix: '/identities', now: () => clock.now() });
    const c = client(s.url, s.password, { clock });
    const dir = tempDir();
    let calls = 0;
    for (; calls < 60; calls++) {
      await c.downloadEnrollmentPhoto(FACE, path.join(dir, `p${calls % 4}.jpg`));
      clock.advance(100);
    }
    await c.close();
    const stats = s.stats();
    expect(calls).toBeGreaterThan(50);
    expect(stats.status['401'] ?? 0).toBe(0);
    expect(stats.logins).toBe(1);
    expect(stats.renewals).toBeGreaterThanOrEqual(2);
  }, 20_000);

  it('revocation costs one re-login for 100 parallel calls', async () => {
    const s = await withSandbox();
    const c = client(s.url, s.password);
    await c.login();
    s.revokeAll();
    const dir = tempDir();
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => c.downloadEnrollmentPhoto(FACE, path.join(dir, `r${i}.jpg`))));
    await c.close();
    expect(results.filter((r) => r.status === 'rejected')).toEqual([]);
    expect(s.stats().logins).toBe(2);
    expect(c.stats().refreshesOn401).toBe(1);
  });

  it('refused credentials are fatal and sent once', async () => {
    const s = await withSandbox();
    const c = client(s.url, 'wrong-password');
    await expect(c.login()).rejects.toBeInstanceOf(AuthRefusedError);
    await c.close();
    expect(s.stats().requests).toBe(1);
  });

  it('HTTPS sandbox: refused without a CA, accepted with --ca-file or --insecure (with a warning)', async () => {
    const s = await withSandbox({ tls: true });
    expect(s.url.startsWith('https://')).toBe(true);
    const plain = client(s.url, s.password);
    const err = await plain.login().catch((e: unknown) => e);
    await plain.close();
    expect(err).toBeInstanceOf(TlsError);
    expect((err as Error).message).toMatch(/certificate/i);
    expect((err as Error).message).toContain('--ca-file');

    const withCa = client(s.url, s.password, { caFile: s.caFile! });
    await withCa.login();
    await withCa.close();

    const dir = tempDir();
    const manifest = writeImportManifest(dir, 1);
    const env = { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_REPORT_DIR: path.join(dir, 'rep') };
    const refused = await runCli(['import', manifest, '--dry-run'], { env });
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/certificate/i);
    const insecure = await runCli(['import', manifest, '--dry-run', '--insecure'], { env });
    expect(insecure.code, insecure.stderr).toBe(0);
    expect(insecure.stderr).toMatch(/TLS certificate verification is OFF/);
    const ca = await runCli(['import', manifest, '--dry-run', '--ca-file', s.caFile!], { env });
    expect(ca.code, ca.stderr).toBe(0);
    expect(ca.stdout).toContain('dry run: 1 rows would be uploaded');
    expect(s.stats().uploadRequests).toBe(0);
  });

  it('debug logs of a whole run under token churn hold neither the password nor any token', async () => {
    const s = await withSandbox({ tokenTtlSeconds: 2, faults: { seed: 3, failRate: 0.1, revokeEverySeconds: 1, latencyMs: 80 } });
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk, _e, cb) {
        lines.push(String(chunk));
        cb();
      },
    });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 50);
    const r = await runJob({
      command: 'import',
      manifest,
      ...sandboxRunArgs(s, dir),
      flags: { attempts: 8, concurrency: 2 },
      log: createLogger({ level: 'trace', destination: sink }),
    });
    expect(r.summary.counts.succeeded).toBe(50);
    const text = lines.join('');
    expect(lines.length).toBeGreaterThan(30);
    expect(text).not.toContain(s.password);
    expect(text).not.toMatch(/eyJ[A-Za-z0-9_-]{5,}\.eyJ/);
    expect(s.stats().renewals + s.stats().logins).toBeGreaterThan(1);
  }, 60_000);
});
