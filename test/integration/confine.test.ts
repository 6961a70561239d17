import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, inject, it } from 'vitest';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, PEOPLE, runJob } from '../helpers/job-runs.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const FACE = '5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e';

type Row = Record<string, string>;

function report(dir: string): Row[] {
  return parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Row[];
}

/** allowed/ (files an upload may read), exports/ (where downloads may write), outside/ (neither). */
function folders(): { dir: string; allowed: string; exports: string; outside: string } {
  const dir = realpathSync(tempDir());
  const allowed = path.join(dir, 'allowed');
  const exports = path.join(dir, 'exports');
  const outside = path.join(dir, 'outside');
  for (const d of [allowed, exports, outside]) mkdirSync(d);
  return { dir, allowed, exports, outside };
}

function sha256(file: string): string {
  return createHash('sha256').update(readFileSync(file)).digest('hex');
}

/** An import manifest: three files in allowed/, one in outside/, one link in allowed/ that leads to outside/. */
function importManifest(dir: string, allowed: string, outside: string): { manifest: string; secret: string } {
  for (let i = 0; i < 3; i++) writeFileSync(path.join(allowed, `doc-${i}.txt`), `document ${i} ${dir}`);
  const secret = path.join(outside, 'secret.txt');
  writeFileSync(secret, `not for upload ${dir}`);
  symlinkSync(secret, path.join(allowed, 'looks-inside.txt'));
  const lines = [
    'personId,file,name',
    `${PEOPLE[0]},allowed/doc-0.txt,Doc 0`,
    `${PEOPLE[1]},outside/secret.txt,Secret`,
    `${PEOPLE[2]},allowed/doc-1.txt,Doc 1`,
    `${PEOPLE[3]},allowed/looks-inside.txt,Through a link`,
    `${PEOPLE[0]},allowed/doc-2.txt,Doc 2`,
  ];
  const manifest = path.join(dir, 'import.csv');
  writeFileSync(manifest, `${lines.join('\n')}\n`);
  return { manifest, secret };
}

