import { readdirSync, readFileSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { Agent, type Dispatcher } from 'undici';
import { Queue } from 'bullmq';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger } from '../../src/log.ts';
import { systemClock, type Clock } from '../../src/pacing/clock.ts';
import { runArchive, schedulerIdFor, type ArchiveRunOptions } from '../../src/commands/archive/run-archive.ts';
import { archiveKeyFor, FIRST_WINDOW_START_MS } from '../../jobs/archive-plan.ts';
import { ORIGIN_MS } from '../../src/sandbox/detection-schedule.ts';
import { ApiKeys, apiKey, CONTROL_QUEUE } from '../../src/store/keys.ts';
import { WATERMARK_FILE } from '../../src/store/archive-state.ts';
import { keyPrefixFor } from '../helpers/job-runs.ts';
import { tempDir, testQueueName } from '../helpers/fixtures.ts';
import { sandboxEnv, withSandbox } from '../helpers/sandbox.ts';

const FACES = ['3f2504e0-4f89-11d3-9a0c-0305e82c3301', '7c9e6679-7425-40de-944b-e07fc1f90ae7'];
const PERSONS = ['a8098c1a-f86e-11da-bd1a-00112444be1e', 'e902893a-9d22-3c7e-a7b8-d6e313b71d9f'];
const HOUR = 3600_000;

const closers: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (closers.length > 0) await closers.pop()!();
});

/** A clock the test moves by hand, shared by the sandbox (which detections exist) and idsync (window ends). */
function handClock(start: number): Clock & { set(ms: number): void } {
  let now = start;
  return { now: () => now, sleep: systemClock.sleep, set: (ms) => void (now = ms) };
}

/** Records every listing request idsync sends; `fail` may reroute one to an id the sandbox does not know (404). */
function recordingDispatcher(fail?: (path: string) => boolean): { dispatcher: Dispatcher; listings: URLSearchParams[]; paths: string[] } {
  const listings: URLSearchParams[] = [];
  const paths: string[] = [];
  const agent = new Agent();
  closers.push(() => agent.close());
  const dispatcher = agent.compose((dispatch) => (opts, handler) => {
    let p = String(opts.path);
    paths.push(p);
    if (p.includes('/people/detections/personId/')) {
      listings.push(new URLSearchParams(p.slice(p.indexOf('?') + 1)));
      if (fail?.(p)) p = p.replace(/personId\/[^/?]+/, 'personId/00000000-0000-0000-0000-000000000000');
    }
    return dispatch({ ...opts, path: p }, handler);
  });
  return { dispatcher, listings, paths };
}

function writeInputs(dir: string): { faces: string; persons: string } {
  const faces = path.join(dir, 'faces.csv');
  const persons = path.join(dir, 'persons.csv');
  writeFileSync(faces, `faceId,note\n${FACES.join(',x\n')},x\nnot-a-guid,bad\n`);
  writeFileSync(persons, `personId\n${PERSONS.join('\n')}\n`);
  return { faces, persons };
}

async function archive(s: { url: string; password: string }, dir: string, extra: Partial<ArchiveRunOptions> & { reportName: string }) {
  const lines: string[] = [];
  const config = loadConfig({
    env: {
      ...sandboxEnv(s),
      REDIS_URL: inject('redisUrl'),
      IDSYNC_REDIS_PREFIX: keyPrefixFor(dir),
      IDSYNC_STATE_DIR: path.join(dir, 'state'),
      IDSYNC_REPORT_DIR: path.join(dir, extra.reportName),
    },
    flags: { concurrency: 4, attempts: 2 },
  });
  const { reportName: _, ...rest } = extra;
  const result = await runArchive({
    ...writeInputs(dir),
    outDir: path.join(dir, 'out'),
    config,
    log: silentLogger(),
    signal: new AbortController().signal,
    out: (l) => lines.push(l),
    pollMs: 50,
    servePollMs: 100,
    ...rest,
  });
  return { ...result, lines };
}

