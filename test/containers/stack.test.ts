import { spawn } from 'node:child_process';
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ComposeProject, dockerAnswers, jsonLines, must, REPO_ROOT, run } from './compose-project.ts';

// `npm run test:containers`: the Dockerfile, docker-compose.yml and the images built from Debian
// packages on a machine without a registry (docker/build-local-images.sh), driven as an operator
// would, through docker and docker-compose. Sequential: each step uses the stack the last one left.

const IDSYNC_IMAGE = process.env.IDSYNC_IMAGE ?? 'local/idsync:latest';
const IDSYNC_REDIS_IMAGE = process.env.IDSYNC_REDIS_IMAGE ?? 'local/idsync-redis:7';
const PERSON = randomUUID();
const PASSWORD = randomBytes(12).toString('hex');

interface Fixture {
  name: string;
  file: string;
  bytes: Buffer;
}

/** Files and a manifest in `dir/<set>/`, for the scans volume. */
function makeFixtures(dir: string, set: string, count: number, size: number): Fixture[] {
  mkdirSync(path.join(dir, set), { recursive: true });
  const rows = ['personId,file,name'];
  const files: Fixture[] = [];
  for (let i = 1; i <= count; i++) {
    const bytes = randomBytes(size);
    const file = `${set}/doc-${i}.bin`;
    writeFileSync(path.join(dir, file), bytes);
    rows.push(`${PERSON},${path.basename(file)},${set} document ${i}`);
    files.push({ name: `${set} document ${i}`, file, bytes });
  }
  writeFileSync(path.join(dir, set, 'manifest.csv'), `${rows.join('\n')}\n`);
  return files;
}

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

async function tarOf(dir: string, entry: string): Promise<Buffer> {
  const chunks: Buffer[] = [];
  await new Promise<void>((resolve, reject) => {
    const t = spawn('tar', ['-C', dir, '-c', entry], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.stdout.on('data', (d: Buffer) => chunks.push(d));
    t.on('error', reject);
    t.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`tar exited ${code}`))));
  });
  return Buffer.concat(chunks);
}

interface AdminDocument {
  personId: string;
  documentId: string;
  name: string;
  sha256: string;
  uploads: number;
}

const say = (line: string) => console.log(`[containers] ${line}`);

