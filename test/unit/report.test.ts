import { existsSync, mkdirSync, readFileSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { parse } from 'csv-parse/sync';
import { describe, expect, it } from 'vitest';
import { ReportWriter } from '../../src/report/report-writer.ts';
import { fromSpreadsheetCell, spreadsheetSafe } from '../../src/report/spreadsheet-cell.ts';
import { derivePublicId } from '../../src/sources/public-id.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { VERSION } from '../../src/version.ts';

describe('spreadsheetSafe', () => {
  it.each([
    ['=HYPERLINK("x")', `'=HYPERLINK("x")`],
    ['+1', `'+1`],
    ['-2+3', `'-2+3`],
    ['@SUM(A1)', `'@SUM(A1)`],
    ['\tx', `'\tx`],
    ["'=x", `''=x`],
    ["it's", "it's"],
    ['plain', 'plain'],
    [42, '42'],
    [undefined, ''],
  ])('%j → %j', (input, expected) => {
    expect(spreadsheetSafe(input)).toBe(expected);
  });

  it.each(['=HYPERLINK("x")', '-front.jpg', "'=x", "''", "'", "it's", '\tx', 'plain', ''])('%j reads back as written', (value) => {
    expect(fromSpreadsheetCell(spreadsheetSafe(value))).toBe(value);
  });
});

describe('ReportWriter', () => {
  it('writes report.csv, report.jsonl, failed.csv and summary.json', async () => {
    const dir = tempDir();
    const columns = ['personId', 'file', 'name', 'batch'];
    const w = new ReportWriter(dir, columns, ['personId', 'file', 'name', 'description', 'publicId'], (v) => ({ ...v, file: `/abs/${v.file}` }));
    await w.add({ row: 1, status: 'succeeded', action: 'uploaded', personId: 'p', bytes: 10, sha256: 'ab' }, { personId: 'p', file: 'a.pdf', name: 'A', batch: '=cmd|x' });
    await w.add({ row: 2, status: 'rejected', action: 'validate', error: 'name is empty' }, { personId: 'p', file: 'b.pdf', name: '', batch: '7' });
    const s = await w.finish({ runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: false, seconds: 2 });
    expect(s.counts).toEqual({ succeeded: 1, skipped: 0, failed: 0, rejected: 1, interrupted: 0 });
    expect(s.bytes).toBe(10);
    expect(s.itemsPerSecond).toBe(0.5);

    const report = parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(Object.keys(report[0]!)).toEqual(['row', 'status', 'action', 'personId', 'faceId', 'detectionId', 'documentId', 'file', 'output', 'bytes', 'sha256', 'attempts', 'httpStatus', 'error', 'errorCode', 'retryable', 'batch']);
    expect(report[0]!.batch).toBe(`'=cmd|x`);
    expect(report[1]!.error).toBe('name is empty');
    expect(report[1]!.retryable).toBe('false');

    const jsonl = readFileSync(path.join(dir, 'report.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(jsonl[1]).toMatchObject({ row: 2, status: 'rejected', batch: '7' });

    const failed = parse(readFileSync(path.join(dir, 'failed.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(failed).toEqual([{ personId: 'p', file: '/abs/b.pdf', name: '', batch: '7' }]);
    expect(JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8'))).toMatchObject({ runId: 'r', rows: 2 });
  });
});

describe('ReportWriter: classes, retryable, interrupted rows, summary (#16)', () => {
  it('counts rows per error class, writes errorCode and retryable, puts interrupted rows in failed.csv, and says its version and options', async () => {
    const dir = tempDir();
    const w = new ReportWriter(dir, ['personId', 'file', 'name'], ['personId', 'file', 'name']);
    const values = (file: string) => ({ personId: 'p', file, name: file });
    await w.add({ row: 1, status: 'succeeded', action: 'uploaded', bytes: 5 }, values('a'));
    await w.add({ row: 2, status: 'failed', action: 'upload', httpStatus: 403, error: 'POST … answered 403', errorCode: 'E_FORBIDDEN', retryable: false }, values('b'));
    await w.add({ row: 3, status: 'failed', action: 'upload', httpStatus: 503, error: 'POST … answered 503', errorCode: 'E_SERVER', retryable: true }, values('c'));
    await w.add({ row: 4, status: 'failed', action: 'upload', httpStatus: 403, error: 'POST … answered 403', errorCode: 'E_FORBIDDEN', retryable: false }, values('d'));
    await w.add({ row: 5, status: 'interrupted', action: 'upload', error: 'not finished', errorCode: 'E_INTERRUPTED', retryable: true }, values('e'));
    const s = await w.finish({ runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: true, seconds: 1, options: { concurrency: 8, attempts: 5 } });
    expect(s.counts).toEqual({ succeeded: 1, skipped: 0, failed: 3, rejected: 0, interrupted: 1 });
    expect(s.errors).toEqual({ E_FORBIDDEN: 2, E_SERVER: 1, E_INTERRUPTED: 1 });
    const onDisk = JSON.parse(readFileSync(path.join(dir, 'summary.json'), 'utf8')) as Record<string, unknown>;
    expect(onDisk).toMatchObject({ version: VERSION, errors: s.errors, options: { concurrency: 8, attempts: 5 }, counts: s.counts });

    const report = parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(report.map((r) => [r.status, r.errorCode, r.retryable])).toEqual([
      ['succeeded', '', ''],
      ['failed', 'E_FORBIDDEN', 'false'],
      ['failed', 'E_SERVER', 'true'],
      ['failed', 'E_FORBIDDEN', 'false'],
      ['interrupted', 'E_INTERRUPTED', 'true'],
    ]);
    const jsonl = readFileSync(path.join(dir, 'report.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(jsonl[1]).toMatchObject({ errorCode: 'E_FORBIDDEN', retryable: false, httpStatus: 403 });
    expect(jsonl[0]).not.toHaveProperty('retryable');
    const failed = parse(readFileSync(path.join(dir, 'failed.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(failed.map((r) => r.file)).toEqual(['b', 'c', 'd', 'e']);
  });
});

describe('failed.csv (#15.8)', () => {
  it("gives back a row that did not fit the header as it was read, in the manifest's delimiter and header", async () => {
    const dir = tempDir();
    const labels = ['PersonID', ' File ', 'Name', 'Description'];
    const w = new ReportWriter(dir, ['personId', 'file', 'name', 'description'], ['personId', 'file', 'name', 'description', 'publicId'], (v) => ({ ...v, file: `/abs/${v.file}` }), {
      delimiter: ';',
      header: labels,
    });
    await w.add({ row: 1, status: 'rejected', action: 'validate', error: 'name is empty' }, { personId: 'p', file: 'a.pdf', name: '', description: 'x;y' });
    // Five cells under four columns: "Smith" and " John" would land in name and description.
    await w.add(
      { row: 2, status: 'rejected', action: 'validate', error: 'row has 5 cells but the header has 4 columns' },
      { personId: 'p', file: 'b.txt', name: 'Smith', description: ' John' },
      'p;b.txt;Smith; John;Passport front',
    );
    await w.add({ row: 3, status: 'succeeded', action: 'uploaded' }, { personId: 'p', file: 'c.pdf', name: 'C', description: '' }, 'ignored: the row succeeded');
    await w.add({ row: 4, status: 'failed', action: 'upload', error: 'x' }, { personId: 'p', file: 'd.pdf', name: 'José', description: '' });
    await w.finish({ runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: false, seconds: 1 });
    expect(readFileSync(path.join(dir, 'failed.csv'), 'utf8')).toBe(
      ['PersonID; File ;Name;Description', 'p;/abs/a.pdf;;"x;y"', 'p;b.txt;Smith; John;Passport front', 'p;/abs/d.pdf;José;', ''].join('\n'),
    );
    // report.csv stays comma-separated, with the cells as read.
    const report = parse(readFileSync(path.join(dir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    expect(report[1]).toMatchObject({ row: '2', status: 'rejected' });
  });
});

describe('derivePublicId', () => {
  it('is stable for the same person and content, different otherwise', () => {
    const a = derivePublicId('3f2504e0-4f89-11d3-9a0c-0305e82c3301', 'aa'.repeat(32));
    expect(a).toBe(derivePublicId('3F2504E0-4F89-11D3-9A0C-0305E82C3301', 'AA'.repeat(32)));
    expect(a).not.toBe(derivePublicId('3f2504e0-4f89-11d3-9a0c-0305e82c3302', 'aa'.repeat(32)));
    expect(a).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  });
});

describe('ReportWriter when the report cannot be completed', () => {
  it('keeps the rows added so far (they are written in groups) under the .partial names and closes the files', async () => {
    const dir = tempDir();
    const w = new ReportWriter(dir, ['personId', 'file'], ['personId', 'file']);
    const err = await w
      .guard(async () => {
        for (let row = 1; row <= 300; row++) await w.add({ row, status: row % 2 ? 'succeeded' : 'failed', action: 'upload', error: row % 2 ? undefined : 'x' }, { personId: 'p', file: `f${row}` });
        throw new Error('manifest became unreadable');
      })
      .catch((e: unknown) => e);
    expect((err as Error).message).toBe('manifest became unreadable');
    expect(readFileSync(path.join(dir, 'report.csv.partial'), 'utf8').trim().split('\n')).toHaveLength(301);
    expect(readFileSync(path.join(dir, 'report.jsonl.partial'), 'utf8').trim().split('\n')).toHaveLength(300);
    expect(readFileSync(path.join(dir, 'failed.csv.partial'), 'utf8').trim().split('\n')).toHaveLength(151);
    // An incomplete report never takes the real names (issue #15, item 7).
    expect(existsSync(path.join(dir, 'report.csv'))).toBe(false);
  });
});

describe('ReportWriter when a file cannot be written', () => {
  it.skipIf(process.platform !== 'linux')('rejects (disk full) instead of ending the process, and closing after that does not hang', async () => {
    const dir = tempDir();
    mkdirSync(dir, { recursive: true });
    symlinkSync('/dev/full', path.join(dir, 'report.jsonl.partial')); // every write: ENOSPC
    const w = new ReportWriter(dir, ['personId', 'file'], ['personId', 'file']);
    const err = await (async () => {
      for (let row = 1; row <= 600; row++) await w.add({ row, status: 'succeeded', action: 'upload' }, { personId: 'p', file: `f${row}` });
      return w.finish({ runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: false, seconds: 1 });
    })().catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'E_REPORT', sysCode: 'ENOSPC', path: path.join(dir, 'report.jsonl.partial') });
    const settled = await Promise.race([Promise.all([w.abort(), w.discard()]).then(() => 'settled'), new Promise((r) => setTimeout(() => r('hung'), 3000))]);
    expect(settled).toBe('settled');
    expect(existsSync(path.join(dir, 'report.csv.partial'))).toBe(false);
  });
});