/** Every file under out/detections, relative, sorted. */
function detectionFiles(out: string): string[] {
  const root = path.join(out, 'detections');
  if (!existsSync(root)) return [];
  return (readdirSync(root, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.jpg') && statSync(path.join(root, f)).isFile())
    .sort();
}

/** What the sandbox holds for a person's window, asked directly (the oracle of the tests). */
async function imagesInWindow(s: { url: string; password: string }, personId: string, startMs: number, endMs: number): Promise<number> {
  const login = await fetch(`${s.url}/api/v1/authenticate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username: 'migrator', password: s.password }) });
  const { token } = (await login.json()) as { token: string };
  const res = await fetch(`${s.url}/api/v1/people/detections/personId/${personId}?take=1000&epochStartMs=${startMs}&epochEndMs=${endMs}`, { headers: { authorization: `Bearer ${token}` } });
  const items = (await res.json()) as Array<{ image: string | null }>;
  return items.filter((i) => typeof i.image === 'string').length;
}

function readCsv(file: string): Array<Record<string, string>> {
  return parse(readFileSync(file), { columns: true }) as Array<Record<string, string>>;
}

const sha = (file: string) => createHash('sha256').update(readFileSync(file)).digest('hex');

/** Adds a detection through the sandbox's admin surface; its image is the sandbox's photo for it. */
async function addDetection(s: { origin: string }, personId: string, timeMs: number): Promise<void> {
  const res = await fetch(`${s.origin}/_admin/detections`, { method: 'POST', body: JSON.stringify({ personId, dateTimeUtc: new Date(timeMs).toISOString(), detector: 'Old Door' }) });
  expect(res.status).toBe(201);
}

describe('idsync archive against the sandbox', () => {
  it('archives everything once, then only the new window; keeps a changed enrollment photo\'s previous version', async () => {
    const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
    const clock = handClock(T0);
    const s = await withSandbox({ now: clock.now });
    const dir = tempDir('archive');
    const out = path.join(dir, 'out');
    const since = new Date(T0 - 4 * HOUR).toISOString();
    const rec = recordingDispatcher();

    const first = await archive(s, dir, { reportName: 'r1', since, clock, pageSize: 5, clientOptions: { dispatcher: rec.dispatcher } });
    expect(first.exitCode).toBe(1); // the invalid faceId line is rejected
    expect(first.summary!.counts).toMatchObject({ succeeded: 4, rejected: 1, failed: 0 });
    const expected1 = (await imagesInWindow(s, PERSONS[0]!, T0 - 4 * HOUR, T0)) + (await imagesInWindow(s, PERSONS[1]!, T0 - 4 * HOUR, T0));
    expect(expected1).toBeGreaterThan(4);
    const files1 = detectionFiles(out);
    expect(files1).toHaveLength(expected1);
    expect(files1[0]).toMatch(/^[0-9a-f-]{36}\/2026-11-25\/20261125T\d{6}\.\d{3}Z_[A-Za-z0-9.-]+_0\.jpg$/);
    expect(readdirSync(path.join(out, 'enrollment')).sort()).toEqual(FACES.map((f) => `${f}.jpg`).sort());
    const report1 = readCsv(path.join(dir, 'r1', 'report.csv'));
    expect(report1.map((r) => r.kind)).toEqual(['face', 'face', 'face', 'person', 'person']);
    expect(report1[2]).toMatchObject({ status: 'rejected' });
    const index1 = readCsv(path.join(out, 'index.csv'));
    expect(index1).toHaveLength(expected1 + 2);
    expect(index1.filter((r) => r.kind === 'detection').every((r) => r.personId && r.detectionTime && r.sha256?.length === 64)).toBe(true);
    const marks = JSON.parse(readFileSync(path.join(out, WATERMARK_FILE), 'utf8')) as { persons: Record<string, { watermarkMs: number }> };
    expect(marks.persons[PERSONS[0]!]!.watermarkMs).toBe(T0);
    const enrollmentSha = sha(path.join(out, 'enrollment', `${FACES[0]}.jpg`));

    // Two hours later: only the new window is listed, nothing old is written again.
    const T1 = T0 + 2 * HOUR;
    clock.set(T1);
    rec.listings.length = 0;
    const second = await archive(s, dir, { reportName: 'r2', since, clock, pageSize: 5, clientOptions: { dispatcher: rec.dispatcher } });
    expect(second.summary!.counts).toMatchObject({ failed: 0, rejected: 1 });
    expect(new Set(rec.listings.map((q) => q.get('epochStartMs')))).toEqual(new Set([String(T0 + 1)]));
    expect(new Set(rec.listings.map((q) => q.get('epochEndMs')))).toEqual(new Set([String(T1)]));
    const expected2 = (await imagesInWindow(s, PERSONS[0]!, T0 + 1, T1)) + (await imagesInWindow(s, PERSONS[1]!, T0 + 1, T1));
    const files2 = detectionFiles(out);
    expect(files2).toHaveLength(expected1 + expected2);
    expect(files2.filter((f) => files1.includes(f))).toEqual(files1);
    expect(readCsv(path.join(out, 'index.csv'))).toHaveLength(expected1 + 2 + expected2);
    const report2 = readCsv(path.join(dir, 'r2', 'report.csv'));
    expect(report2.filter((r) => r.kind === 'face' && r.status !== 'rejected').map((r) => r.action)).toEqual(['unchanged', 'unchanged']);
    expect(readdirSync(path.join(out, 'enrollment'))).toHaveLength(2);

    // The photo of one face changes: the new one takes the name, the old one is kept beside it.
    s.bumpEnrollmentVersion(FACES[0]!);
    const T2 = T1 + 60_000;
    clock.set(T2);
    const third = await archive(s, dir, { reportName: 'r3', since, clock, pageSize: 5 });
    expect(third.summary!.counts.failed).toBe(0);
    const kept = path.join(out, 'enrollment', `${FACES[0]}.20261125T140100Z.jpg`);
    expect(sha(kept)).toBe(enrollmentSha);
    expect(sha(path.join(out, 'enrollment', `${FACES[0]}.jpg`))).not.toBe(enrollmentSha);
    expect(readdirSync(path.join(out, 'enrollment'))).toHaveLength(3);
    expect(readCsv(path.join(dir, 'r3', 'report.csv'))[0]).toMatchObject({ status: 'succeeded', action: 'changed (previous kept)' });
    expect(readCsv(path.join(out, 'index.csv')).filter((r) => r.kind === 'enrollment-previous')).toHaveLength(1);
    // No temp files left behind anywhere.
    expect((readdirSync(out, { recursive: true }) as string[]).filter((f) => f.includes('.part') || f.includes('.incoming-'))).toEqual([]);

    // The archive folder is wiped: Redis still knows the watermarks, but the folder's own record is
    // gone, so the next run archives the whole history again instead of skipping it.
    const before = detectionFiles(out).length;
    rmSync(out, { recursive: true, force: true });
    const T3 = T2 + 60_000;
    clock.set(T3);
    const fourth = await archive(s, dir, { reportName: 'r4', since, clock, pageSize: 5 });
    expect(fourth.summary!.counts.failed).toBe(0);
    expect(detectionFiles(out).length).toBe(before + (await imagesInWindow(s, PERSONS[0]!, T2 + 1, T3)) + (await imagesInWindow(s, PERSONS[1]!, T2 + 1, T3)));
    expect(readdirSync(path.join(out, 'enrollment'))).toHaveLength(2);
  });

  it('without --since, the first run archives all the history the server lists; the next run only what is new', async () => {
    // Six hours after the sandbox's generated sightings begin, plus detections up to 90 days old.
    const T0 = ORIGIN_MS + 6 * HOUR;
    const clock = handClock(T0);
    const s = await withSandbox({ now: clock.now });
    const DAY = 24 * HOUR;
    const old = [90 * DAY, 30 * DAY, 2 * DAY, DAY + HOUR].map((ago) => T0 - ago);
    for (const p of PERSONS) for (const t of old) await addDetection(s, p, t);
    const dir = tempDir('archive');
    const out = path.join(dir, 'out');
    const rec = recordingDispatcher();

    const first = await archive(s, dir, { reportName: 'r1', clock, pageSize: 50, clientOptions: { dispatcher: rec.dispatcher } });
    expect(first.summary!.counts).toMatchObject({ succeeded: 4, failed: 0 });
    expect(new Set(rec.listings.map((q) => q.get('epochStartMs')))).toEqual(new Set([String(FIRST_WINDOW_START_MS)]));
    const all = (await imagesInWindow(s, PERSONS[0]!, 0, T0)) + (await imagesInWindow(s, PERSONS[1]!, 0, T0));
    // Every detection older than a day is there, with the rest of the history.
    expect(all).toBeGreaterThan(old.length * PERSONS.length);
    const files1 = detectionFiles(out);
    expect(files1).toHaveLength(all);
    for (const p of PERSONS) {
      for (const t of old) expect(files1.filter((f) => f.startsWith(`${p}/${new Date(t).toISOString().slice(0, 10)}/`))).not.toHaveLength(0);
    }
    const report1 = readCsv(path.join(dir, 'r1', 'report.csv'));
    expect(report1.filter((r) => r.kind === 'person').map((r) => r.status)).toEqual(['succeeded', 'succeeded']);

    // Two hours later, one new detection per person on top of the new sightings: only those are listed and written.
    const T1 = T0 + 2 * HOUR;
    clock.set(T1);
    for (const p of PERSONS) await addDetection(s, p, T1 - 60_000);
    rec.listings.length = 0;
    const second = await archive(s, dir, { reportName: 'r2', clock, pageSize: 50, clientOptions: { dispatcher: rec.dispatcher } });
    expect(second.summary!.counts.failed).toBe(0);
    expect(new Set(rec.listings.map((q) => q.get('epochStartMs')))).toEqual(new Set([String(T0 + 1)]));
    const fresh = (await imagesInWindow(s, PERSONS[0]!, T0 + 1, T1)) + (await imagesInWindow(s, PERSONS[1]!, T0 + 1, T1));
    expect(fresh).toBeGreaterThanOrEqual(PERSONS.length);
    const files2 = detectionFiles(out);
    expect(files2).toHaveLength(all + fresh);
    expect(files2.filter((f) => files1.includes(f))).toEqual(files1);
    expect(readCsv(path.join(out, 'index.csv')).filter((r) => r.kind === 'detection')).toHaveLength(all + fresh);
  });

  it('a failure inside one person\'s window keeps that watermark; the next run fills the gap', async () => {
    const T0 = Date.UTC(2026, 10, 25, 12, 0, 0);
    const clock = handClock(T0);
    const s = await withSandbox({ now: clock.now });
    const dir = tempDir('archive');
    const out = path.join(dir, 'out');
    const since = new Date(T0 - 6 * HOUR).toISOString();
    // The second page of PERSONS[1]'s listing fails (404: permanent, so no retry hides it).
    const failing = recordingDispatcher((p) => p.includes(PERSONS[1]!) && /[?&]skip=5(&|$)/.test(p));

    const first = await archive(s, dir, { reportName: 'r1', since, clock, pageSize: 5, clientOptions: { dispatcher: failing.dispatcher } });
    expect(first.exitCode).toBe(1);
    const report1 = readCsv(path.join(dir, 'r1', 'report.csv'));
    expect(report1.find((r) => r.personId === PERSONS[1])).toMatchObject({ status: 'failed', httpStatus: '404' });
    expect(report1.find((r) => r.personId === PERSONS[0])).toMatchObject({ status: 'succeeded' });
    const marks = JSON.parse(readFileSync(path.join(out, WATERMARK_FILE), 'utf8')) as { persons: Record<string, { watermarkMs?: number; startMs?: number }> };
    expect(marks.persons[PERSONS[1]!]!.watermarkMs).toBeUndefined();
    expect(marks.persons[PERSONS[0]!]!.watermarkMs).toBe(T0);
    const partial = detectionFiles(out).filter((f) => f.startsWith(PERSONS[1]!));
    expect(partial.length).toBeGreaterThan(0); // the first page was stored

    // Next run, an hour later and WITHOUT --since: the failed person is listed again from its first start.
    const T1 = T0 + HOUR;
    clock.set(T1);
    const rec = recordingDispatcher();
    const second = await archive(s, dir, { reportName: 'r2', clock, pageSize: 5, clientOptions: { dispatcher: rec.dispatcher } });
    expect(second.summary!.counts.failed).toBe(0);
    const starts = new Map(rec.listings.map((q) => [q.get('epochEndMs'), q.get('epochStartMs')]));
    expect(starts.size).toBe(1);
    const startsByPerson = new Set(rec.listings.map((q) => q.get('epochStartMs')));
    expect(startsByPerson).toEqual(new Set([String(T0 - 6 * HOUR), String(T0 + 1)]));
    const all1 = await imagesInWindow(s, PERSONS[1]!, T0 - 6 * HOUR, T1);
    const files = detectionFiles(out).filter((f) => f.startsWith(PERSONS[1]!));
    expect(files).toHaveLength(all1);
    expect(files.filter((f) => partial.includes(f))).toEqual(partial);
    const redis = new Redis(inject('redisUrl'));
    closers.push(async () => void redis.disconnect());
    const key = archiveKeyFor(s.url, out);
    expect(await redis.hget(new ApiKeys(keyPrefixFor(dir), apiKey(s.url)).archive(key).watermarks, PERSONS[1]!)).toBe(String(T1));
  });

  it('with --cron and two worker processes on one Redis, each tick runs exactly once', async () => {
    const s = await withSandbox();
    const dir = tempDir('archive');
    const out = path.join(dir, 'out');
    const reportRoot = path.join(dir, 'reports');
    const controllers = [new AbortController(), new AbortController()];
    // Two processes' worth of idsync, started the same way: both upsert the same scheduler.
    const running = controllers.map((c, i) =>
      archive(s, dir, { reportName: 'reports', cron: '* * * * * *', signal: c.signal, since: new Date(Date.now() - HOUR).toISOString(), outDir: out, ...(i === 1 ? { graceMs: 5000 } : {}) }),
    );
    const redis = new Redis(inject('redisUrl'));
    closers.push(async () => void redis.disconnect());
    const key = archiveKeyFor(s.url, out);
    const reportsDone = () => (existsSync(reportRoot) ? readdirSync(reportRoot).filter((d) => existsSync(path.join(reportRoot, d, 'summary.json'))) : []);
    const deadline = Date.now() + 20_000;
    while (reportsDone().length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    controllers.forEach((c) => c.abort());
    const results = await Promise.all(running);
    expect(results.map((r) => r.exitCode)).toEqual([130, 130]);
    const keys = new ApiKeys(keyPrefixFor(dir), apiKey(s.url));
    const queue = new Queue(CONTROL_QUEUE, { connection: redis, prefix: keys.queuePrefix });
    await queue.removeJobScheduler(schedulerIdFor(key));
    await queue.close();

    const ticks = await redis.lrange(keys.archive(key).ticks, 0, -1);
    expect(ticks.length).toBeGreaterThanOrEqual(3);
    expect(new Set(ticks).size).toBe(ticks.length); // no tick planned twice
    const done = reportsDone();
    expect(done.length).toBeGreaterThanOrEqual(3);
    for (const runId of done) {
      expect(ticks).toContain(runId);
      const summary = JSON.parse(readFileSync(path.join(reportRoot, runId, 'summary.json'), 'utf8')) as { rows: number; counts: { failed: number } };
      expect(summary.rows).toBe(5);
      expect(summary.counts.failed).toBe(0);
    }
    expect(readdirSync(path.join(out, 'enrollment'))).toHaveLength(2);
  });
});
