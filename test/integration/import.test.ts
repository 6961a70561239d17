import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { randomBytes, randomUUID } from 'node:crypto';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { afterEach, describe, expect, it } from 'vitest';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.ts';
import { AuthRefusedError, ManifestError } from '../../src/errors.ts';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix, PEOPLE, runJob, writeImportManifest, type RunArgs } from '../helpers/job-runs.ts';

const ALL = ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] as const;
const PASSWORD = 'migrator-pass-1';

let sandbox: Sandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

async function start(options: Parameters<typeof startSandbox>[0] = {}): Promise<Sandbox> {
  sandbox = await startSandbox({ admin: true, prefix: '/identities', users: [{ username: 'migrator', password: PASSWORD, permissions: [...ALL] }], ...options });
  return sandbox;
}

function baseArgs(s: Sandbox, manifest: string, dir: string, extra: Partial<RunArgs> = {}): RunArgs {
  return { command: 'import', manifest, apiUrl: s.url, username: 'migrator', password: PASSWORD, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'report'), ...extra };
}

function readReport(dir: string): Array<Record<string, string>> {
  return parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
}

describe('idsync import against the sandbox', () => {
  it('uploads every row once with one request per document, and a rerun sends nothing', async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 24);
    const first = await runJob(baseArgs(s, manifest, dir));
    expect(first.exitCode).toBe(0);
    expect(first.summary.counts).toEqual({ succeeded: 24, skipped: 0, failed: 0, rejected: 0, interrupted: 0 });
    const docs = s.documents();
    expect(docs).toHaveLength(24);
    expect(docs.every((d) => d.uploads === 1)).toBe(true);
    const stats = s.stats();
    expect(stats.uploadRequests).toBe(24);
    expect(stats.logins).toBe(1);
    expect(stats.requests).toBe(25); // one login + one request per document: no existence checks on a brand-new run

    const report = readReport(path.join(dir, 'report'));
    expect(report.map((r) => r.row)).toEqual(Array.from({ length: 24 }, (_, i) => String(i + 1)));
    expect(report[0]).toMatchObject({ status: 'succeeded', action: 'uploaded', personId: PEOPLE[0], batch: 'B0', attempts: '1' });
    expect(report[0]!.documentId).toMatch(/^[0-9a-f-]{36}$/);
    const stored = docs.find((d) => d.documentId === report[0]!.documentId)!;
    expect(stored.sha256).toBe(report[0]!.sha256);
    expect(stored.name).toBe('Document 0');

    s.resetStats();
    const rerun = await runJob(baseArgs(s, manifest, dir, { reportDir: path.join(dir, 'report2') }));
    expect(rerun.exitCode).toBe(0);
    expect(rerun.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);
    // Rows done by the earlier run still say which row they are, from the manifest.
    const again = readReport(path.join(dir, 'report2'));
    expect(again[0]).toMatchObject({ status: 'skipped', action: 'done-earlier', personId: report[0]!.personId, file: report[0]!.file });

    // Redis state gone (another database): the ledger alone keeps it from sending anything.
    s.resetStats();
    const fresh = await runJob(baseArgs(s, manifest, dir, { reportDir: path.join(dir, 'report3'), keyPrefix: freshKeyPrefix() }));
    expect(fresh.exitCode).toBe(0);
    expect(fresh.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);
    expect(readReport(path.join(dir, 'report3'))[0]!.action).toBe('in-ledger');

    // Another machine (no ledger, no Redis state) with --check-existing: asks, sends nothing.
    s.resetStats();
    const other = await runJob(baseArgs(s, manifest, dir, { stateDir: path.join(dir, 'other-state'), reportDir: path.join(dir, 'report4'), keyPrefix: freshKeyPrefix(), flags: { checkExisting: true } }));
    expect(other.summary.counts.skipped).toBe(24);
    expect(s.stats().uploadRequests).toBe(0);
    expect(s.documents().every((d) => d.uploads === 1)).toBe(true);
  });

  it("ends when its own workers finish the last row, without waiting for the wait loop's next look", async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 12);
    // The loop looks once right after the enqueue; without the wake-up it would sleep 10 minutes.
    const run = await runJob(baseArgs(s, manifest, dir, { pollMs: 600_000 }));
    expect(run.exitCode).toBe(0);
    expect(run.summary.counts.succeeded).toBe(12);
  }, 20_000);

  it('rejects invalid rows with reasons, goes on, and failed.csv retries exactly those', async () => {
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 3, {
      extraRows: [`not-a-guid,files/doc-0.bin,Bad person,,,X`, `${PEOPLE[0]},files/missing.pdf,Missing,,,X`, `${PEOPLE[0]},files/doc-1.bin,,,,X`, `${PEOPLE[1]},files/doc-2.bin,Bad id,,123,X`],
    });
    const r = await runJob(baseArgs(s, manifest, dir));
    expect(r.exitCode).toBe(1);
    expect(r.summary.counts).toEqual({ succeeded: 3, skipped: 0, failed: 0, rejected: 4, interrupted: 0 });
    const report = readReport(path.join(dir, 'report'));
    expect(report.slice(3).map((x) => [x.status, x.error])).toEqual([
      ['rejected', 'personId "not-a-guid" is not a GUID'],
      ['rejected', 'file files/missing.pdf does not exist'],
      ['rejected', 'name is empty'],
      ['rejected', 'publicId "123" is not a GUID'],
    ]);
    const failed = parse(readFileSync(path.join(dir, 'report', 'failed.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(failed).toHaveLength(4);
    expect(failed[1]!.file).toBe(path.join(dir, 'files/missing.pdf'));
    expect(r.lines.join('\n')).toContain('failed.csv');
  });

  it('never skips a row whose explicit publicId is already stored with other content', async () => {
    const s = await start();
    const dir = tempDir();
    const id = '0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d';
    const manifest = writeImportManifest(dir, 2, { extraRows: [] });
    const text = readFileSync(manifest, 'utf8').trim().split('\n');
    // Both data rows name the same person and publicId but are different files.
    const rows = text.slice(1).map((line) => line.replace(/,,B(\d)$/, `,${id},B$1`).replace(/^[^,]+/, PEOPLE[0]!));
    writeFileSync(manifest, `${[text[0], ...rows].join('\n')}\n`);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { concurrency: 1 } }));
    expect(r.exitCode).toBe(1);
    const report = readReport(path.join(dir, 'report'));
    expect(report.map((x) => x.status).sort()).toEqual(['failed', 'succeeded']);
    const failed = report.find((x) => x.status === 'failed')!;
    expect(failed.error).toMatch(/is already stored with other content/);
    expect(failed.attempts).toBe('1');
    expect(s.documents()).toHaveLength(1);
    expect(s.documents()[0]!.uploads).toBe(1);
  });

  it('does not retry 403, and fails fast on refused credentials', async () => {
    const s = await start({ users: [{ username: 'reader', password: PASSWORD, permissions: ['Read Identity Files'] }, { username: 'migrator', password: PASSWORD, permissions: [...ALL] }] });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 2);
    const r = await runJob(baseArgs(s, manifest, dir, { username: 'reader' }));
    expect(r.exitCode).toBe(1);
    const report = readReport(path.join(dir, 'report'));
    expect(report.map((x) => [x.status, x.httpStatus, x.attempts])).toEqual([
      ['failed', '403', '1'],
      ['failed', '403', '1'],
    ]);
    await expect(runJob(baseArgs(s, manifest, dir, { password: 'wrong' }))).rejects.toBeInstanceOf(AuthRefusedError);
  });

  it('stores every document exactly once under mixed faults', async () => {
    const s = await start({ tokenTtlSeconds: 3, faults: { seed: 7, failRate: 0.05, throttleRate: 0.03, retryAfterSeconds: 1, resetRate: 0.03, lostResponseRate: 0.03, revokeEverySeconds: 2 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 60);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { attempts: 8 } }));
    expect(r.summary.counts).toEqual({ succeeded: 60, skipped: 0, failed: 0, rejected: 0, interrupted: 0 });
    const docs = s.documents();
    expect(docs).toHaveLength(60);
    expect(docs.filter((d) => d.uploads !== 1)).toEqual([]);
    const stats = s.stats();
    expect((stats.status['500'] ?? 0) + (stats.status['502'] ?? 0) + (stats.status['503'] ?? 0) + (stats.status['429'] ?? 0)).toBeGreaterThan(0);
  }, 120_000);

  it('stops with exit 2 naming the missing permission when the first 20 rows are all refused (403), instead of failing every row (#16)', async () => {
    const s = await start({ users: [{ username: 'reader', password: PASSWORD, permissions: ['Read Identity Files'] }] });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 120);
    const r = await runJob(baseArgs(s, manifest, dir, { username: 'reader', flags: { concurrency: 2 } }));
    expect(r.exitCode).toBe(2);
    expect(r.ending).toBe('fatal');
    const c = r.summary.counts;
    expect(c.failed).toBeGreaterThanOrEqual(20);
    expect(c.failed).toBeLessThan(40);
    expect(c.succeeded + c.skipped).toBe(0);
    expect(c.failed + c.interrupted).toBe(120);
    expect(r.summary.errors).toEqual({ E_FORBIDDEN: c.failed, E_INTERRUPTED: c.interrupted });
    const steps = r.lines.filter((l) => /resume|retry|once that is fixed/.test(l));
    expect(steps).toHaveLength(1);
    expect(steps[0]).toMatch(/^stopped: the first 20 rows all failed with 403 \(POST \/api\/v1\/people\/fileDocuments\/upload answered 403\): the account idsync logs in with lacks the permission "Add Identity Files"/);
    const report = readReport(path.join(dir, 'report'));
    expect(report.find((x) => x.status === 'failed')).toMatchObject({ httpStatus: '403', errorCode: 'E_FORBIDDEN', retryable: 'false' });
    expect(report.find((x) => x.status === 'interrupted')).toMatchObject({ errorCode: 'E_INTERRUPTED', retryable: 'true' });
    expect(s.stats().status['403']).toBe(c.failed);
  });

  it('names "Read Identity Files" when --check-existing is refused, and says the check failed, not the upload (#16)', async () => {
    const s = await start({ users: [{ username: 'adder', password: PASSWORD, permissions: ['Add Identity Files'] }] });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 30);
    const r = await runJob(baseArgs(s, manifest, dir, { username: 'adder', flags: { concurrency: 1, checkExisting: true } }));
    expect(r.exitCode).toBe(2);
    expect(r.lines.join('\n')).toContain('lacks the permission "Read Identity Files"');
    const failed = readReport(path.join(dir, 'report')).filter((x) => x.status === 'failed');
    expect(failed.length).toBeGreaterThanOrEqual(20);
    expect(failed.length).toBeLessThan(30);
    expect(failed[0]).toMatchObject({ errorCode: 'E_CHECK_FAILED', httpStatus: '403', retryable: 'false' });
    expect(failed[0]!.error).toMatch(/^could not check whether document [0-9a-f-]{36} exists before sending it, so nothing was sent: GET \/identities\/api\/v1\/people\/.*\/data answered 403/);
    expect(s.stats().uploadRequests).toBe(0);
  });

  it('keeps requests in flight within --concurrency and each second within --rate', async () => {
    const s = await start({ faults: { latencyMs: 40 } });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 40);
    const r = await runJob(baseArgs(s, manifest, dir, { flags: { concurrency: 3, rate: 15 } }));
    expect(r.exitCode).toBe(0);
    const stats = s.stats();
    expect(stats.maxInFlight).toBeLessThanOrEqual(3);
    const perSecond = stats.requestsPerSecond.map((x) => x.count);
    expect(Math.max(...perSecond)).toBeLessThanOrEqual(15);
  }, 60_000);
});

