import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { Writable } from 'node:stream';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { parse } from 'csv-parse/sync';
import { describe, expect, inject, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { IDSYNC_BIN, tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, keyPrefixFor, PEOPLE } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import { startWatch, type WatchArgs } from '../helpers/watch-runs.ts';

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A JSON logger whose lines the test reads. */
function capturedLog() {
  const lines: Array<{ msg: string } & Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString('utf8')) as never);
      cb();
    },
  });
  return { lines, log: createLogger({ level: 'info', format: 'json', destination }) };
}

/** 5xx answers the sandbox sent so far. */
function serverErrors(s: { stats(): { status: Record<string, number> } }): number {
  const st = s.stats().status;
  return (st['500'] ?? 0) + (st['502'] ?? 0) + (st['503'] ?? 0);
}

/** Every file under a folder, relative, sorted ([] when it does not exist). */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return (readdirSync(dir, { recursive: true, withFileTypes: true }) as Array<{ isFile(): boolean; parentPath: string; name: string }>)
    .filter((e) => e.isFile())
    .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
    .sort();
}

async function until(what: string, ok: () => boolean, timeoutMs = 20_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function setup(s: { url: string; password: string }, extra: Partial<WatchArgs> = {}): WatchArgs {
  const root = tempDir('watch');
  const dir = path.join(root, 'drop');
  mkdirSync(dir);
  return { dir, apiUrl: s.url, password: s.password, stateDir: path.join(root, 'state'), reportDir: path.join(root, 'reports'), keyPrefix: keyPrefixFor(root), ...extra };
}

describe('idsync watch against the sandbox', () => {
  it('uploads a file written in chunks once, whole, named by its sidecar, and sets strays aside with reasons', async () => {
    const s = await withSandbox();
    const args = setup(s, { settleMs: 1200 });
    const { dir } = args;
    const person = PEOPLE[0]!;
    mkdirSync(path.join(dir, person));
    mkdirSync(path.join(dir, 'not-a-person'));
    const w = await startWatch(args);

    // Strays and ignored names, written at once.
    writeFileSync(path.join(dir, 'stray.pdf'), 'outside any person folder');
    writeFileSync(path.join(dir, 'not-a-person', 'x.pdf'), 'in a folder that is not a GUID');
    writeFileSync(path.join(dir, person, 'empty.pdf'), '');
    writeFileSync(path.join(dir, person, 'bad.pdf'), 'has a broken sidecar');
    writeFileSync(path.join(dir, person, 'bad.pdf.json'), '{"name": ');
    writeFileSync(path.join(dir, person, 'download.pdf.crdownload'), 'browser still downloading');
    writeFileSync(path.join(dir, person, '~$letter.docx'), 'office lock');
    writeFileSync(path.join(dir, person, '.hidden.pdf'), 'dotfile');
    symlinkSync('/etc/hostname', path.join(dir, person, 'link.pdf'));

    // The real document: sidecar first, then the file in three chunks about 0.7 s apart.
    writeFileSync(path.join(dir, person, 'passport.pdf.json'), JSON.stringify({ name: 'Passport', description: 'front page' }));
    const chunks = [randomBytes(40_000), randomBytes(40_000), randomBytes(40_000)];
    const handle = await open(path.join(dir, person, 'passport.pdf'), 'w');
    for (const [i, chunk] of chunks.entries()) {
      await handle.write(chunk);
      await handle.sync();
      if (i < chunks.length - 1) await sleep(700);
    }
    await handle.close();
    const whole = Buffer.concat(chunks);

    const records = await w.waitForRecords(5);
    await sleep(300);
    const result = await w.stop();
    expect(result.exitCode).toBe(130);

    const docs = s.documents();
    expect(docs).toHaveLength(1);
    expect(docs[0]).toMatchObject({ personId: person, name: 'Passport', description: 'front page', bytes: whole.length, sha256: sha(whole), uploads: 1, fileName: 'passport.pdf' });

    const uploaded = records.find((r) => r.file === `${person}/passport.pdf`)!;
    expect(uploaded).toMatchObject({ status: 'succeeded', action: 'uploaded', personId: person, sha256: sha(whole), bytes: whole.length, movedTo: `.processed/${person}/passport.pdf` });
    expect(existsSync(path.join(dir, '.processed', person, 'passport.pdf'))).toBe(true);
    expect(existsSync(path.join(dir, '.processed', person, 'passport.pdf.json'))).toBe(true);

    const rejected = Object.fromEntries(records.filter((r) => r.status === 'rejected').map((r) => [r.file, r.error]));
    expect(rejected).toEqual({
      'stray.pdf': expect.stringContaining('not inside a person folder'),
      'not-a-person/x.pdf': expect.stringContaining('not a person id'),
      [`${person}/empty.pdf`]: 'empty file (0 bytes)',
      [`${person}/bad.pdf`]: expect.stringContaining('sidecar is not valid JSON'),
    });
    const note = JSON.parse(readFileSync(path.join(dir, '.failed', 'stray.pdf.error.json'), 'utf8')) as { reason: string; time: string };
    expect(note.reason).toContain('not inside a person folder');
    expect(existsSync(path.join(dir, '.failed', 'not-a-person', 'x.pdf'))).toBe(true);
    expect(existsSync(path.join(dir, '.failed', person, 'bad.pdf.json'))).toBe(true);
    // Ignored names stay where they are, untouched.
    expect(readdirSync(path.join(dir, person)).sort()).toEqual(['.hidden.pdf', 'download.pdf.crdownload', 'link.pdf', '~$letter.docx']);

    // The daily ingest log, CSV and JSONL, one line per file.
    const day = new Date().toISOString().slice(0, 10);
    const csv = parse(readFileSync(path.join(args.reportDir, `ingest-${day}.csv`)), { columns: true }) as Array<Record<string, string>>;
    expect(csv).toHaveLength(5);
    expect(csv.find((r) => r.status === 'succeeded')).toMatchObject({ file: `${person}/passport.pdf`, documentId: docs[0]!.documentId, sha256: sha(whole) });
    expect(readFileSync(path.join(args.reportDir, `ingest-${day}.jsonl`), 'utf8').trim().split('\n')).toHaveLength(5);
  });

  it('after a stop between upload and move, the next start moves the file without uploading it again', async () => {
    const s = await withSandbox();
    const args = setup(s);
    const person = PEOPLE[1]!;
    mkdirSync(path.join(args.dir, person));
    const body = randomBytes(5000);
    writeFileSync(path.join(args.dir, person, 'card.png'), body);

    // First run: the upload finishes, then the move fails (a file stands where the person's
    // processed folder would go), as a crash between upload and move would leave it.
    const blocker = path.join(args.dir, '.processed', person);
    mkdirSync(path.dirname(blocker));
    writeFileSync(blocker, 'not a folder');
    const first = await startWatch(args);
    const [moved] = await first.waitForRecords(1);
    await first.stop();
    expect(moved).toMatchObject({ status: 'succeeded', movedTo: '' });
    expect(existsSync(path.join(args.dir, person, 'card.png'))).toBe(true);
    expect(s.documents().map((d) => d.uploads)).toEqual([1]);
    rmSync(blocker);

    // Second run, same Redis and state: the earlier result is found; nothing is sent.
    s.resetStats();
    const second = await startWatch(args);
    const [rec] = await second.waitForRecords(1);
    await second.stop();
    expect(rec).toMatchObject({ status: 'skipped', action: 'done-earlier (uploaded)', movedTo: `.processed/${person}/card.png` });
    expect(s.stats().uploadRequests).toBe(0);

    // The same content dropped again, now on a Redis whose state is gone: the ledger alone stops a second upload.
    writeFileSync(path.join(args.dir, person, 'card-copy.png'), body);
    const third = await startWatch({ ...args, keyPrefix: freshKeyPrefix() });
    const [again] = await third.waitForRecords(1);
    await third.stop();
    expect(again).toMatchObject({ status: 'skipped', action: 'in-ledger', movedTo: `.processed/${person}/card-copy.png` });
    expect(s.stats().uploadRequests).toBe(0);
    expect(s.documents().map((d) => d.uploads)).toEqual([1]);
  });

  it('uploads 1,000 files dropped at once within --concurrency and --rate', async () => {
    const s = await withSandbox({ faults: { latencyMs: 5 } });
    const args = setup(s, { settleMs: 300, flags: { concurrency: 4, rate: 120 } });
    const w = await startWatch(args);
    for (const p of PEOPLE) mkdirSync(path.join(args.dir, p));
    for (let i = 0; i < 1000; i++) writeFileSync(path.join(args.dir, PEOPLE[i % PEOPLE.length]!, `doc-${i}.txt`), `document ${i} ${randomBytes(16).toString('hex')}`);
    const records = await w.waitForRecords(1000, 40_000);
    await w.stop();
    expect(records.filter((r) => r.status === 'succeeded')).toHaveLength(1000);
    const docs = s.documents();
    expect(docs).toHaveLength(1000);
    expect(docs.every((d) => d.uploads === 1)).toBe(true);
    const stats = s.stats();
    expect(stats.maxInFlight).toBeLessThanOrEqual(4);
    // One process: the client's request spacer holds --rate in every clock second (BullMQ's
    // global limiter, in windows not aligned to clock seconds, shares it across processes).
    const perSecond = stats.requestsPerSecond.map((x) => x.count);
    expect(Math.max(...perSecond)).toBeLessThanOrEqual(120);
    // The limit did bind: 1,000 uploads took at least 1000 / 120 seconds.
    expect(perSecond.length).toBeGreaterThanOrEqual(8);
    for (const p of PEOPLE) expect(readdirSync(path.join(args.dir, p))).toEqual([]);
    expect(readdirSync(path.join(args.dir, '.processed', PEOPLE[0]!))).toHaveLength(250);
  }, 60_000);

  it('picks up files in polling mode, and a name clash in the processed folder gets a suffix', async () => {
    const s = await withSandbox();
    const args = setup(s, { poll: true, pollIntervalMs: 100 });
    const person = PEOPLE[2]!;
    mkdirSync(path.join(args.dir, '.processed', person), { recursive: true });
    writeFileSync(path.join(args.dir, '.processed', person, 'scan.jpg'), 'an earlier scan with the same name');
    const w = await startWatch(args);
    expect(w.polling).toBe(true);
    mkdirSync(path.join(args.dir, person));
    writeFileSync(path.join(args.dir, person, 'scan.jpg'), randomBytes(2000));
    const [rec] = await w.waitForRecords(1);
    await w.stop();
    expect(rec).toMatchObject({ status: 'succeeded', movedTo: `.processed/${person}/scan (1).jpg` });
    expect(readFileSync(path.join(args.dir, '.processed', person, 'scan.jpg'), 'utf8')).toBe('an earlier scan with the same name');
    expect(s.documents()).toHaveLength(1);
  });

  it('polls on its own when the folder is on a network mount, and deletes with --delete', async () => {
    const s = await withSandbox();
    const args = setup(s, { deleteProcessed: true, pollIntervalMs: 100 });
    const mounts = `1 0 0:1 / / rw - ext4 /dev/sda1 rw\n2 1 0:2 / ${path.dirname(args.dir)} rw - nfs4 nas:/export rw\n`;
    const w = await startWatch({ ...args, mounts: () => mounts });
    expect(w.polling).toBe(true);
    const person = PEOPLE[3]!;
    mkdirSync(path.join(args.dir, person));
    writeFileSync(path.join(args.dir, person, 'id.pdf'), randomBytes(1000));
    const [rec] = await w.waitForRecords(1);
    await w.stop();
    expect(rec).toMatchObject({ status: 'succeeded', movedTo: '' });
    expect(readdirSync(path.join(args.dir, person))).toEqual([]);
    expect(existsSync(path.join(args.dir, '.processed'))).toBe(false);
  });

  it('moves a file the API refuses for good to the failed folder with its HTTP status', async () => {
    const s = await withSandbox({ users: [{ username: 'migrator', password: 'reader-only-pass', permissions: ['Read Identity Files'] }] });
    const args = setup({ url: s.url, password: 'reader-only-pass' });
    const person = PEOPLE[0]!;
    mkdirSync(path.join(args.dir, person));
    writeFileSync(path.join(args.dir, person, 'refused.pdf'), randomBytes(100));
    const w = await startWatch(args);
    const [rec] = await w.waitForRecords(1);
    await w.stop();
    expect(rec).toMatchObject({ status: 'failed', httpStatus: 403, movedTo: `.failed/${person}/refused.pdf` });
    const note = JSON.parse(readFileSync(path.join(args.dir, '.failed', person, 'refused.pdf.error.json'), 'utf8')) as Record<string, unknown>;
    // The retry budget (default 6 h) is for passing failures only: a 403 goes to .failed at its first try.
    expect(note).toMatchObject({ httpStatus: 403, attempts: 1 });
    expect(s.stats().status['403']).toBe(1);
    expect(typeof note.reason).toBe('string');
    expect(typeof note.time).toBe('string');
  });

  // Issue #17's "60 s outage" at a smaller scale: the API answers 5xx to everything for a while (as
  // long as the 3-6 s in which five attempts used to end in .failed), under a retry budget longer
  // than the outage and a --attempts of 2 that the budget overrides; waits of at most 200 ms stand
  // in for the default 5 min so the test takes seconds.
  it('rides out an API outage on its retry budget: every file is uploaded once when the API is back, .failed stays empty', async () => {
    const s = await withSandbox();
    const { lines, log } = capturedLog();
    const args = setup(s, { flags: { attempts: 2, retryBudget: '60s', retryMaxDelay: '200ms' }, heartbeatMs: 250, apiDownNoticeMs: 300, log });
    const person = PEOPLE[0]!;
    mkdirSync(path.join(args.dir, person));
    const w = await startWatch(args);
    s.setFaults({ failRate: 1 });
    const bodies = [0, 1, 2].map(() => randomBytes(3000));
    bodies.forEach((b, i) => writeFileSync(path.join(args.dir, person, `scan-${i}.pdf`), b));
    const outageStart = Date.now();
    // Down for longer than --attempts' tries took, and each file tried well beyond them.
    await until('files tried again and again while the API is down', () => serverErrors(s) >= 3 * 8 && Date.now() - outageStart >= 3000);
    expect(w.records).toEqual([]);
    expect(filesUnder(path.join(args.dir, '.failed'))).toEqual([]);
    expect(lines.some((l) => l.msg.startsWith('watch: the API is not answering (E_HTTP_STATUS 50'))).toBe(true);
    const downBeat = lines.filter((l) => l.msg.startsWith('watch heartbeat: the API has not answered for')).at(-1);
    expect(downBeat).toMatchObject({ pending: 3, uploaded: 0, failed: 0 });
    expect(downBeat!.apiDownForMs as number).toBeGreaterThanOrEqual(300);
    expect(downBeat!.msg).toContain('until 1m after their first failure (--retry-budget)');

    s.setFaults({});
    const records = await w.waitForRecords(3);
    await until('a heartbeat after the outage', () => lines.at(-1)?.msg === 'watch heartbeat');
    await w.stop();
    expect(records.map((r) => r.status)).toEqual(['succeeded', 'succeeded', 'succeeded']);
    expect(Math.min(...records.map((r) => r.attempts ?? 0))).toBeGreaterThan(2);
    const docs = s.documents();
    expect(docs.map((d) => d.sha256).sort()).toEqual(bodies.map(sha).sort());
    expect(docs.every((d) => d.uploads === 1)).toBe(true);
    expect(filesUnder(path.join(args.dir, '.failed'))).toEqual([]);
    expect(filesUnder(path.join(args.dir, '.processed'))).toEqual([0, 1, 2].map((i) => path.join(person, `scan-${i}.pdf`)));
    expect(lines.some((l) => /^watch: the API answers again after \S+ down$/.test(l.msg))).toBe(true);
  });

  it('a file whose retry budget is spent during an outage goes to .failed with its last error', async () => {
    const s = await withSandbox();
    const args = setup(s, { flags: { attempts: 1, retryBudget: '1s', retryMaxDelay: '100ms' } });
    const person = PEOPLE[2]!;
    mkdirSync(path.join(args.dir, person));
    const w = await startWatch(args);
    s.setFaults({ failRate: 1 });
    const started = Date.now();
    writeFileSync(path.join(args.dir, person, 'late.pdf'), randomBytes(100));
    const [rec] = await w.waitForRecords(1);
    const took = Date.now() - started;
    await w.stop();
    expect(rec).toMatchObject({ status: 'failed', movedTo: `.failed/${person}/late.pdf` });
    expect(rec!.attempts).toBeGreaterThan(3);
    expect(took).toBeGreaterThanOrEqual(1000);
    const note = JSON.parse(readFileSync(path.join(args.dir, '.failed', person, 'late.pdf.error.json'), 'utf8')) as Record<string, unknown>;
    expect(note).toMatchObject({ attempts: rec!.attempts });
    // The last try either sent (5xx) or, after an ambiguous one, could not check first (its GET answered 5xx).
    expect(['E_SERVER', 'E_CHECK_FAILED']).toContain(note.errorCode);
    if (note.errorCode === 'E_SERVER') expect([500, 502, 503]).toContain(note.httpStatus);
    expect(s.documents()).toEqual([]);
  });

  it('--retry-failed puts failed and set-aside files back with their sidecars, drops their notes, and watches as usual', async () => {
    const s = await withSandbox();
    const person = PEOPLE[1]!;
    // First: an outage with the budget off (--retry-budget 0, one attempt), as before issue #17: the files land in .failed.
    const args = setup(s, { flags: { attempts: 1, retryBudget: '0' } });
    mkdirSync(path.join(args.dir, person));
    const first = await startWatch(args);
    // Faults on after the login: only the uploads meet them.
    s.setFaults({ failRate: 1 });
    writeFileSync(path.join(args.dir, person, 'id.pdf.json'), JSON.stringify({ name: 'Identity card' }));
    writeFileSync(path.join(args.dir, person, 'id.pdf'), randomBytes(500));
    writeFileSync(path.join(args.dir, person, 'report.json'), '{"a document": "that happens to be JSON"}');
    writeFileSync(path.join(args.dir, 'stray.pdf'), 'outside any person folder');
    const failed = await first.waitForRecords(3);
    await first.stop();
    expect(failed.map((r) => `${r.file} ${r.status}`).sort()).toEqual([`${person}/id.pdf failed`, `${person}/report.json failed`, 'stray.pdf rejected']);
    expect(filesUnder(path.join(args.dir, '.failed'))).toEqual([
      `${person}/id.pdf`,
      `${person}/id.pdf.error.json`,
      `${person}/id.pdf.json`,
      `${person}/report.json`,
      `${person}/report.json.error.json`,
      'stray.pdf',
      'stray.pdf.error.json',
    ]);
    // A file of the same name dropped meanwhile is never overwritten.
    writeFileSync(path.join(args.dir, person, 'id.pdf'), randomBytes(400));

    s.setFaults({});
    const second = await startWatch({ ...args, flags: {}, retryFailed: true });
    const records = await second.waitForRecords(4);
    await second.stop();
    expect(records.map((r) => `${r.file} ${r.status}`).sort()).toEqual([`${person}/id (1).pdf succeeded`, `${person}/id.pdf succeeded`, `${person}/report.json succeeded`, 'stray.pdf rejected']);
    expect(s.documents().map((d) => d.name).sort()).toEqual(['Identity card', 'id', 'report']);
    // Only the stray is set aside again, with a new note; no old note is left anywhere in the drop folder.
    expect(filesUnder(path.join(args.dir, '.failed'))).toEqual(['stray.pdf', 'stray.pdf.error.json']);
    expect(filesUnder(args.dir).filter((f) => !f.startsWith('.'))).toEqual([]);
    expect(filesUnder(path.join(args.dir, '.processed'))).toEqual([`${person}/id (1).pdf`, `${person}/id (1).pdf.json`, `${person}/id.pdf`, `${person}/report.json`].sort());
  });

  it('runs as `idsync watch DIR` and exits 130 on SIGTERM', async () => {
    const s = await withSandbox();
    const args = setup(s);
    const person = PEOPLE[0]!;
    mkdirSync(path.join(args.dir, person));
    writeFileSync(path.join(args.dir, person, 'cli.pdf'), randomBytes(300));
    const child = spawn(process.execPath, [IDSYNC_BIN, 'watch', args.dir, '--settle-ms', '200', '--api-url', s.url, '--username', 'migrator', '--state-dir', args.stateDir, '--report-dir', args.reportDir], {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', IDSYNC_PASSWORD: s.password, REDIS_URL: inject('redisUrl'), IDSYNC_REDIS_PREFIX: args.keyPrefix, IDSYNC_LOG_FORMAT: 'json' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += String(d)));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const deadline = Date.now() + 20_000;
    while (!existsSync(path.join(args.dir, '.processed', person, 'cli.pdf')) && Date.now() < deadline) await sleep(100);
    child.kill('SIGTERM');
    expect(await exited).toBe(130);
    expect(s.documents()).toHaveLength(1);
    expect(stderr).toContain('watch stopped');
  }, 30_000);
});
