import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { ReportWriteError } from '../../src/errors.ts';
import { runCli } from '../helpers/run-cli.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const servers: Server[] = [];
afterEach(async () => {
  while (servers.length > 0) await new Promise((resolve) => servers.pop()!.close(resolve));
});

async function listen(handler: Parameters<typeof createServer>[1]): Promise<Server> {
  const server = createServer(handler);
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return server;
}

/** A port nobody listens on: taken from the system, then given back. */
async function closedPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise((resolve) => server.close(resolve));
  return port;
}

/** `idsync import --dry-run` as a user runs it: the login is the first thing that talks to the API. */
async function importDryRun(apiUrl: string, extraEnv: Record<string, string> = {}, password = 'pw'): Promise<{ code: number | null; stderr: string }> {
  const dir = tempDir();
  const manifest = writeImportManifest(dir, 1);
  const env = { IDSYNC_API_URL: apiUrl, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: password, IDSYNC_STATE_DIR: path.join(dir, 'st'), IDSYNC_REPORT_DIR: path.join(dir, 'rep'), ...extraEnv };
  return runCli(['import', manifest, '--dry-run', '--attempts', '2'], { env });
}

describe('could-not-start errors at login exit 2 with the cause (issue #15)', () => {
  it('connection refused: names host, port and the cause', async () => {
    const port = await closedPort();
    const r = await importDryRun(`http://127.0.0.1:${port}`);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`idsync: cannot reach the API at http://127.0.0.1:${port}: connection refused (ECONNREFUSED) (the last of 2 tries)`);
    expect(r.stderr).not.toContain('unexpected error');
  });

  it('--dry-run refuses a REDIS_URL the real run could not use, without its password', async () => {
    const s = await withSandbox();
    const r = await importDryRun(s.url, { REDIS_URL: 'redis://:Hunter2Secret@10.0.0.7:6379/x' }, s.password);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('REDIS_URL: "x" is not a database number');
    expect(r.stderr).not.toContain('Hunter2Secret');
  });

  it('a host name that does not resolve', async () => {
    const r = await importDryRun('https://idsync-no-such-host.invalid:5009', { IDSYNC_ATTEMPTS: '1' });
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/cannot reach the API at https:\/\/idsync-no-such-host\.invalid:5009: host name (not found|lookup failed) \(DNS/);
  });

  it('404 at login: the path prefix is probably missing', async () => {
    const s = await withSandbox({ prefix: '/identities' });
    const r = await importDryRun(s.origin, {}, s.password);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the API at ${s.origin} answered 404 to the login (POST /api/v1/authenticate); the URL's path prefix is probably missing or wrong: cloud URLs end in /identities`);
  });

  it('200 with an HTML page: says what came back', async () => {
    const server = await listen((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end('<!DOCTYPE html>\n<html><body><h1>Welcome to the portal</h1></body></html>');
    });
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const r = await importDryRun(url);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`the API at ${url} answered the login with something that is not a login answer: the body is not JSON: "<!DOCTYPE html> <html><body><h1>Welcome to the portal</h1></body></html>" (Content-Type text/html; charset=utf-8)`);
  });

  it('5xx on every try: exit 2 with the status and what came back', async () => {
    const s = await withSandbox({ faults: { failRate: 1 } });
    const r = await importDryRun(s.url, {}, s.password);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(new RegExp(`the API at ${s.url.replace(/[.]/g, '\\.')} answered 50[023] to the login \\(the last of 2 tries\\): "injected failure"; the server \\(or a proxy in front of it\\) is failing`));
    expect(s.stats().byRoute.authenticate).toBe(2);
  });

  it('a certificate made out for another name: says the name does not match, and which names it has', async () => {
    // The sandbox's certificate names 127.0.0.1 and localhost; reach it as 127.0.0.2.
    const s = await withSandbox({ tls: true, host: '127.0.0.2' });
    const r = await importDryRun(s.url, { IDSYNC_CA_FILE: s.caFile! }, s.password);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`certificate at ${s.origin} is made out for IP Address:127.0.0.1, DNS:localhost, not for 127.0.0.2: the name does not match (ERR_TLS_CERT_ALTNAME_INVALID)`);
    expect(r.stderr).not.toContain('pass its certificate with --ca-file');
  });

  it('a state dir that cannot be written: exit 2 naming it, no stack', async () => {
    const s = await withSandbox();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 1);
    writeFileSync(path.join(dir, 'not-a-dir'), 'x');
    const stateDir = path.join(dir, 'not-a-dir', 'state');
    const env = { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password, IDSYNC_STATE_DIR: stateDir, IDSYNC_REPORT_DIR: path.join(dir, 'rep'), REDIS_URL: inject('redisUrl') };
    const r = await runCli(['import', manifest], { env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`idsync: the state dir ${stateDir} cannot hold the ledger: ENOTDIR`);
    expect(r.stderr).toContain('make it writable or choose another with --state-dir');
    expect(r.stderr).not.toMatch(/unexpected error|\n    at /);
    expect(s.stats().uploads).toBe(0);
  });
});

/** A real small tmpfs, when this process may mount one (root in a container that allows it). */
function mountTmpfs(size: string): { dir: string; unmount: () => void } | undefined {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return undefined;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'idsync-tmpfs-'));
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${size}`, 'tmpfs', dir], { stdio: 'ignore' });
  } catch {
    rmSync(dir, { recursive: true, force: true });
    return undefined;
  }
  return {
    dir,
    unmount: () => {
      execFileSync('umount', [dir], { stdio: 'ignore' });
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

describe('a report dir on a full disk (issue #15, item 7)', () => {
  it('the import ends in ReportWriteError (exit 2, naming the file and ENOSPC); the previous report stays whole', async (ctx) => {
    const fs = mountTmpfs('512k');
    if (!fs) return ctx.skip();
    try {
      const s = await withSandbox();
      const dir = tempDir();
      const reportDir = path.join(fs.dir, 'report');
      const common = { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir };
      const small = await runJob({ command: 'import', manifest: writeImportManifest(path.join(dir, 'a'), 3), ...common });
      expect(small.exitCode).toBe(0);
      const names = ['report.csv', 'report.jsonl', 'failed.csv', 'summary.json'];
      const previous = names.map((n) => readFileSync(path.join(reportDir, n), 'utf8'));
      // Leave about 24 KB: 400 report rows take several times that.
      writeFileSync(path.join(fs.dir, 'filler'), Buffer.alloc(512 * 1024 - 24 * 1024));
      const err = await runJob({ command: 'import', manifest: writeImportManifest(path.join(dir, 'b'), 400), ...common }).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(ReportWriteError);
      expect(err).toMatchObject({ code: 'E_REPORT', sysCode: 'ENOSPC' });
      expect((err as Error).message).toMatch(new RegExp(`cannot write the report file ${reportDir}/[a-z.]+\\.partial \\(ENOSPC`));
      expect(exitCodeForError(err)).toBe(2);
      expect(names.map((n) => readFileSync(path.join(reportDir, n), 'utf8'))).toEqual(previous);
      expect(existsSync(path.join(reportDir, 'report.csv.partial'))).toBe(true);
    } finally {
      fs.unmount();
    }
  });
});
