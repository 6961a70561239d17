import { describe, expect, it } from 'vitest';
import { createProgress } from '../../src/report/progress.ts';

const counts = (failed: number, rejected = 0) => ({ succeeded: 0, skipped: 0, failed, rejected });

describe('progress without a terminal', () => {
  it('logs a line at most every interval, with rate and ETA, failed and rejected apart', () => {
    let t = 0;
    const lines: Array<Record<string, unknown>> = [];
    const log = { info: (o: Record<string, unknown>) => lines.push(o) } as never;
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 5000, now: () => t });
    t = 5000;
    p.update({ done: 50, counts: counts(1, 2), total: 100 });
    t = 6000;
    p.update({ done: 60, counts: counts(1, 2), total: 100 });
    t = 10_000;
    p.update({ done: 100, counts: counts(2, 2), total: 100 });
    expect(lines).toHaveLength(2);
    expect(lines[0]).toMatchObject({ done: 50, failed: 1, rejected: 2, total: 100, itemsPerSecond: 10, etaSeconds: 5 });
  });
});

describe('progress with --concurrency auto', () => {
  it('shows the concurrency limit and the over-capacity answers when given', () => {
    const lines: Array<[Record<string, unknown>, string]> = [];
    const log = { info: (o: Record<string, unknown>, msg: string) => lines.push([o, msg]) } as never;
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 0, now: () => 1000 });
    p.update({ done: 5, counts: counts(0), total: 10, concurrency: 12, overloaded: 3 });
    p.update({ done: 6, counts: counts(0), total: 10 });
    expect(lines[0]![0]).toMatchObject({ concurrency: 12, overCapacity: 3 });
    expect(lines[0]![1]).toBe('import: 5/10 done | C 12, 3 over capacity');
    expect(lines[1]![0]).not.toHaveProperty('concurrency');
    expect(lines[1]![1]).toBe('import: 6/10 done');
  });
});
