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