describe('manifests as people write them, against the sandbox (#17.4, #15.8, #15.9)', () => {
  function writeFiles(dir: string, names: string[]): void {
    mkdirSync(path.join(dir, 'files'), { recursive: true });
    for (const name of names) writeFileSync(path.join(dir, 'files', name), `content of ${name} ${randomUUID()}`);
  }

  it('imports `PersonID;File;Name` with --delimiter ";" and with the delimiter detected', async () => {
    const s = await start();
    const dir = tempDir();
    writeFiles(dir, ['a.txt', 'b.txt']);
    const manifest = path.join(dir, 'semicolons.csv');
    writeFileSync(manifest, `PersonID;File;Name;Batch\r\n${PEOPLE[0]};files/a.txt;Smith, John;B1\r\n${PEOPLE[1]};files/b.txt;Müller, Eva;B2\r\n`);
    const detected = await runJob(baseArgs(s, manifest, dir));
    expect(detected.exitCode).toBe(0);
    expect(detected.summary.counts.succeeded).toBe(2);
    expect(s.documents().map((d) => d.name).sort()).toEqual(['Müller, Eva', 'Smith, John']);
    expect(readReport(path.join(dir, 'report'))[0]).toMatchObject({ status: 'succeeded', personId: PEOPLE[0], Batch: 'B1' });

    // The same with --delimiter ';' (another state folder and Redis database, so it sends again).
    const other = tempDir();
    writeFiles(other, ['a.txt']);
    const second = path.join(other, 'semicolons.csv');
    writeFileSync(second, `PersonID;File;Name\n${PEOPLE[2]};files/a.txt;Doe, Jane\n`);
    const given = await runJob(baseArgs(s, second, other, { keyPrefix: freshKeyPrefix(), flags: { delimiter: ';' } }));
    expect(given.exitCode).toBe(0);
    expect(s.documents().find((d) => d.personId === PEOPLE[2])!.name).toBe('Doe, Jane');
  });

  it('stores José Müller from a latin1 manifest with --encoding latin1, and refuses it without (exit 2, nothing sent)', async () => {
    const s = await start();
    const dir = tempDir();
    writeFiles(dir, ['a.txt']);
    const manifest = path.join(dir, 'latin1.csv');
    writeFileSync(manifest, Buffer.from(`personId,file,name\n${PEOPLE[0]},files/a.txt,José Müller\n`, 'latin1'));

    const refused = await runJob(baseArgs(s, manifest, dir)).catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ManifestError);
    expect(exitCodeForError(refused)).toBe(2);
    expect((refused as Error).message).toMatch(/not valid UTF-8: line 2 .*--encoding latin1/);
    expect(s.stats().requests).toBe(0); // stopped before the login
    expect(s.documents()).toHaveLength(0);

    const run = await runJob(baseArgs(s, manifest, dir, { flags: { encoding: 'latin1' } }));
    expect(run.exitCode).toBe(0);
    expect(s.documents().map((d) => d.name)).toEqual(['José Müller']);
  });

  it('gives back a row that did not fit the header as written, so importing failed.csv cannot shift its cells', async () => {
    const s = await start();
    const dir = tempDir();
    writeFiles(dir, ['a.txt', 'b.txt']);
    const manifest = path.join(dir, 'import.csv');
    const misshapen = `${PEOPLE[0]},files/a.txt,Smith, John,Passport front`;
    writeFileSync(manifest, `personId,file,name,description\n${PEOPLE[1]},files/b.txt,Fine,ok\n${misshapen}\n${PEOPLE[1]},files/missing.txt,Gone,x\n`);
    const first = await runJob(baseArgs(s, manifest, dir));
    expect(first.exitCode).toBe(1);
    expect(first.summary.counts).toEqual({ succeeded: 1, skipped: 0, failed: 0, rejected: 2, interrupted: 0 });
    const failedCsv = path.join(dir, 'report', 'failed.csv');
    expect(readFileSync(failedCsv, 'utf8')).toBe(`personId,file,name,description\n${misshapen}\n${PEOPLE[1]},${path.join(dir, 'files/missing.txt')},Gone,x\n`);

    // Importing failed.csv as it is (idsync suggests it) rejects the row again: no "Smith" / "John" upload.
    const retry = await runJob(baseArgs(s, failedCsv, dir, { reportDir: path.join(dir, 'retry') }));
    expect(retry.summary.counts.rejected).toBe(2);
    expect(s.documents().map((d) => d.name)).toEqual(['Fine']);
  });

  it('uploads each file with its media type; the sandbox records it per document (#17.3)', async () => {
    const s = await start();
    const dir = tempDir();
    mkdirSync(path.join(dir, 'files'));
    const files: Array<[string, Buffer, string]> = [
      ['scan.pdf', Buffer.from('%PDF-1.4\n1 0 obj\n'), 'application/pdf'],
      ['photo.jpg', Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16, 0x4a, 0x46, 0x49, 0x46, 0]), 'image/jpeg'],
      ['page.png', Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]), 'image/png'],
      ['page.tif', Buffer.from([0x49, 0x49, 0x2a, 0, 8, 0, 0, 0]), 'image/tiff'],
      ['notes.txt', Buffer.from('plain notes\n'), 'text/plain'],
      // A PDF saved without its extension, and one above the 1 MiB read-whole limit (its first bytes are read apart).
      ['scan0001', Buffer.from('%PDF-1.7\n'), 'application/pdf'],
      ['big.tif', Buffer.concat([Buffer.from([0x4d, 0x4d, 0, 0x2a]), randomBytes(1024 * 1024 + 10)]), 'image/tiff'],
    ];
    const lines = ['personId,file,name'];
    for (const [name, body] of files) {
      writeFileSync(path.join(dir, 'files', name), Buffer.concat([body, Buffer.from(randomUUID())]));
      lines.push(`${PEOPLE[0]},files/${name},${name}`);
    }
    const manifest = path.join(dir, 'import.csv');
    writeFileSync(manifest, `${lines.join('\n')}\n`);
    const run = await runJob(baseArgs(s, manifest, dir));
    expect(run.exitCode).toBe(0);
    const stored = (await (await fetch(`${s.origin}/_admin/documents`)).json()) as Array<{ name: string; fileName: string; contentType: string }>;
    expect(Object.fromEntries(stored.map((d) => [d.fileName, d.contentType]))).toEqual(Object.fromEntries(files.map(([name, , type]) => [name, type])));
  });
});

describe('a run that finds no state at all for its API', () => {
  it('says so at start and names --check-existing; a run that has state does not', async () => {
    const { Writable } = await import('node:stream');
    const { createLogger } = await import('../../src/log.ts');
    const s = await start();
    const dir = tempDir();
    const manifest = writeImportManifest(dir, 2);
    const runWithLog = async (extra: Partial<RunArgs>) => {
      const lines: string[] = [];
      const destination = new Writable({ write: (chunk, _e, done) => (lines.push(String(chunk)), done()) });
      await runJob(baseArgs(s, manifest, dir, { log: createLogger({ level: 'warn', format: 'json', destination }), ...extra }));
      return lines.join('');
    };
    expect(await runWithLog({})).toContain('no record of earlier uploads to this API, neither in this Redis nor in the ledger of this state dir');
    expect(await runWithLog({ reportDir: path.join(dir, 'again') })).not.toContain('no record of earlier uploads');
    // Another machine: a new state dir and a new Redis.
    const elsewhere = await runWithLog({ stateDir: path.join(dir, 'other-state'), keyPrefix: freshKeyPrefix(), reportDir: path.join(dir, 'elsewhere') });
    expect(elsewhere).toContain('--check-existing');
  });
});
