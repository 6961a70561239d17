import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { FileError, OutsideOutError } from '../../src/errors.ts';
import { appendIndex } from '../../src/outputs/archive-index.ts';
import { rejection, tempDir } from '../helpers/fixtures.ts';
import { runJob } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';

const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const DOCS = ['16fd2706-8baf-433b-82eb-8c7fada847da', '26fd2706-8baf-433b-82eb-8c7fada847db'];

function jsonl(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe('what is already under --out is never read through a link', () => {
  it("a document's earlier name that is a link out, or a FIFO, fails the row once: no size or sha256 of another file, no hung thread", async () => {
    const s = await withSandbox();
    const dir = tempDir('links-under-out');
    const out = path.join(dir, 'out');
    const outside = path.join(dir, 'outside');
    mkdirSync(path.join(out, 'documents', PERSON), { recursive: true });
    mkdirSync(outside);
    const secret = path.join(outside, 'secret.txt');
    writeFileSync(secret, 'not for the report');
    symlinkSync(secret, path.join(out, 'documents', PERSON, `${DOCS[0]}.pdf`));
    execFileSync('mkfifo', [path.join(out, 'documents', PERSON, `${DOCS[1]}.pdf`)]);
    const manifest = path.join(dir, 'export.csv');
    writeFileSync(manifest, ['type,faceId,detectionId,personId,documentId,output', `document,,,${PERSON},${DOCS[0]},`, `document,,,${PERSON},${DOCS[1]},`, ''].join('\n'));

    const r = await runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'report'), flags: { attempts: 3 }, apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') });
    expect(r.exitCode).toBe(1);
    const rows = jsonl(path.join(dir, 'report', 'report.jsonl'));
    expect(rows.map((row) => [row.status, row.errorCode, row.attempts])).toEqual([
      ['failed', 'E_OUTSIDE_OUT', 1],
      ['failed', 'E_OUTSIDE_OUT', 1],
    ]);
    const report = readFileSync(path.join(dir, 'report', 'report.jsonl'), 'utf8');
    expect(report).not.toContain(createHash('sha256').update('not for the report').digest('hex'));
    expect(s.stats().byRoute.documentData ?? 0).toBe(0);
  }, 30_000);

  it("an archive's index.csv that is a link is refused, and the file it points at is left alone", async () => {
    const dir = tempDir('index-link');
    const out = path.join(dir, 'archive');
    mkdirSync(out);
    const victim = path.join(dir, 'victim.txt');
    writeFileSync(victim, 'untouched\n');
    symlinkSync(victim, path.join(out, 'index.csv'));
    const entry = { path: 'enrollment/x.jpg', kind: 'enrollment' as const, faceId: 'f', bytes: 1, sha256: 'a'.repeat(64), archivedAt: '2026-01-01T00:00:00.000Z' };
    expect(await rejection(appendIndex(out, [entry]))).toBeInstanceOf(OutsideOutError);
    expect(readFileSync(victim, 'utf8')).toBe('untouched\n');
    // A FIFO there fails at once rather than waiting for a reader that never comes.
    const fifoOut = path.join(dir, 'archive-fifo');
    mkdirSync(fifoOut);
    execFileSync('mkfifo', [path.join(fifoOut, 'index.csv')]);
    expect(await rejection(appendIndex(fifoOut, [entry]))).toBeInstanceOf(FileError);
  });
});