describe('workers confined by --allow-read and --allow-write', () => {
  it('a confined `idsync worker` uploads only files inside --allow-read and downloads only into --allow-write', async () => {
    const s = await withSandbox();
    const { dir, allowed, exports, outside } = folders();
    const { manifest, secret } = importManifest(dir, allowed, outside);
    const env = {
      PATH: process.env.PATH ?? '',
      REDIS_URL: inject('redisUrl'),
      IDSYNC_API_URL: s.url,
      IDSYNC_USERNAME: 'migrator',
      IDSYNC_PASSWORD: s.password,
      IDSYNC_STATE_DIR: path.join(dir, 'worker-state'),
      IDSYNC_REDIS_PREFIX: keyPrefixFor(dir),
      IDSYNC_LOG_FORMAT: 'json',
    };
    const worker = spawn(process.execPath, [IDSYNC_BIN, 'worker', '--allow-read', allowed, '--allow-write', exports, '--concurrency', '4'], { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    worker.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    const common = { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), flags: { workers: 0 } };
    try {
      // Queued by another process, unconfined itself: only the worker's own settings stand in the way.
      const imported = await runJob({ command: 'import', manifest, reportDir: path.join(dir, 'r-import'), ...common });
      expect(imported.exitCode).toBe(1);
      const rows = report(path.join(dir, 'r-import'));
      expect(rows.map((r) => r.status)).toEqual(['succeeded', 'failed', 'succeeded', 'failed', 'succeeded']);
      for (const r of [rows[1]!, rows[3]!]) {
        expect(r).toMatchObject({ errorCode: 'E_NOT_ALLOWED', retryable: 'false', attempts: '1' });
        expect(r.error).toContain(`lies outside --allow-read (${allowed})`);
      }
      expect(rows[3]!.error).toContain(`(really ${secret})`);
      // The sandbox never saw the secret's bytes.
      const stored = s.documents();
      expect(stored).toHaveLength(3);
      expect(s.stats().uploadRequests).toBe(3);
      expect(stored.map((d) => d.sha256)).not.toContain(sha256(secret));
      expect(stored.map((d) => d.name).sort()).toEqual(['Doc 0', 'Doc 1', 'Doc 2']);

      const exportManifest = path.join(dir, 'export.csv');
      writeFileSync(exportManifest, `type,faceId,detectionId,personId,documentId,output\nenrollmentPhoto,${FACE},,,,\ndocument,,,${rows[0]!.personId},${rows[0]!.documentId},deep/er/doc.txt\n`);
      // --out outside --allow-write: every row refused by the worker, nothing made under --out.
      const refusedOut = path.join(outside, 'out');
      const refused = await runJob({ command: 'export', manifest: exportManifest, outDir: refusedOut, reportDir: path.join(dir, 'r-refused'), ...common });
      expect(refused.exitCode).toBe(1);
      const refusedRows = report(path.join(dir, 'r-refused'));
      expect(refusedRows.map((r) => [r.status, r.errorCode, r.attempts])).toEqual([
        ['failed', 'E_NOT_ALLOWED', '1'],
        ['failed', 'E_NOT_ALLOWED', '1'],
      ]);
      expect(refusedRows[0]!.error).toContain(`lies outside --allow-write (${exports})`);
      expect(readdirSync(refusedOut)).toEqual([]);
      // The same export into --allow-write works.
      const done = await runJob({ command: 'export', manifest: exportManifest, outDir: path.join(exports, 'out'), reportDir: path.join(dir, 'r-done'), ...common });
      expect(done.exitCode).toBe(0);
      expect(readFileSync(path.join(exports, 'out', 'deep/er/doc.txt'), 'utf8')).toBe(`document 0 ${dir}`);
      expect(stderr).toContain('worker confined');
      expect(stderr).not.toContain('this worker is not confined');
    } finally {
      worker.kill('SIGTERM');
    }
    expect(await exited).toBe(130);
  }, 60_000);

  it('import --allow-read rejects the rows outside at validation and uploads the others', async () => {
    const s = await withSandbox();
    const { dir, allowed, outside } = folders();
    const { manifest, secret } = importManifest(dir, allowed, outside);
    const r = await runJob({ command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'rep'), flags: { allowRead: allowed } });
    expect(r.exitCode).toBe(1);
    const rows = report(path.join(dir, 'rep'));
    expect(rows.map((x) => [x.status, x.action, x.errorCode])).toEqual([
      ['succeeded', 'uploaded', ''],
      ['rejected', 'validate', 'E_NOT_ALLOWED'],
      ['succeeded', 'uploaded', ''],
      ['rejected', 'validate', 'E_NOT_ALLOWED'],
      ['succeeded', 'uploaded', ''],
    ]);
    expect(rows[1]!.error).toContain(`lies outside --allow-read (${allowed})`);
    expect(s.documents()).toHaveLength(3);
    expect(s.documents().map((d) => d.sha256)).not.toContain(sha256(secret));
  }, 30_000);

  it('export with an --out outside --allow-write exits 2 before anything is sent or made', async () => {
    const s = await withSandbox();
    const { dir, exports, outside } = folders();
    const manifest = path.join(dir, 'export.csv');
    writeFileSync(manifest, `type,faceId,detectionId,personId,documentId,output\nenrollmentPhoto,${FACE},,,,\n`);
    const out = path.join(outside, 'new', 'out');
    const r = await runCli(['export', manifest, '--out', out, '--allow-write', exports], {
      env: { REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_REDIS_PREFIX: keyPrefixFor(dir) },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--out ${out} lies outside --allow-write (${exports})`);
    expect(existsSync(path.join(outside, 'new'))).toBe(false);
    expect(s.stats().requests).toBe(0);
  }, 30_000);

  it('archive with an --out outside --allow-write exits 2 before anything is sent or made', async () => {
    const s = await withSandbox();
    const { dir, exports, outside } = folders();
    const faces = path.join(dir, 'faces.csv');
    writeFileSync(faces, `faceId\n${FACE}\n`);
    const out = path.join(outside, 'archive');
    const r = await runCli(['archive', '--faces', faces, '--out', out, '--allow-write', exports], {
      env: { REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_REDIS_PREFIX: keyPrefixFor(dir) },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`--out ${out} lies outside --allow-write (${exports})`);
    expect(existsSync(out)).toBe(false);
    expect(s.stats().requests).toBe(0);
  }, 30_000);

  it('watch of a folder outside --allow-read exits 2', async () => {
    const { dir, allowed, outside } = folders();
    const r = await runCli(['watch', outside, '--allow-read', allowed], {
      env: { REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: 'http://127.0.0.1:1', IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: 'x', IDSYNC_STATE_DIR: path.join(dir, 'st') },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the watch folder ${outside} lies outside --allow-read (${allowed})`);
  }, 30_000);

  it('a worker started without either setting warns once that it is not confined, naming both', async () => {
    const { dir } = folders();
    // Said before the login: an API nobody answers is enough to see it.
    const worker = spawn(process.execPath, [IDSYNC_BIN, 'worker'], {
      cwd: REPO_ROOT,
      env: { PATH: process.env.PATH ?? '', REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: 'http://127.0.0.1:1', IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: 'x', IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    worker.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => worker.on('exit', (code) => resolve(code)));
    const end = Date.now() + 15_000;
    while (!stderr.includes('not confined') && Date.now() < end && worker.exitCode === null) await new Promise((r) => setTimeout(r, 20));
    worker.kill('SIGTERM');
    await exited;
    const warnings = stderr.split('\n').filter((l) => l.includes('not confined'));
    expect(warnings).toHaveLength(1);
    const line = JSON.parse(warnings[0]!) as { level: number | string; msg: string };
    expect(String(line.level)).toMatch(/^(40|warn)$/);
    expect(line.msg).toContain('--allow-read');
    expect(line.msg).toContain('--allow-write');
  }, 30_000);
});