describe.sequential('idsync on Docker: image, compose stack, drain on docker stop, scaling', () => {
  let project: ComposeProject;
  let work: string;
  let admin: string;
  const timings: string[] = [];
  let importRunId = '';
  let first: Fixture[] = [];

  const faults = async (latencyMs: number) => {
    const res = await fetch(`${admin}/_admin/faults`, { method: 'PUT', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ latencyMs }) });
    expect(res.status).toBe(200);
  };
  const stats = async () => (await (await fetch(`${admin}/_admin/stats`)).json()) as { uploads: number; inFlight: number };
  const documents = async () => (await (await fetch(`${admin}/_admin/documents`)).json()) as AdminDocument[];
  const timed = async <T>(label: string, body: () => Promise<T>): Promise<T> => {
    const start = Date.now();
    try {
      return await body();
    } finally {
      timings.push(`${label}: ${((Date.now() - start) / 1000).toFixed(1)} s`);
      say(timings.at(-1)!);
    }
  };

  beforeAll(async () => {
    if (!(await dockerAnswers())) {
      throw new Error('no Docker engine answers (docker version failed): start dockerd, or let .ci/run start it; see README "Deployment"');
    }
    await timed('images (docker/build-local-images.sh)', async () => {
      const r = await run('bash', ['docker/build-local-images.sh'], { env: { ...process.env, IDSYNC_IMAGE, IDSYNC_REDIS_IMAGE }, timeoutMs: 25 * 60_000 });
      for (const line of r.stdout.split('\n').filter(Boolean)) say(line);
      if (r.code !== 0) throw new Error(`docker/build-local-images.sh exited ${r.code}\n${r.stderr.slice(-4000)}`);
    });
    project = new ComposeProject({
      IDSYNC_IMAGE,
      IDSYNC_REDIS_IMAGE,
      IDSYNC_API_URL: 'http://sandbox:6009',
      IDSYNC_USERNAME: 'migrator',
      IDSYNC_PASSWORD: PASSWORD,
      IDSYNC_LOG_LEVEL: 'info',
      IDSYNC_CONCURRENCY: '8',
    });
    work = mkdtempSync(path.join(os.tmpdir(), 'idsync-containers-'));
    say(`compose project ${project.name}`);
  }, 30 * 60_000);

  afterAll(async () => {
    if (project) {
      const left = await project.down();
      if (left.code !== 0) say(`docker-compose down exited ${left.code}: ${left.stderr.slice(-1000)}`);
    }
    if (work) rmSync(work, { recursive: true, force: true });
    say(`timings:\n  ${timings.join('\n  ')}`);
  }, 300_000);

  it('the image runs idsync as a non-root user under tini, from the bundle built into it, on a read-only file system', async () => {
    const version = (JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
    const r = await must(run('docker', ['run', '--rm', '--read-only', IDSYNC_IMAGE, '--version']), 'docker run --version');
    expect(r.stdout.trim()).toBe(version);
    expect((await must(run('docker', ['run', '--rm', '--entrypoint', 'id', IDSYNC_IMAGE, '-u']), 'id')).stdout.trim()).toBe('10001');
    // Run as root (who could write /app): a stale bundle would be rebuilt under a new name.
    const bundle = await must(
      run('docker', ['run', '--rm', '-u', 'root', '--entrypoint', 'sh', IDSYNC_IMAGE, '-c', 'cd /app && b=$(ls .idsync-build | grep ^cli-) && node bin/idsync.js --version >/dev/null && echo "$b $(ls .idsync-build | grep ^cli-)"']),
      'bundle check',
    );
    const [before, after] = bundle.stdout.trim().split(' ');
    expect(before).toMatch(/^cli-[0-9a-f]{16}$/);
    expect(after).toBe(before);
    const config = JSON.parse((await must(run('docker', ['image', 'inspect', '-f', '{{json .Config}}', IDSYNC_IMAGE]), 'image inspect')).stdout) as {
      User: string;
      StopSignal: string;
      Entrypoint: string[];
      Healthcheck: { Test: string[] };
    };
    expect(config.User).toBe('idsync:idsync');
    expect(config.StopSignal).toBe('SIGTERM');
    expect(config.Entrypoint.slice(0, 2)).toEqual(['/usr/bin/tini', '--']);
    expect(config.Healthcheck.Test).toEqual(['CMD', 'node', '/app/docker/healthcheck.mjs']);
  });

  it('the stack comes up: Redis with AOF and noeviction, the sandbox, two workers each with its own state dir', async () => {
    await timed('redis + sandbox up and healthy', async () => {
      await must(project.compose(['up', '-d', '--no-build', 'redis', 'sandbox'], { timeoutMs: 180_000 }), 'up redis sandbox');
      await project.waitHealthy('redis');
      await project.waitHealthy('sandbox');
    });
    admin = `http://${await project.port('sandbox', 6009)}`;
    const redisConfig = await must(project.compose(['exec', '-T', 'redis', 'redis-cli', 'config', 'get', '*']), 'redis config');
    const pairs = redisConfig.stdout.split('\n');
    const setting = (k: string) => pairs[pairs.indexOf(k) + 1];
    expect(setting('appendonly')).toBe('yes');
    expect(setting('maxmemory-policy')).toBe('noeviction');
    expect(setting('appendfsync')).toBe('everysec');

    await timed('two workers started', async () => {
      await must(project.compose(['up', '-d', '--no-build', '--scale', 'worker=2', 'worker'], { timeoutMs: 180_000 }), 'up worker=2');
      for (const n of [1, 2]) {
        const id = await project.container('worker', n);
        await project.waitFor(`worker_${n} started`, async () => (await project.logs(id)).includes('worker started: serving the running runs of this API'), 90_000);
      }
    });
    const stateDirs = await Promise.all([1, 2].map(async (n) => stateDirOf(await project.container('worker', n))));
    expect(stateDirs.sort()).toEqual(['/var/lib/idsync/worker-1', '/var/lib/idsync/worker-2']);

    // The healthcheck script in the image: a wrong password is unhealthy, and never printed.
    const wrong = `wrong-${randomBytes(6).toString('hex')}`;
    const bad = await project.compose(['run', '--rm', '-T', '-e', `IDSYNC_PASSWORD=${wrong}`, '--entrypoint', 'node', 'cli', '/app/docker/healthcheck.mjs']);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toContain('unhealthy: api: login at http://sandbox:6009 answered 401');
    expect(bad.stdout + bad.stderr).not.toContain(wrong);
    const good = await must(project.cli(['/app/docker/healthcheck.mjs'], { entrypoint: 'node' }), 'healthcheck');
    expect(good.stdout.trim()).toBe('healthy: redis redis://redis:6379 PONG, api login at http://sandbox:6009 200');
    expect(good.stdout).not.toContain(PASSWORD);
  });

  /** IDSYNC_STATE_DIR of the node process in a container (the entrypoint exports it before exec). */
  async function stateDirOf(container: string): Promise<string> {
    const script = 'for p in /proc/[0-9]*; do case "$(tr "\\0" " " < $p/cmdline 2>/dev/null)" in node*) tr "\\0" "\\n" < $p/environ | sed -n "s/^IDSYNC_STATE_DIR=//p";; esac; done';
    return (await must(run('docker', ['exec', container, 'sh', '-c', script]), 'state dir')).stdout.trim();
  }

  it('import --workers 0 in a one-off container; a worker stopped mid-run drains, hands its jobs back; every document stored once', async () => {
    first = makeFixtures(work, 'first', 150, 3000);
    await must(project.cli(['-x', '-C', '/scans'], { entrypoint: 'tar', input: await tarOf(work, 'first') }), 'tar into /scans');

    // 500 ms per request (~5 s for the whole run on two workers): the 20th upload is seen well
    // before the end, even polling every 500 ms on a slow machine.
    await faults(500);
    const importing = project.cli(['import', '/scans/first/manifest.csv', '--workers', '0'], { timeoutMs: 600_000 });
    const worker1 = await project.container('worker', 1);
    let stopMs = 0;
    await timed('import of 150 with worker_1 stopped mid-run', async () => {
      await project.waitFor('20 uploads', async () => (await stats()).uploads >= 20, 120_000);
      // Now every new request waits 40 s: longer than the 30 s drain, so worker_1 still has jobs in
      // flight when its drain ends and must hand them back.
      await faults(40_000);
      await project.waitFor('requests held by both workers', async () => (await stats()).inFlight >= 12, 20_000);
      const start = Date.now();
      // Plain `docker stop`: the container's stop timeout comes from stop_grace_period (45 s).
      await must(run('docker', ['stop', worker1], { timeoutMs: 120_000 }), 'docker stop worker_1');
      stopMs = Date.now() - start;
      await faults(0);
      const r = await importing;
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/import import-[0-9a-f]+: 150 rows: 150 succeeded, 0 skipped, 0 failed, 0 rejected/);
      importRunId = /idsync-reports\/(import-[0-9a-f]+)\/report\.csv/.exec(r.stderr + r.stdout)?.[1] ?? '';
    });
    say(`docker stop worker_1 took ${(stopMs / 1000).toFixed(1)} s`);

    // Drained, not killed: SIGTERM reached node (exit 130, not 137 after a SIGKILL) after the 30 s grace.
    expect(await project.inspect(worker1, '{{.State.ExitCode}}')).toBe('130');
    expect(stopMs).toBeGreaterThanOrEqual(29_000);
    expect(stopMs).toBeLessThan(45_000);
    const lines = jsonLines(await project.logs(worker1));
    const msgs = lines.map((l) => String(l.msg));
    expect(lines.find((l) => String(l.msg).startsWith('interrupted:'))?.signal).toBe('SIGTERM');
    expect(msgs).toContain('worker stopping: finishing in-flight jobs');
    expect(msgs).toContain('in-flight jobs did not finish in time: handing them back to the queue');
    const handedBack = lines.filter((l) => l.msg === 'job handed back to the queue');
    expect(handedBack.length).toBeGreaterThan(0);
    expect(handedBack.every((l) => l.runId === importRunId && l.reason === 'shutdown')).toBe(true);
    expect(msgs.at(-1)).toBe('worker stopped');
    say(`worker_1 handed back ${handedBack.length} jobs`);

    const docs = await documents();
    expect(docs).toHaveLength(150);
    expect(docs.filter((d) => d.uploads !== 1)).toEqual([]);
    const byName = new Map(docs.map((d) => [d.name, d]));
    for (const f of first) expect(byName.get(f.name)?.sha256, f.name).toBe(sha256(f.bytes));
    expect(docs.every((d) => d.personId === PERSON)).toBe(true);

    // The surviving worker is healthy by now (its first check runs 30 s after start).
    await project.waitHealthy('worker', 60_000);
  }, 900_000);

  it('export --workers 0 brings every document back byte for byte, into the output volume', async () => {
    expect(importRunId).not.toBe('');
    const reportTar = await project.cliBytes('tar', ['-C', `/output/idsync-reports/${importRunId}`, '-c', 'report.csv']);
    const reportDir = path.join(work, 'report');
    mkdirSync(reportDir);
    await must(run('tar', ['-x', '-C', reportDir], { input: reportTar }), 'tar out report');
    const rows = parse(readFileSync(path.join(reportDir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(rows).toHaveLength(150);
    expect(rows.every((r) => r.status === 'succeeded')).toBe(true);

    mkdirSync(path.join(work, 'export'));
    const manifest = ['type,personId,documentId,output', ...rows.map((r) => `document,${r.personId},${r.documentId},${path.basename(r.file!)}`)];
    writeFileSync(path.join(work, 'export', 'manifest.csv'), `${manifest.join('\n')}\n`);
    await must(project.cli(['-x', '-C', '/scans'], { entrypoint: 'tar', input: await tarOf(work, 'export') }), 'tar export manifest');

    await timed('export of 150', async () => {
      const r = await project.cli(['export', '/scans/export/manifest.csv', '--out', '/output/export', '--workers', '0'], { timeoutMs: 300_000 });
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/export export-[0-9a-f]+: 150 rows: 150 succeeded/);
    });
    const out = path.join(work, 'exported');
    mkdirSync(out);
    await must(run('tar', ['-x', '-C', out], { input: await project.cliBytes('tar', ['-C', '/output/export', '-c', '.']) }), 'tar out export');
    for (const f of first) expect(sha256(readFileSync(path.join(out, path.basename(f.file)))), f.file).toBe(sha256(f.bytes));
  }, 600_000);

  it('--scale worker=3: three workers, three state dirs, and all of them take a share of one import', async () => {
    await must(project.compose(['stop', 'worker'], { timeoutMs: 180_000 }), 'stop workers');
    const since = new Date().toISOString();
    await timed('three workers started', async () => {
      await must(project.compose(['up', '-d', '--no-build', '--scale', 'worker=3', 'worker'], { timeoutMs: 180_000 }), 'up worker=3');
      for (const n of [1, 2, 3]) {
        const id = await project.container('worker', n);
        await project.waitFor(`worker_${n} started`, async () => (await project.logs(id, since)).includes('worker started: serving the running runs of this API'), 90_000);
      }
    });
    const ids = await Promise.all([1, 2, 3].map((n) => project.container('worker', n)));
    expect((await Promise.all(ids.map(stateDirOf))).sort()).toEqual(['/var/lib/idsync/worker-1', '/var/lib/idsync/worker-2', '/var/lib/idsync/worker-3']);

    const second = makeFixtures(work, 'second', 120, 2000);
    await must(project.cli(['-x', '-C', '/scans'], { entrypoint: 'tar', input: await tarOf(work, 'second') }), 'tar second set');
    // Each request takes 100 ms, so no worker can take the whole run before the others start.
    await faults(100);
    await timed('import of 120 on three workers', async () => {
      const r = await project.cli(['import', '/scans/second/manifest.csv', '--workers', '0'], { timeoutMs: 300_000 });
      expect(r.code, r.stderr.slice(-3000)).toBe(0);
      expect(r.stdout + r.stderr).toMatch(/import import-[0-9a-f]+: 120 rows: 120 succeeded/);
    });
    await faults(0);
    await must(project.compose(['stop', 'worker'], { timeoutMs: 180_000 }), 'stop workers');
    const processed = await Promise.all(
      ids.map(async (id) => {
        const stopped = jsonLines(await project.logs(id, since)).filter((l) => l.msg === 'worker stopped');
        expect(stopped).toHaveLength(1);
        return Number(stopped[0]!.processed);
      }),
    );
    say(`jobs per worker: ${processed.join(', ')}`);
    for (const n of processed) expect(n).toBeGreaterThan(0);
    expect(processed.reduce((a, b) => a + b, 0)).toBeGreaterThanOrEqual(120);
    for (const id of ids) expect(await project.inspect(id, '{{.State.ExitCode}}')).toBe('130');

    const docs = await documents();
    expect(docs).toHaveLength(270);
    expect(docs.filter((d) => d.uploads !== 1)).toEqual([]);
    const byName = new Map(docs.map((d) => [d.name, d]));
    for (const f of second) expect(byName.get(f.name)?.sha256, f.name).toBe(sha256(f.bytes));
  }, 900_000);

  it('tears everything down, volumes included', async () => {
    expect(await project.volumes()).toHaveLength(5);
    await timed('down -v', async () => {
      await must(project.down(), 'docker-compose down -v');
    });
    expect(await project.volumes()).toEqual([]);
    const left = await run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${project.name}`]);
    expect(left.stdout.trim()).toBe('');
  }, 300_000);
});

