import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { openRedis } from '../../src/store/redis/connection.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, sandboxRunArgs, writeImportManifest } from '../helpers/job-runs.ts';
import { startTestCluster, startTestRedis, startTestSentinels } from '../helpers/redis-server.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops) await stop().catch(() => undefined);
});

async function importAll(redisUrl: string, count: number, extra: { redisCaFile?: string; keyPrefix?: string } = {}) {
  const s = await withSandbox({ duplicatePolicy: 'store' });
  const dir = tempDir();
  const manifest = writeImportManifest(dir, count);
  const r = await runJob({
    command: 'import',
    manifest,
    ...sandboxRunArgs(s, dir),
    redisUrl,
    ...(extra.keyPrefix ? { keyPrefix: extra.keyPrefix } : {}),
    ...(extra.redisCaFile ? { flags: { redisCaFile: extra.redisCaFile } } : {}),
  });
  return { r, s };
}

describe('Redis deployments', () => {
  it('a Redis Cluster: REDIS_URL at any node works, and every key of the API sits in one slot', async () => {
    const cluster = await startTestCluster(tempDir('cluster'), 3);
    stops.push(() => cluster.stop());
    const { r, s } = await importAll(cluster.url(1), 30);
    expect(r.exitCode).toBe(0);
    expect(r.summary.counts.succeeded).toBe(30);
    expect(s.documents().every((d) => d.uploads === 1)).toBe(true);
    const handle = await openRedis({ redisUrl: cluster.url(2), stateDir: tempDir(), log: silentLogger() });
    expect(handle.cluster).toBe(true);
    await handle.close();
  }, 60_000);

  it('Sentinel: redis+sentinel://…/MASTER, and a failover during an import loses nothing and sends nothing twice', async () => {
    const d = await startTestSentinels(tempDir('sentinel'));
    stops.push(() => d.stop());
    const s = await withSandbox({ duplicatePolicy: 'store', faults: { latencyMs: 20 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 150);
    const before = await d.masterPort();
    const running = runJob({ command: 'import', manifest, ...sandboxRunArgs(s, dir), redisUrl: d.url, flags: { concurrency: 4 } });
    // Once uploads are going, the sentinels move the master to the replica.
    for (let i = 0; i < 200 && s.documents().length < 20; i++) await new Promise((r) => setTimeout(r, 25));
    const sentinel = new Redis({ host: '127.0.0.1', port: d.sentinelPorts[0]! });
    await sentinel.call('SENTINEL', 'FAILOVER', 'mymaster');
    sentinel.disconnect();
    const r = await running;
    expect(await d.masterPort()).not.toBe(before);
    expect(r.exitCode).toBe(0);
    expect(r.summary.counts.succeeded + r.summary.counts.skipped).toBe(150);
    const docs = s.documents();
    expect(docs).toHaveLength(150);
    expect(docs.filter((x) => x.uploads !== 1)).toEqual([]);
  }, 90_000);

  it('TLS with a private CA: trusted with --redis-ca-file, refused without, with the fix named', async () => {
    const dir = tempDir('tls');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '30', '-subj', '/CN=idsync test redis', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', path.join(dir, 'key.pem'), '-out', path.join(dir, 'cert.pem')], { stdio: 'ignore' });
    const { freePort } = await import('../../src/store/redis/free-port.ts');
    const tlsPort = await freePort();
    const tls = await startTlsRedis(path.join(dir, 'srv-tls'), tlsPort, dir);
    stops.push(() => tls.stop());
    const url = `rediss://:${tls.password}@127.0.0.1:${tlsPort}`;
    const refused = await openRedis({ redisUrl: url, stateDir: tempDir(), log: silentLogger(), connectTimeoutMs: 2000 }).catch((e: unknown) => e);
    expect(String((refused as Error).message)).toMatch(/TLS certificate of Redis at rediss:\/\/:\*\*\*@127\.0\.0\.1:\d+ is not trusted .*--redis-ca-file/);
    const { r } = await importAll(url, 5, { redisCaFile: path.join(dir, 'cert.pem') });
    expect(r.exitCode).toBe(0);
    expect(r.summary.counts.succeeded).toBe(5);
  }, 60_000);

  it('a refused password and a missing ACL permission are one-line reasons', async () => {
    const redis = await startTestRedis(tempDir('acl'));
    stops.push(() => redis.stop());
    const wrong = await openRedis({ redisUrl: `redis://:not-it@127.0.0.1:${redis.port}`, stateDir: tempDir(), log: silentLogger() }).catch((e: unknown) => e);
    expect(String((wrong as Error).message)).toMatch(/refused the credentials .*check the user and password in REDIS_URL/);
    expect(String((wrong as Error).message)).not.toContain('not-it');
    // An ACL user with everything idsync needs: its keys and channels, its commands.
    const admin = new Redis(redis.url);
    // The ACL of README "Redis": the keys under its prefix, all channels, no dangerous commands.
    await admin.call('ACL', 'SETUSER', 'idsync', 'on', '>pw-idsync', '~acltest:*', '&*', '+@all', '-@dangerous', '+info', '+config|get', '+cluster|info');
    await admin.call('ACL', 'SETUSER', 'otherkeys', 'on', '>pw-other', '~elsewhere:*', '&*', '+@all', '-@dangerous', '+info');
    admin.disconnect();
    const { r } = await importAll(`redis://idsync:pw-idsync@127.0.0.1:${redis.port}`, 5, { keyPrefix: 'acltest' });
    expect(r.exitCode).toBe(0);
    const err = await importAll(`redis://otherkeys:pw-other@127.0.0.1:${redis.port}`, 2, { keyPrefix: 'acltest' }).catch((e: unknown) => e);
    expect(String((err as Error).message)).toMatch(/lacks a permission idsync needs: NOPERM/);
  }, 60_000);
});

/** A redis-server that speaks only TLS (Debian's is built with it), with the test's own certificate. */
async function startTlsRedis(dir: string, port: number, certDir: string) {
  return startTestRedis(dir, {
    port,
    conf: ['port 0', `tls-port ${port}`, `tls-cert-file ${path.join(certDir, 'cert.pem')}`, `tls-key-file ${path.join(certDir, 'key.pem')}`, `tls-ca-cert-file ${path.join(certDir, 'cert.pem')}`, 'tls-auth-clients no'],
    tls: { ca: path.join(certDir, 'cert.pem') },
  });
}


describe('a Redis out of memory', () => {
  it('stops the run with exit 2 naming the cause, writes the report for what is known, and loses nothing', async () => {
    const redis = await startTestRedis(tempDir('oom'), { conf: ['maxmemory 3mb'] });
    stops.push(() => redis.stop());
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 6000, { size: 16 });
    const r = await runJob({ command: 'import', manifest, ...sandboxRunArgs(s, dir), redisUrl: redis.url, flags: { workers: 0 } });
    expect(r.exitCode).toBe(2);
    expect(r.lines.join('\n')).toMatch(/stopped: .*OOM command not allowed.*run the same command again/);
    // Every row is in the report, each with a status and a reason.
    expect(r.summary.rows).toBe(6000);
    const report = readFileSync(path.join(dir, 'report', 'report.csv'), 'utf8').trim().split('\n');
    expect(report).toHaveLength(6001);
    expect(report.slice(1).every((line) => /,(failed|succeeded|skipped|rejected|interrupted),/.test(line))).toBe(true);
    expect(s.stats().uploads ?? 0).toBe(0);
  }, 60_000);
});
