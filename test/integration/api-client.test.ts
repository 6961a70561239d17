import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterEach, describe, expect, it } from 'vitest';
import { ApiClient, type ApiClientOptions } from '../../src/api/client.ts';
import { classify } from '../../src/api/classify.ts';
import { Secret } from '../../src/config/secret.ts';
import { AuthRefusedError, ConfigError, HttpStatusError, NetworkError, TimeoutError, TlsError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';
import { ManualClock } from '../../src/pacing/clock.ts';
import { startApiTestServer, type ApiTestServer, type ApiTestServerOptions } from '../helpers/api-test-server.ts';
import { REPO_ROOT, rejection, tempDir } from '../helpers/fixtures.ts';

const PASSWORD = 'correct horse battery staple';
const TLS_DIR = path.join(REPO_ROOT, 'test/fixtures/tls');

const servers: ApiTestServer[] = [];
const clients: ApiClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close()));
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function server(options: ApiTestServerOptions = {}): Promise<ApiTestServer> {
  const s = await startApiTestServer({ password: PASSWORD, ...options });
  servers.push(s);
  return s;
}

function client(s: ApiTestServer, options: Partial<ApiClientOptions> = {}): ApiClient {
  const c = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(PASSWORD), ...options });
  clients.push(c);
  return c;
}

function sha256(data: Buffer | string): string {
  return createHash('sha256').update(data).digest('hex');
}

