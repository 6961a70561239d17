import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const SCRIPT = path.resolve(import.meta.dirname, '../../docker/healthcheck.mjs');

/** Runs docker/healthcheck.mjs with exactly this environment (nothing inherited but PATH). */
function healthcheck(env: Record<string, string>): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT], { env: { PATH: process.env.PATH ?? '', IDSYNC_HEALTHCHECK_TIMEOUT_MS: '3000', ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, out: stdout + stderr });
    });
  });
}

const servers: Array<net.Server | http.Server> = [];
afterEach(async () => {
  for (const s of servers.splice(0)) await new Promise((r) => s.close(() => r(undefined)));
});

/** A fake Redis that wants `AUTH <user> <password>` before PING, and records what it was sent. */
async function fakeRedis(user: string, password: string): Promise<{ url: (u: string, p: string) => string; received: () => string }> {
  let received = '';
  const server = net.createServer((socket) => {
    let authed = false;
    // The healthcheck may reset the connection once it has its answer: not this test's concern.
    socket.on('error', () => undefined);
    socket.on('data', (chunk) => {
      received += chunk.toString('utf8');
      const auth = `*3\r\n$4\r\nAUTH\r\n$${Buffer.byteLength(user)}\r\n${user}\r\n$${Buffer.byteLength(password)}\r\n${password}\r\n`;
      if (!authed && received.includes('AUTH')) {
        if (received.startsWith(auth)) {
          authed = true;
          socket.write('+OK\r\n');
        } else {
          socket.write('-WRONGPASS invalid username-password pair or user is disabled.\r\n');
        }
      }
      if (received.includes('PING')) socket.write(authed ? '+PONG\r\n' : '-NOAUTH Authentication required.\r\n');
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return { url: (u, p) => `redis://${encodeURIComponent(u)}:${encodeURIComponent(p)}@127.0.0.1:${port}`, received: () => received };
}

describe('docker/healthcheck.mjs', () => {
  it('is healthy when Redis answers PING and the API accepts the login', async () => {
    const sandbox = await withSandbox();
    const r = await healthcheck({ REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: sandbox.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: sandbox.password });
    expect(r.out).toMatch(/^healthy: redis .* PONG, api login at .* 200\n$/);
    expect(r.code).toBe(0);
    expect(r.out).not.toContain(sandbox.password);
  });

  it('reads the password from IDSYNC_PASSWORD_FILE without its newline', async () => {
    const sandbox = await withSandbox();
    const file = path.join(tempDir(), 'password');
    writeFileSync(file, `${sandbox.password}\n`, { mode: 0o600 });
    const r = await healthcheck({ IDSYNC_API_URL: sandbox.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD_FILE: file });
    expect(r.code).toBe(0);
  });

  it('is unhealthy when the login is refused, and never prints the password', async () => {
    const sandbox = await withSandbox();
    const wrong = 'not-the-password-7f3a';
    const r = await healthcheck({ REDIS_URL: inject('redisUrl'), IDSYNC_API_URL: sandbox.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: wrong });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^unhealthy: api: login at http:\/\/127\.0\.0\.1:\d+ answered 401\n$/);
    expect(r.out).not.toContain(wrong);
  });

  it('sends AUTH user password as RESP before PING, and reports WRONGPASS without the password', async () => {
    const redis = await fakeRedis('idsync', 'p@ss word:with*odd\r\nbytes');
    const ok = await healthcheck({ REDIS_URL: redis.url('idsync', 'p@ss word:with*odd\r\nbytes') });
    expect(ok.out).toBe(`healthy: redis redis://127.0.0.1:${new URL(redis.url('a', 'b')).port} PONG\n`);
    expect(redis.received()).toMatch(/^\*3\r\n\$4\r\nAUTH\r\n/);

    const bad = await fakeRedis('idsync', 'right');
    const r = await healthcheck({ REDIS_URL: bad.url('idsync', 'wrong-secret-99') });
    expect(r.code).toBe(1);
    expect(r.out).toBe('unhealthy: redis: AUTH answered WRONGPASS\n');
  });

  it('is unhealthy when Redis does not answer', async () => {
    const server = net.createServer();
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    await new Promise((r) => server.close(r));
    const r = await healthcheck({ REDIS_URL: `redis://:secret-pw@127.0.0.1:${port}` });
    expect(r.code).toBe(1);
    expect(r.out).toBe(`unhealthy: redis: ECONNREFUSED\n`);
  });

  it('asks /healthz instead when IDSYNC_METRICS_LISTEN is set', async () => {
    let status = 200;
    const seen: string[] = [];
    const server = http.createServer((req, res) => {
      seen.push(`${req.method} ${req.url}`);
      res.statusCode = status;
      res.end();
    });
    servers.push(server);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as AddressInfo).port;
    // REDIS_URL points nowhere: with a health endpoint, only that endpoint counts.
    const env = { IDSYNC_METRICS_LISTEN: `0.0.0.0:${port}`, REDIS_URL: 'redis://127.0.0.1:1' };
    expect(await healthcheck(env)).toEqual({ code: 0, out: `healthy: http://127.0.0.1:${port}/healthz 200\n` });
    status = 503;
    expect(await healthcheck(env)).toEqual({ code: 1, out: `unhealthy: healthz: GET http://127.0.0.1:${port}/healthz answered 503\n` });
    expect(seen).toEqual(['GET /healthz', 'GET /healthz']);
  });

  it('is unhealthy when there is nothing to check', async () => {
    const r = await healthcheck({});
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^unhealthy: nothing to check/);
  });
});
