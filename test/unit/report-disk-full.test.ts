import { execFileSync } from 'node:child_process';
import { createWriteStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { ReportWriteError } from '../../src/errors.ts';
import { ReportWriter, type ReportFileOpener } from '../../src/report/report-writer.ts';
import { tempDir } from '../helpers/fixtures.ts';

const COLUMNS = ['personId', 'file', 'name', 'note'];
const KNOWN = ['personId', 'file', 'name'];
const REAL_NAMES = ['report.csv', 'report.jsonl', 'failed.csv', 'summary.json'];
const SUMMARY = { runId: 'r', command: 'import', startedAt: 'a', endedAt: 'b', interrupted: false, seconds: 1 };

function enospc(): NodeJS.ErrnoException {
  return Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', errno: -28, syscall: 'write' });
}

/** Files matching `which` take `room` bytes, then every write fails with ENOSPC (what a full disk does). */
function diskFullAfter(which: RegExp, room: number): ReportFileOpener {
  return (file) => {
    const real = createWriteStream(file);
    if (!which.test(file)) return real;
    let used = 0;
    return new Writable({
      write(chunk: Buffer, _enc, callback) {
        const fits = Math.max(0, Math.min(chunk.length, room - used));
        used += fits;
        if (fits < chunk.length) real.write(chunk.subarray(0, fits), () => callback(enospc()));
        else real.write(chunk, callback);
      },
      final(callback) {
        real.end(callback);
      },
      destroy(err, callback) {
        real.destroy();
        callback(err);
      },
    });
  };
}

async function writeReport(dir: string, rows: number, opener?: ReportFileOpener, note = 'x'): Promise<unknown> {
  const w = new ReportWriter(dir, COLUMNS, KNOWN, undefined, undefined, opener);
  return w
    .guard(async () => {
      for (let row = 1; row <= rows; row++) {
        await w.add({ row, status: row % 10 ? 'succeeded' : 'failed', action: 'upload', error: row % 10 ? undefined : 'boom' }, { personId: 'p', file: `f${row}.pdf`, name: `N${row}`, note });
      }
      return w.finish(SUMMARY);
    })
    .catch((err: unknown) => err);
}

function snapshot(dir: string): Record<string, string> {
  return Object.fromEntries(REAL_NAMES.map((f) => [f, readFileSync(path.join(dir, f), 'utf8')]));
}

describe('ReportWriter on a full disk (issue #15, item 7)', () => {
  it('a write failing mid-report: a typed error naming the file and ENOSPC, exit 2, .partial names kept, the previous report whole', async () => {
    const dir = tempDir();
    expect(await writeReport(dir, 3)).toMatchObject({ rows: 3 });
    const previous = snapshot(dir);

    const err = await writeReport(dir, 600, diskFullAfter(/report\.csv\.partial$/, 20_000), 'a longer note to fill the disk');
    expect(err).toBeInstanceOf(ReportWriteError);
    expect(err).toMatchObject({ code: 'E_REPORT', sysCode: 'ENOSPC', path: path.join(dir, 'report.csv.partial') });
    expect((err as Error).message).toContain(path.join(dir, 'report.csv.partial'));
    expect((err as Error).message).toContain('ENOSPC');
    expect(exitCodeForError(err)).toBe(2);

    expect(snapshot(dir)).toEqual(previous);
    expect(readFileSync(path.join(dir, 'report.csv.partial')).length).toBe(20_000);
    expect(existsSync(path.join(dir, 'report.jsonl.partial'))).toBe(true);
    expect(existsSync(path.join(dir, 'summary.json.partial'))).toBe(false);
  });

  it('summary.json failing: nothing is published either', async () => {
    const dir = tempDir();
    await writeReport(dir, 3);
    const previous = snapshot(dir);
    const err = await writeReport(dir, 50, diskFullAfter(/summary\.json\.partial$/, 10));
    expect(err).toMatchObject({ code: 'E_REPORT', sysCode: 'ENOSPC', path: path.join(dir, 'summary.json.partial') });
    expect(snapshot(dir)).toEqual(previous);
    expect(readFileSync(path.join(dir, 'report.csv.partial'), 'utf8').trim().split('\n')).toHaveLength(51);
  });

  it('abort() keeps the rows under .partial names and never replaces the previous report', async () => {
    const dir = tempDir();
    await writeReport(dir, 3);
    const previous = snapshot(dir);
    const w = new ReportWriter(dir, COLUMNS, KNOWN);
    for (let row = 1; row <= 10; row++) await w.add({ row, status: 'succeeded', action: 'upload' }, { personId: 'p', file: `g${row}`, name: 'n', note: '' });
    await w.abort();
    expect(snapshot(dir)).toEqual(previous);
    expect(readFileSync(path.join(dir, 'report.csv.partial'), 'utf8').trim().split('\n')).toHaveLength(11);
  });
});

/** A real 1 MB tmpfs, when this process may mount one (root in a container that allows it). */
describe('ReportWriter on a real full tmpfs', () => {
  let mount: string | undefined;
  let mountPoint: string | undefined;
  beforeAll(() => {
    if (process.platform !== 'linux' || process.getuid?.() !== 0) return;
    // Not a tempDir(): those are removed after each test, and this one stays mounted until afterAll.
    mountPoint = mkdtempSync(path.join(os.tmpdir(), 'idsync-tmpfs-'));
    try {
      execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', mountPoint], { stdio: 'ignore' });
      mount = mountPoint;
    } catch {
      mount = undefined;
    }
  });
  afterAll(() => {
    if (mount) execFileSync('umount', [mount], { stdio: 'ignore' });
    if (mountPoint) rmSync(mountPoint, { recursive: true, force: true });
  });

  it('600 rows on a nearly full tmpfs: E_REPORT with ENOSPC, the previous report whole', async (ctx) => {
    if (!mount) return ctx.skip();
    const dir = path.join(mount, 'report');
    await writeReport(dir, 3);
    const previous = snapshot(dir);
    // Leave about 64 KB: far less than 600 rows of this report take.
    writeFileSync(path.join(mount, 'filler'), Buffer.alloc(1024 * 1024 - 96 * 1024));
    const err = await writeReport(dir, 600, undefined, 'n'.repeat(200));
    expect(err).toBeInstanceOf(ReportWriteError);
    expect(err).toMatchObject({ code: 'E_REPORT', sysCode: 'ENOSPC' });
    expect((err as ReportWriteError).path).toMatch(/\.partial$/);
    expect(snapshot(dir)).toEqual(previous);
  });
});