describe('ApiClient against a controllable test server', () => {
  it('keeps the base path prefix on every call', async () => {
    const s = await server({ prefix: '/identities' });
    const c = client(s);
    const dir = tempDir();
    const file = path.join(dir, 'card.pdf');
    writeFileSync(file, 'PDF bytes');
    s.photos.set('face-1', { data: Buffer.from('ffd8ffe000', 'hex') });
    s.photos.set('face-1/det-1', { data: Buffer.from('ffd8ffe1', 'hex') });
    await c.login();
    await c.uploadDocument({ personId: 'p1', name: 'ID', publicId: 'doc-1', filePath: file });
    expect(await c.documentExists('p1', 'doc-1')).toBe(true);
    await c.downloadDocument('p1', 'doc-1', path.join(dir, 'out/doc'));
    await c.downloadEnrollmentPhoto('face-1', path.join(dir, 'e.jpg'));
    await c.downloadDetectionPhoto('face-1', 'det-1', path.join(dir, 'd.jpg'));
    await c.listDetectionsByPerson('p1', { take: 2 });
    await c.listDetectionsByFace('face-1');
    await c.listPeopleByTag('t1');
    await c.getPerson('p1');
    expect(s.counts.unprefixed).toBe(0);
    expect(s.requests.length).toBeGreaterThanOrEqual(10);
    for (const r of s.requests) expect(r.url.startsWith('/identities/api/v1/')).toBe(true);
  });

  it('uploads all parts with a filename and downloads to the final name atomically', async () => {
    const s = await server();
    const c = client(s);
    const dir = tempDir();
    const file = path.join(dir, 'scan.bin');
    const content = Buffer.from(Array.from({ length: 70_000 }, (_, i) => i % 251));
    writeFileSync(file, content);
    const up = await c.uploadDocument(
      { personId: 'p-1', name: 'ID card', description: 'front', publicId: 'pub-1', filePath: file, fileName: 'id-card.pdf', contentType: 'application/pdf' },
    );
    expect(up.bytes).toBe(content.length);
    const stored = s.documents.get('p-1/pub-1')!;
    expect(stored.upload!.fields).toEqual({ personId: 'p-1', name: 'ID card', description: 'front', publicId: 'pub-1' });
    expect(stored.upload!.file.fileName).toBe('id-card.pdf');
    expect(stored.upload!.file.contentType).toBe('application/pdf');
    expect(stored.upload!.file.sha256).toBe(sha256(content));
    stored.contentDisposition = 'attachment; filename="../../evil/Ausweis.pdf"';

    const result = await c.downloadDocument('p-1', 'pub-1', (meta) => path.join(dir, 'nested/new', meta.fileName ?? 'fallback'));
    expect(result).toEqual({
      path: path.join(dir, 'nested/new/Ausweis.pdf'),
      bytes: content.length,
      sha256: sha256(content),
      contentType: 'application/pdf',
      fileName: 'Ausweis.pdf',
    });
    expect(readFileSync(result.path).equals(content)).toBe(true);
    expect(readdirSync(path.join(dir, 'nested/new'))).toEqual(['Ausweis.pdf']);
    expect(await c.documentExists('p-1', 'pub-1')).toBe(true);
    expect(await c.documentExists('p-1', 'nope')).toBe(false);
    const people = await c.listPeopleByTag('vip');
    expect(people.map((p) => p.personId)).toEqual(['p-vip-1', 'p-vip-2']);
    const detections = await c.listDetectionsByFace('f', { skip: 5, take: 3, epochStartMs: 1, epochEndMs: 2, dateAscending: false });
    expect(detections).toHaveLength(3);
    expect(detections[0]!.query).toEqual({ skip: '5', take: '3', epochStartMs: '1', epochEndMs: '2', dateAscending: 'false' });
  });

  it('never leaves a partial file under the final name when the body breaks', async () => {
    const s = await server();
    const c = client(s);
    const dir = tempDir();
    s.fault = (req, res) => {
      if (!req.url?.includes('enrollmentPhoto')) return false;
      res.writeHead(200, { 'content-type': 'image/jpeg', 'content-length': '100000' });
      res.write(Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), Buffer.alloc(10_000)]));
      setTimeout(() => res.destroy(), 20);
      return true;
    };
    const err = await rejection(c.downloadEnrollmentPhoto('f1', path.join(dir, 'photos/f1.jpg')));
    expect(err).toBeInstanceOf(NetworkError);
    expect(classify(err)).toEqual({ kind: 'retry', ambiguous: false });
    expect(readdirSync(path.join(dir, 'photos'))).toEqual([]);
  });

  it('a run with 2-second tokens completes without failures, mostly renewing', async () => {
    const s = await server({ tokenLifetimeS: 2 });
    const c = client(s, { connections: 4 });
    const until = Date.now() + 4_500;
    let calls = 0;
    const worker = async () => {
      while (Date.now() < until) {
        await c.getPerson(`p-${calls++}`);
        await new Promise((r) => setTimeout(r, 10));
      }
    };
    await Promise.all(Array.from({ length: 4 }, worker));
    const stats = c.stats();
    expect(calls).toBeGreaterThan(100);
    expect(stats.renewals).toBeGreaterThanOrEqual(3);
    expect(stats.logins).toBeLessThan(stats.renewals);
    expect(s.counts.logins).toBe(stats.logins);
  });

  it('revocation costs one re-login per process, not one per request', async () => {
    const s = await server();
    const c = client(s, { connections: 16 });
    await c.login();
    s.revokeAll();
    const people = await Promise.all(Array.from({ length: 100 }, (_, i) => c.getPerson(`p${i}`)));
    expect(people).toHaveLength(100);
    expect(s.counts.logins).toBe(2);
    expect(s.counts.refusedRenewals).toBeLessThanOrEqual(1);
    expect(c.stats()).toMatchObject({ logins: 2, refreshesOn401: 1 });
  });

  it('bad credentials are fatal, asked once, and the message has no password', async () => {
    const s = await server();
    const c = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret('wrong-password-123') });
    clients.push(c);
    const err = await rejection(c.login());
    expect(err).toBeInstanceOf(AuthRefusedError);
    expect(classify(err).kind).toBe('fatal');
    expect((err as Error).message).not.toContain('wrong-password-123');
    await expect(c.getPerson('p')).rejects.toBeInstanceOf(AuthRefusedError);
    expect(s.counts.refusedLogins).toBe(1);
  });

  it('Retry-After (seconds) pauses the whole client until then', async () => {
    const s = await server();
    const clock = new ManualClock(Date.now());
    const c = client(s, { clock });
    let throttled = false;
    s.fault = (req, res) => {
      if (throttled || !req.url?.includes('/people/p1')) return false;
      throttled = true;
      res.writeHead(429, { 'retry-after': '3' }).end('slow down');
      return true;
    };
    const heard: number[] = [];
    c.pace.onThrottle((_until, ms) => heard.push(ms));
    const err = await rejection(c.getPerson('p1'));
    expect(err).toBeInstanceOf(HttpStatusError);
    expect(classify(err)).toEqual({ kind: 'retry-after', ms: 3000, ambiguous: false });
    expect((err as Error).message).toBe('GET /api/v1/people/p1 answered 429: slow down');
    expect(heard).toEqual([3000]);
    expect(c.pace.until()).toBe(clock.now() + 3000);
    const before = s.requests.length;
    let done = false;
    const next = c.getPerson('p2').then(() => (done = true));
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    expect(s.requests.length).toBe(before);
    clock.advance(3000);
    await next;
    expect(c.stats().throttled).toBe(1);
  });

  it('Retry-After as an HTTP date on 503', async () => {
    const s = await server();
    const clock = new ManualClock(Date.now());
    const c = client(s, { clock });
    s.fault = (req, res) => {
      if (!req.url?.includes('/people/p1')) return false;
      res.writeHead(503, { 'retry-after': new Date(clock.now() + 10_000).toUTCString() }).end();
      return true;
    };
    const err = await rejection(c.getPerson('p1'));
    const classification = classify(err);
    expect(classification.kind).toBe('retry-after');
    expect(classification.kind === 'retry-after' && classification.ms).toBeGreaterThan(8_900);
    expect(classification.kind === 'retry-after' && classification.ms).toBeLessThanOrEqual(10_000);
  });

  it.each([
    [400, 'permanent'],
    [403, 'permanent'],
    [404, 'permanent'],
    [500, 'retry'],
    [502, 'retry'],
    [504, 'retry'],
  ] as const)('status %i is %s', async (status, kind) => {
    const s = await server();
    const c = client(s);
    s.fault = (req, res) => {
      if (!req.url?.includes('/people/p1')) return false;
      res.writeHead(status).end(`error body with Bearer abc.def.ghi-secret-token ${'x'.repeat(500)}`);
      return true;
    };
    const err = await rejection(c.getPerson('p1'));
    expect(classify(err)).toEqual({ kind, ambiguous: false });
    const message = (err as Error).message;
    expect(message).toContain(`GET /api/v1/people/p1 answered ${status}`);
    expect(message).not.toContain('secret-token');
    expect((err as HttpStatusError).bodyExcerpt.length).toBeLessThanOrEqual(200);
  });

  it('upload: 5xx and a reset after the body went out are ambiguous', async () => {
    const s = await server();
    const c = client(s);
    const file = path.join(tempDir(), 'f.bin');
    writeFileSync(file, Buffer.alloc(200_000, 7));
    const input = { personId: 'p', name: 'n', publicId: 'd', filePath: file };
    let mode: 'status' | 'reset' = 'status';
    s.fault = async (req, res) => {
      if (!req.url?.includes('upload')) return false;
      for await (const _ of req) {
        /* read the whole body first: it reached the server */
      }
      if (mode === 'status') res.writeHead(502).end('bad gateway');
      else res.socket?.destroy();
      return true;
    };
    expect(classify(await rejection(c.uploadDocument(input)))).toEqual({ kind: 'retry', ambiguous: true });
    mode = 'reset';
    const reset = await rejection(c.uploadDocument(input));
    expect(reset).toBeInstanceOf(NetworkError);
    expect(classify(reset)).toEqual({ kind: 'retry', ambiguous: true });
    // The client never resends an upload itself: one request per call.
    expect(s.requests.filter((r) => r.url.includes('upload'))).toHaveLength(2);
  });

  it('upload of a missing file is a permanent FileError; nothing is sent', async () => {
    const s = await server();
    const c = client(s);
    const err = await rejection(c.uploadDocument({ personId: 'p', name: 'n', publicId: 'd', filePath: path.join(tempDir(), 'missing.pdf') }));
    expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    expect(s.requests).toHaveLength(0);
  });

  it('a GET whose connection resets before any answer is sent once more; a second reset is thrown', async () => {
    const s = await server();
    const c = client(s);
    let resets = 1;
    s.fault = (req) => {
      if (!req.url?.includes('/people/p1') || resets <= 0) return false;
      resets--;
      req.socket.destroy();
      return true;
    };
    expect((await c.getPerson('p1')).personId).toBe('p1');
    resets = 2;
    const err = await rejection(c.getPerson('p1'));
    expect(err).toBeInstanceOf(NetworkError);
    expect(classify(err)).toEqual({ kind: 'retry', ambiguous: false });
  });

  it('headers timeout and body idle timeout', async () => {
    const s = await server();
    const c = client(s, { headersTimeoutMs: 200, bodyTimeoutMs: 200 });
    const dir = tempDir();
    s.fault = (req, res) => {
      if (req.url?.includes('/people/slow')) return true; // never answers
      if (req.url?.includes('enrollmentPhoto')) {
        res.writeHead(200);
        res.write(Buffer.from([0xff, 0xd8, 0xff, 0xe0]));
        return true; // then silence
      }
      return false;
    };
    const headers = await rejection(c.getPerson('slow'));
    expect(headers).toBeInstanceOf(TimeoutError);
    expect((headers as TimeoutError).phase).toBe('headers');
    const body = await rejection(c.downloadEnrollmentPhoto('f', path.join(dir, 'f.jpg')));
    expect(body).toBeInstanceOf(TimeoutError);
    expect((body as TimeoutError).phase).toBe('body');
    expect(readdirSync(dir)).toEqual([]);
  });

  it('debug logs of a whole run hold neither the password nor any token', async () => {
    const s = await server({ tokenLifetimeS: 2 });
    const lines: string[] = [];
    const destination = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString('utf8'));
        cb();
      },
    });
    const log = createLogger({ level: 'debug', format: 'json', destination });
    const c = client(s, { log });
    const file = path.join(tempDir(), 'f.txt');
    writeFileSync(file, 'hello');
    await c.uploadDocument({ personId: 'p', name: 'n', publicId: 'd', filePath: file });
    s.revokeAll();
    await c.getPerson('p');
    await new Promise((r) => setTimeout(r, 1100));
    await c.getPerson('p');
    s.fault = (req, res) => {
      if (!req.url?.includes('/people/echo')) return false;
      res.writeHead(500).end(`failed for ${req.headers.authorization}`);
      return true;
    };
    await rejection(c.getPerson('echo')).then((err) => log.error({ err }, 'call failed'));
    const wrong = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret('hunter2-wrong'), log });
    clients.push(wrong);
    await rejection(wrong.login()).then((err) => log.error({ err }, 'login failed'));
    const output = lines.join('');
    expect(output).toContain('"level":20');
    expect(output).toContain('answered 500');
    expect(s.tokensIssued().length + s.counts.logins).toBeGreaterThan(1);
    expect(output).not.toContain(PASSWORD);
    expect(output).not.toContain('hunter2-wrong');
    for (const r of s.requests) {
      const token = r.authorization?.slice('Bearer '.length);
      if (token) expect(output).not.toContain(token);
    }
    expect(output).not.toMatch(/eyJ[A-Za-z0-9_-]{5,}\.eyJ/);
  });
});

