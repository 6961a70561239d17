import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ReportWriter } from '../../src/report/report-writer.ts';
import { tempDir } from '../helpers/fixtures.ts';

/**
 * Cells are safe to open in a spreadsheet: the pass-through column names too, not only the
 * values (a header cell `=cmd|' /C calc'!A0` would be a live DDE formula).
 */
describe('report.csv header cells', () => {
  it('neutralises a pass-through column name that a spreadsheet reads as a formula', async () => {
    const dir = tempDir('review-header');
    const evil = "=cmd|' /C calc'!A0";
    const w = new ReportWriter(dir, ['personId', 'file', 'name', evil], ['personId', 'file', 'name', 'description', 'publicId']);
    await w.add({ row: 1, status: 'succeeded', action: 'uploaded', personId: 'p', bytes: 1, sha256: 'ab' }, { personId: 'p', file: 'a.pdf', name: 'A', [evil]: 'x' });
    await w.finish({ runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: false, seconds: 1 });
    const header = readFileSync(path.join(dir, 'report.csv'), 'utf8').split(/\r?\n/)[0]!;
    const cells = header.split(',');
    for (const cell of cells) expect(cell.replace(/^"/, ''), `header cell ${cell}`).not.toMatch(/^[=+\-@\t\r]/);
  });
});
