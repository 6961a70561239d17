import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { IDSYNC_BIN, REPO_ROOT, tempDir } from '../../helpers/fixtures.ts';

const run = promisify(execFile);
const children: ChildProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) c.kill('SIGTERM');
});

/** Starts `idsync sandbox` as a user would and reads the URL it prints. */
async function startCli(args: string[], env: NodeJS.ProcessEnv = {}): Promise<string> {
  const child = spawn(process.execPath, [IDSYNC_BIN, 'sandbox', ...args], { cwd: REPO_ROOT, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', IDSYNC_LOG_FORMAT: 'json', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  let err = '';
  child.stderr!.on('data', (d) => (err += String(d)));
  return new Promise((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += String(d);
      const m = /^url: (\S+)$/m.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (code) => reject(new Error(`sandbox exited ${code}: ${err}`)));
  });
}

async function curl(args: string[]): Promise<{ code: string; body: string }> {
  const { stdout } = await run('curl', ['-s', '-w', '\n%{http_code}', ...args]);
  const i = stdout.lastIndexOf('\n');
  return { body: stdout.slice(0, i), code: stdout.slice(i + 1) };
}

const FACE = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const DETECTION = '7c9e6679-7425-40de-944b-e07fc1f90ae7';
const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const DOC = '16fd2706-8baf-433b-82eb-8c7fada847da';

describe.each([[''], ['/identities']])('the curl round trip of docs/api-contract.md (prefix %j)', (prefix) => {
  it('answers every call as documented', async () => {
    const api = await startCli(['--user', 'migrator:s3cret', ...(prefix ? ['--prefix', prefix] : [])]);
    expect(api.endsWith(prefix)).toBe(true);
    const dir = tempDir('curl');
    const auth = await curl(['-X', 'POST', `${api}/api/v1/authenticate`, '-H', 'Content-Type: application/json', '-d', '{"username":"migrator","password":"s3cret"}']);
    expect(auth.code).toBe('200');
    const token = (JSON.parse(auth.body) as { token: string; username: string }).token;
    const bearer = ['-H', `Authorization: Bearer ${token}`];

    for (const [url, file] of [
      [`${api}/api/v1/people/enrollmentPhoto/${FACE}`, 'enrollment.jpg'],
      [`${api}/api/v1/people/detectionPhoto/${FACE}/${DETECTION}`, 'detection.jpg'],
    ] as const) {
      const r = await curl([url, ...bearer, '-o', path.join(dir, file)]);
      expect(r.code).toBe('200');
      expect([...readFileSync(path.join(dir, file)).subarray(0, 2)]).toEqual([0xff, 0xd8]);
    }
    expect((await curl([`${api}/api/v1/people/enrollmentPhoto/00000000-0000-0000-0000-000000000001`, ...bearer])).code).toBe('404');

    const pdf = path.join(dir, 'id-card.pdf');
    writeFileSync(pdf, Buffer.concat([Buffer.from('%PDF-1.4\n'), Buffer.alloc(5000, 7)]));
    const up = await curl(['-X', 'POST', `${api}/api/v1/people/fileDocuments/upload`, ...bearer, '-F', `personId=${PERSON}`, '-F', 'name=ID Card', '-F', 'description=Front of ID', '-F', `publicId=${DOC}`, '-F', `file=@${pdf}`]);
    expect(up).toEqual({ code: '200', body: '' });
    const back = path.join(dir, 'back.pdf');
    expect((await curl([`${api}/api/v1/people/${PERSON}/fileDocuments/${DOC}/data`, ...bearer, '-o', back])).code).toBe('200');
    expect(readFileSync(back).equals(readFileSync(pdf))).toBe(true);
    expect((await curl([`${api}/api/v1/people/${PERSON}/fileDocuments/00000000-0000-0000-0000-00000000000d/data`, ...bearer])).code).toBe('404');

    expect((await curl(['-X', 'POST', `${api}/api/v1/people/fileDocuments/upload`, ...bearer, '-F', 'name=ID Card', '-F', `file=@${pdf}`])).code).toBe('400');
    expect((await curl(['-X', 'POST', `${api}/api/v1/people/fileDocuments/upload`, ...bearer, '-H', 'Content-Type: application/json', '-d', '{}'])).code).toBe('400');
    expect((await curl([`${api}/api/v1/people/enrollmentPhoto/${FACE}`])).code).toBe('401');
    const [h, p] = token.split('.');
    expect((await curl([`${api}/api/v1/people/enrollmentPhoto/${FACE}`, '-H', `Authorization: Bearer ${h}.${p}.forged${'x'.repeat(20)}`])).code).toBe('401');

    const renewed = await curl([`${api}/api/v1/renewToken`, ...bearer]);
    expect(renewed.code).toBe('200');
    const fresh = (JSON.parse(renewed.body) as { token: string }).token;
    expect(fresh).not.toBe(token);
    const list = await curl([`${api}/api/v1/people/detections/personId/${PERSON}`, '-H', `Authorization: Bearer ${fresh}`]);
    expect(list.code).toBe('200');
    expect(Array.isArray(JSON.parse(list.body))).toBe(true);
  });
});

describe('idsync sandbox users from IDSYNC_SANDBOX_USERS', () => {
  it('logs them in, with their permissions, and no password is on the command line', async () => {
    const api = await startCli(['--port', '0'], { IDSYNC_SANDBOX_USERS: 'migrator:env-s3cret reader:pw2:read-files' });
    const child = children.at(-1)!;
    expect(readFileSync(`/proc/${child.pid}/cmdline`, 'utf8')).not.toContain('s3cret');
    const login = (username: string, password: string) =>
      curl(['-X', 'POST', `${api}/api/v1/authenticate`, '-H', 'Content-Type: application/json', '-d', JSON.stringify({ username, password })]);
    expect((await login('migrator', 'env-s3cret')).code).toBe('200');
    expect((await login('migrator', 'wrong')).code).toBe('401');
    const reader = await login('reader', 'pw2');
    expect(reader.code).toBe('200');
    const token = (JSON.parse(reader.body) as { token: string }).token;
    // read-files only: an upload is refused.
    const dir = tempDir('sandbox-env-users');
    writeFileSync(path.join(dir, 'a.txt'), 'x');
    const up = await curl(['-X', 'POST', `${api}/api/v1/people/fileDocuments/upload`, '-H', `Authorization: Bearer ${token}`, '-F', `personId=${PERSON}`, '-F', 'name=A', '-F', `file=@${path.join(dir, 'a.txt')}`]);
    expect(up.code).toBe('403');
  }, 30_000);
});