describe('TLS', () => {
  const tls = () => ({ key: readFileSync(path.join(TLS_DIR, 'server.key'), 'utf8'), cert: readFileSync(path.join(TLS_DIR, 'server.crt'), 'utf8') });

  it('refuses a self-signed certificate without a CA, with the fix in the message; fatal', async () => {
    const s = await server({ tls: tls() });
    const c = client(s);
    const err = await rejection(c.login());
    expect(err).toBeInstanceOf(TlsError);
    expect(classify(err)).toEqual({ kind: 'fatal', ambiguous: false });
    expect((err as Error).message).toMatch(/server's TLS certificate/);
    expect((err as Error).message).toContain('--ca-file PATH');
    expect((err as Error).message).toContain('--insecure');
    expect(s.counts.logins).toBe(0);
  });

  it('accepts it with --ca-file (added to the system CAs)', async () => {
    const s = await server({ tls: tls() });
    const c = client(s, { caFile: path.join(TLS_DIR, 'server.crt') });
    await c.login();
    expect((await c.getPerson('p')).personId).toBe('p');
  });

  it('says so at once when --ca-file holds no certificate (Node would skip it silently)', async () => {
    const bad = path.join(tempDir('idsync-ca-'), 'ca.pem');
    writeFileSync(bad, 'not a certificate\n');
    expect(() => client({ url: 'https://127.0.0.1:1' } as never, { caFile: bad })).toThrow(/--ca-file .*ca\.pem holds no readable PEM certificate/);
    writeFileSync(bad, '-----BEGIN CERTIFICATE-----\nnonsense\n-----END CERTIFICATE-----\n');
    expect(() => client({ url: 'https://127.0.0.1:1' } as never, { caFile: bad })).toThrow(ConfigError);
  });

  it('accepts it with --insecure', async () => {
    const s = await server({ tls: tls() });
    const c = client(s, { insecure: true });
    await c.login();
    expect(s.counts.logins).toBe(1);
  });

  it('names the likely mistake when https is spoken to a plain HTTP port', async () => {
    const s = await server();
    const c = client(s, { apiUrl: s.url.replace('http:', 'https:') });
    const err = await rejection(c.login());
    expect(err).toBeInstanceOf(TlsError);
    expect((err as Error).message).toMatch(/https vs http/);
  });
});

describe('tokens without a readable exp', () => {
  it('relies on 401s', async () => {
    const s = await server({ opaqueTokens: true });
    const c = client(s);
    await c.getPerson('a');
    s.revokeAll();
    await c.getPerson('b');
    expect(c.stats()).toMatchObject({ logins: 2, renewals: 0, refreshesOn401: 1 });
    expect(existsSync('/nonexistent')).toBe(false);
  });
});
