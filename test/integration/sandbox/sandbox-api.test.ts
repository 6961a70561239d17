import { request as httpsRequest } from 'node:https';
import { describe, expect, it } from 'vitest';
import { startSandbox } from '../../../src/sandbox/index.ts';
import { tempDir } from '../../helpers/fixtures.ts';
import { login, uploadForm, withSandbox } from '../../helpers/sandbox.ts';

const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const FACE = '3f2504e0-4f89-41d3-9a0c-0305e82c3301';
const DOC = '16fd2706-8baf-433b-82eb-8c7fada847da';

function bearer(token: string) {
  return { authorization: `Bearer ${token}` };
}

async function upload(url: string, token: string, fields: Record<string, string>, bytes = 'hello'): Promise<Response> {
  return fetch(`${url}/api/v1/people/fileDocuments/upload`, { method: 'POST', headers: bearer(token), body: uploadForm(fields, { name: 'a.pdf', bytes, type: 'application/pdf' }) });
}

describe('auth', () => {
  it('expires tokens by the injected clock and refuses to renew an expired one', async () => {
    let now = Date.UTC(2030, 0, 1);
    const s = await withSandbox({ tokenTtlSeconds: 60, now: () => now });
    const token = await login(s);
    const payload = JSON.parse(Buffer.from(token.split('.')[1]!, 'base64url').toString()) as { exp: number };
    expect(payload.exp).toBe(now / 1000 + 60);
    now += 30_000;
    const renewed = await fetch(`${s.url}/api/v1/renewToken`, { headers: bearer(token) });
    expect(renewed.status).toBe(200);
    now += 31_000;
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) })).status).toBe(401);
    expect((await fetch(`${s.url}/api/v1/renewToken`, { headers: bearer(token) })).status).toBe(401);
    const fresh = ((await renewed.json()) as { token: string }).token;
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(fresh) })).status).toBe(200);
  });

  it('answers 401 to a wrong password and 403 without the permission', async () => {
    const s = await withSandbox({ users: [{ username: 'reader', password: 'pw', permissions: ['Read Identity Files'] }] });
    expect((await fetch(`${s.url}/api/v1/authenticate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"reader","password":"no"}' })).status).toBe(401);
    const token = await login(s, 'reader', 'pw');
    expect((await upload(s.url, token, { personId: PERSON, name: 'x' })).status).toBe(403);
    expect((await fetch(`${s.url}/api/v1/people/detections/faceId/${FACE}`, { headers: bearer(token) })).status).toBe(403);
    expect((await fetch(`${s.url}/api/v1/people/${PERSON}`, { headers: bearer(token) })).status).toBe(403);
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) })).status).toBe(200);
  });

  it('revokes every outstanding token on demand and every N seconds', async () => {
    let now = Date.UTC(2030, 0, 1);
    const s = await withSandbox({ now: () => now });
    const t1 = await login(s);
    await fetch(`${s.origin}/_admin/revoke`, { method: 'POST' });
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(t1) })).status).toBe(401);
    s.setFaults({ revokeEverySeconds: 10 });
    const t2 = await login(s);
    now += 5_000;
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(t2) })).status).toBe(200);
    now += 6_000;
    expect((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(t2) })).status).toBe(401);
  });
});

describe('photos and people', () => {
  it('serves deterministic distinct JPEGs, 404 for the missing range and non-GUIDs, and changed bytes after a version bump', async () => {
    const s = await withSandbox();
    const token = await login(s);
    const get = async (p: string) => fetch(`${s.url}${p}`, { headers: bearer(token) });
    const a = Buffer.from(await (await get(`/api/v1/people/enrollmentPhoto/${FACE}`)).arrayBuffer());
    const a2 = Buffer.from(await (await get(`/api/v1/people/enrollmentPhoto/${FACE}`)).arrayBuffer());
    const b = Buffer.from(await (await get(`/api/v1/people/enrollmentPhoto/${PERSON}`)).arrayBuffer());
    expect(a.equals(a2)).toBe(true);
    expect(a.equals(b)).toBe(false);
    expect((await get('/api/v1/people/enrollmentPhoto/not-a-guid')).status).toBe(404);
    expect((await get(`/api/v1/people/detectionPhoto/${FACE}/00000000-0000-0000-0000-000000000000`)).status).toBe(404);
    expect((await fetch(`${s.origin}/_admin/faces/${FACE}/enrollment-version`, { method: 'POST' })).status).toBe(200);
    const a3 = Buffer.from(await (await get(`/api/v1/people/enrollmentPhoto/${FACE}`)).arrayBuffer());
    expect(a3.equals(a)).toBe(false);
    expect([...a3.subarray(0, 2)]).toEqual([0xff, 0xd8]);
    const person = (await (await get(`/api/v1/people/${PERSON}`)).json()) as { personId: string; aliases: unknown[] };
    expect(person.personId).toBe(PERSON);
    expect((await get('/api/v1/people/00000000-1111-4111-8111-111111111111')).status).toBe(404);
    const tagged = (await (await get(`/api/v1/people?tagId=${DOC}`)).json()) as Array<{ personId: string }>;
    expect(tagged.length).toBeGreaterThan(0);
  });

  it('pins people and photos from --data', async () => {
    const s = await withSandbox({
      data: { people: [{ personId: PERSON, aliases: [{ firstName: 'Ada' }], tags: [DOC], faceIds: [FACE] }], faces: [{ faceId: FACE, photoBase64: Buffer.from('pinned').toString('base64') }] },
    });
    const token = await login(s);
    expect(await (await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) })).text()).toBe('pinned');
    const tagged = (await (await fetch(`${s.url}/api/v1/people?tagId=${DOC}`, { headers: bearer(token) })).json()) as Array<{ personId: string; aliases: unknown[] }>;
    expect(tagged).toEqual([expect.objectContaining({ personId: PERSON, aliases: [{ firstName: 'Ada' }] })]);
  });
});

describe('detections', () => {
  it('lists a deterministic, time-driven window with paging and ordering', async () => {
    let now = Date.UTC(2030, 0, 1);
    const s = await withSandbox({ now: () => now, tokenTtlSeconds: 7200 });
    const token = await login(s);
    const list = async (q: string) =>
      (await (await fetch(`${s.url}/api/v1/people/detections/faceId/${FACE}?${q}`, { headers: bearer(token) })).json()) as Array<{ dateTimeUtc: string; image: string | null; confidence: number; detector: string; timeZone: string }>;
    const day = `epochStartMs=${now - 86_400_000}&epochEndMs=${now}`;
    const all = await list(`${day}&take=1000`);
    expect(all.length).toBeGreaterThan(20);
    const times = all.map((d) => Date.parse(d.dateTimeUtc));
    expect(times).toEqual([...times].sort((x, y) => x - y));
    expect(times.every((t) => t >= now - 86_400_000 && t <= now)).toBe(true);
    expect(all.some((d) => d.image === null)).toBe(true);
    expect(all.some((d) => d.image !== null && Buffer.from(d.image, 'base64')[0] === 0xff)).toBe(true);
    expect(await list(day)).toHaveLength(10);
    expect(await list(`${day}&skip=5&take=3`)).toEqual(all.slice(5, 8));
    expect(await list(`${day}&dateAscending=false&take=2`)).toEqual([all.at(-1), all.at(-2)]);
    expect(await list(`${day}&take=1000`)).toEqual(all);
    // The clock moves on: new detections appear after the old end.
    now += 3_600_000;
    const later = await list(`epochStartMs=${times.at(-1)! + 1}&take=1000`);
    expect(later.length).toBeGreaterThan(0);
    expect((await fetch(`${s.url}/api/v1/people/detections/faceId/${FACE}?skip=abc`, { headers: bearer(token) })).status).toBe(400);
    // Explicit detections are merged into the person's listing.
    await fetch(`${s.origin}/_admin/detections`, { method: 'POST', body: JSON.stringify({ personId: PERSON, dateTimeUtc: new Date(now - 1000).toISOString(), detector: 'Door X', image: null }) });
    const mine = (await (await fetch(`${s.url}/api/v1/people/detections/personId/${PERSON}?dateAscending=false&take=1`, { headers: bearer(token) })).json()) as Array<{ detector: string }>;
    expect(mine[0]!.detector).toBe('Door X');
  });
});

describe('documents', () => {
  it('keep their metadata, survive a restart with the same dir, and stream back with headers', async () => {
    const dir = tempDir('sandbox-docs');
    const first = await startSandbox({ dir, users: [{ username: 'u', password: 'p', permissions: ['Add Identity Files', 'Read Identity Files'] }] });
    const token = await login(first, 'u', 'p');
    expect((await upload(first.url, token, { personId: PERSON, name: 'ID', description: 'front', publicId: DOC }, 'pdf-bytes')).status).toBe(200);
    await first.close();
    const second = await startSandbox({ dir, users: [{ username: 'u', password: 'p', permissions: ['Read Identity Files'] }], admin: true });
    try {
      const t2 = await login(second, 'u', 'p');
      const res = await fetch(`${second.url}/api/v1/people/${PERSON}/fileDocuments/${DOC}/data`, { headers: bearer(t2) });
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('application/pdf');
      expect(res.headers.get('content-disposition')).toContain('a.pdf');
      expect(await res.text()).toBe('pdf-bytes');
      const docs = (await (await fetch(`${second.origin}/_admin/documents`)).json()) as Array<Record<string, unknown>>;
      expect(docs).toEqual([expect.objectContaining({ personId: PERSON, documentId: DOC, name: 'ID', description: 'front', fileName: 'a.pdf', bytes: 9, uploads: 1 })]);
    } finally {
      await second.close();
    }
  });

  it.each([
    ['store', 200, 2, 'two'],
    ['overwrite', 200, 2, 'two'],
    ['reject', 409, 1, 'one'],
  ] as const)('duplicate policy %s', async (duplicatePolicy, status, uploads, content) => {
    const s = await withSandbox({ duplicatePolicy });
    const token = await login(s);
    expect((await upload(s.url, token, { personId: PERSON, name: 'x', publicId: DOC }, 'one')).status).toBe(200);
    expect((await upload(s.url, token, { personId: PERSON, name: 'x', publicId: DOC }, 'two')).status).toBe(status);
    expect(s.documents()[0]!.uploads).toBe(uploads);
    expect(await (await fetch(`${s.url}/api/v1/people/${PERSON}/fileDocuments/${DOC}/data`, { headers: bearer(token) })).text()).toBe(content);
  });

  it('generates a documentId when publicId is absent and answers 400 without a name or file', async () => {
    const s = await withSandbox();
    const token = await login(s);
    const res = await upload(s.url, token, { personId: PERSON, name: 'x' });
    expect(res.status).toBe(200);
    expect(await res.text()).toBe('');
    expect(s.documents()[0]!.documentId).toMatch(/^[0-9a-f-]{36}$/);
    expect((await upload(s.url, token, { personId: PERSON })).status).toBe(400);
    const noFile = await fetch(`${s.url}/api/v1/people/fileDocuments/upload`, { method: 'POST', headers: bearer(token), body: uploadForm({ personId: PERSON, name: 'x' }) });
    expect(noFile.status).toBe(400);
  });
});

describe('faults', () => {
  it('inject 5xx, 429 with Retry-After, resets, lost responses, latency and slow bodies; never on /_admin', async () => {
    const s = await withSandbox();
    const token = await login(s);
    const photo = () => fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) });

    s.setFaults({ failRate: 1 });
    expect([500, 502, 503]).toContain((await photo()).status);
    expect((await fetch(`${s.origin}/_admin/stats`)).status).toBe(200);

    await fetch(`${s.origin}/_admin/faults`, { method: 'PUT', body: JSON.stringify({ throttleRate: 1, retryAfterSeconds: 7 }) });
    const throttled = await photo();
    expect(throttled.status).toBe(429);
    expect(throttled.headers.get('retry-after')).toBe('7');

    s.setFaults({ resetRate: 1 });
    await expect(photo()).rejects.toThrow();

    s.setFaults({ lostResponseRate: 1 });
    await expect(upload(s.url, token, { personId: PERSON, name: 'x', publicId: DOC })).rejects.toThrow();
    expect(s.documents()).toEqual([expect.objectContaining({ documentId: DOC, uploads: 1 })]);

    s.setFaults({ latencyMs: 150 });
    let t0 = performance.now();
    expect((await photo()).status).toBe(200);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(140);

    s.setFaults({ slowBodyRate: 1, slowBodyDelayMs: 40 });
    t0 = performance.now();
    const slow = await photo();
    const bytes = Buffer.from(await slow.arrayBuffer());
    expect(bytes[0]).toBe(0xff);
    expect(performance.now() - t0).toBeGreaterThanOrEqual(8 * 40 - 20);

    const stats = s.stats();
    expect(stats.status['429']).toBe(1);
    expect(stats.status.reset).toBeGreaterThanOrEqual(2);
    expect(stats.uploads).toBe(1);
    expect(stats.requestsPerSecond.length).toBeGreaterThan(0);
  });

  it('answer 503 beyond --capacity requests handled at once, count them, and change through PUT /_admin/faults', async () => {
    const s = await withSandbox();
    const token = await login(s);
    // Slow bodies keep requests in the server's hands until the client drops them.
    s.setFaults({ capacity: 2, slowBodyRate: 1, slowBodyDelayMs: 60_000 });
    const held: AbortController[] = [];
    const photo = async () => {
      const controller = new AbortController();
      const res = await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token), signal: controller.signal });
      if (res.status === 200) held.push(controller);
      else await res.arrayBuffer();
      return res;
    };
    expect((await photo()).status).toBe(200);
    expect((await photo()).status).toBe(200);
    const refused = await photo();
    expect(refused.status).toBe(503);
    expect(refused.headers.get('retry-after')).toBeNull();

    const put = await fetch(`${s.origin}/_admin/faults`, { method: 'PUT', body: JSON.stringify({ capacity: 3, slowBodyRate: 1, slowBodyDelayMs: 60_000 }) });
    expect(await put.json()).toMatchObject({ capacity: 3 });
    expect((await photo()).status).toBe(200);
    expect((await photo()).status).toBe(503);
    const bad = await fetch(`${s.origin}/_admin/faults`, { method: 'PUT', body: JSON.stringify({ capacity: 0 }) });
    expect(bad.status).toBe(400);

    const stats = (await (await fetch(`${s.origin}/_admin/stats`)).json()) as { overCapacity: number; maxHandling: number; status: Record<string, number> };
    expect(stats).toMatchObject({ overCapacity: 2, maxHandling: 3 });
    expect(stats.status['503']).toBe(2);

    // Dropped answers free their places.
    for (const c of held) c.abort();
    s.setFaults({ capacity: 3 });
    let admittedAgain = 0;
    for (let i = 0; i < 200 && admittedAgain < 3; i++) {
      const res = await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) });
      await res.arrayBuffer();
      admittedAgain = res.status === 200 ? admittedAgain + 1 : 0;
    }
    expect(admittedAgain).toBe(3);
  });

  it('are reproducible with a seed', async () => {
    const s = await withSandbox();
    const token = await login(s);
    const run = async () => {
      s.setFaults({ seed: 42, failRate: 0.5 });
      const out: number[] = [];
      for (let i = 0; i < 20; i++) out.push((await fetch(`${s.url}/api/v1/people/enrollmentPhoto/${FACE}`, { headers: bearer(token) })).status);
      return out;
    };
    const a = await run();
    expect(a).toEqual(await run());
    expect(new Set(a).size).toBeGreaterThan(1);
  });
});

describe('admin and TLS', () => {
  it('has no /_admin without admin', async () => {
    const s = await withSandbox({ admin: false });
    expect((await fetch(`${s.origin}/_admin/stats`)).status).toBe(404);
  });

  it('serves HTTPS that a client with the CA file accepts and one without refuses', async () => {
    const s = await withSandbox({ tls: true, prefix: '/identities' });
    expect(s.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+\/identities$/);
    expect(s.caFile).toBeTruthy();
    const get = (ca?: string) =>
      new Promise<number>((resolve, reject) => {
        const req = httpsRequest(`${s.url}/api/v1/renewToken`, { ca }, (res) => {
          res.resume();
          resolve(res.statusCode!);
        });
        req.on('error', reject);
        req.end();
      });
    expect(await get(s.caPem)).toBe(401);
    await expect(get()).rejects.toThrow(/self-signed|certificate/i);
  });
});
