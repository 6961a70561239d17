import { describe, expect, it } from 'vitest';
import { barText, createProgress } from '../../src/report/progress.ts';
import { etaSeconds, formatEta, RateWindow } from '../../src/report/rate-window.ts';
import { StatusLine } from '../../src/status-line.ts';

const counts = (succeeded: number, failed = 0, rejected = 0, skipped = 0) => ({ succeeded, skipped, failed, rejected, interrupted: 0 });

function logSink() {
  const lines: Array<Record<string, unknown> & { msg: string }> = [];
  const log = { info: (o: Record<string, unknown>, msg: string) => lines.push({ ...o, msg }) } as never;
  return { log, lines };
}

describe('RateWindow', () => {
  it('is unknown at first, then the rate over the last minute, not the average since the start', () => {
    const w = new RateWindow(60_000);
    w.add(0, 0);
    expect(w.perSecond()).toBeUndefined();
    w.add(1000, 10);
    expect(w.perSecond()).toBeUndefined(); // one second is too little to say
    // 100/s for two minutes, then 10/s for two minutes.
    for (let t = 2000; t <= 120_000; t += 1000) w.add(t, t / 10);
    expect(w.perSecond()).toBeCloseTo(100, 0);
    for (let t = 121_000; t <= 240_000; t += 1000) w.add(t, 12_000 + (t - 120_000) / 100);
    expect(w.perSecond()).toBeCloseTo(10, 0); // the average since the start would be 55/s
  });

  it('counts from its first sample: rows done before it are no speed (a resume)', () => {
    const w = new RateWindow();
    w.add(0, 252_500);
    w.add(10_000, 252_600);
    expect(w.perSecond()).toBeCloseTo(10, 5);
  });

  it('keeps few samples however often it is fed', () => {
    const w = new RateWindow(60_000);
    for (let t = 0; t <= 600_000; t += 10) w.add(t, t);
    expect(w.perSecond()).toBeCloseTo(1000, 0);
  });
});

describe('ETA', () => {
  it.each([
    [100, 10, 10],
    [0, undefined, 0],
    [100, undefined, undefined],
    [100, 0, undefined],
    [100, Number.NaN, undefined],
    [1, 1e-300, undefined],
  ])('%d left at %s/s → %s', (remaining, rate, eta) => {
    expect(etaSeconds(remaining, rate)).toBe(eta);
  });

  it.each([
    [undefined, 'unknown'],
    [45, '45 s'],
    [725, '12 min 5 s'],
    [12_000, '3 h 20 min'],
    [3 * 86_400 + 7200, '3 d 2 h'],
  ])('formats %s as %s', (s, text) => {
    expect(formatEta(s)).toBe(text);
  });
});

describe('progress without a terminal', () => {
  it('logs a line at most every interval, with the recent rate and its ETA, failed and rejected apart', () => {
    let t = 0;
    const { log, lines } = logSink();
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 5000, now: () => t });
    p.update({ done: 0, counts: counts(0), total: 100 });
    t = 5000;
    p.update({ done: 50, counts: counts(47, 1, 2), total: 100, concurrency: 8 });
    t = 6000;
    p.update({ done: 60, counts: counts(57, 1, 2), total: 100 });
    t = 10_000;
    p.update({ done: 100, counts: counts(96, 2, 2), total: 100 });
    expect(lines).toHaveLength(3);
    expect(lines[0]).toMatchObject({ done: 0, total: 100 });
    expect(lines[0]).not.toHaveProperty('etaSeconds');
    expect(lines[0]!.msg).toBe('import: 0/100 done, rate not known yet, ETA unknown');
    // 48 rows worked in 5 s (the 2 rejected ones are no work): 9.6/s, 50 left → 6 s (rounded up).
    expect(lines[1]).toMatchObject({ done: 50, failed: 1, rejected: 2, itemsPerSecond: 9.6, etaSeconds: 6, concurrency: 8 });
    expect(lines[2]).toMatchObject({ done: 100, etaSeconds: 0 });
  });

  it('on a resume, rows done earlier are neither speed nor shorten the ETA', () => {
    let t = 0;
    const { log, lines } = logSink();
    const p = createProgress({ log, label: 'import', tty: false, everyMs: 1, now: () => t });
    p.update({ done: 252_500, counts: counts(252_000, 500), total: 300_000 });
    // The 500 failed rows are queued again (they leave `failed`), 100 rows done in 10 s.
    t = 10_000;
    p.update({ done: 252_100, counts: counts(252_100, 0), total: 300_000 });
    expect(lines[1]).toMatchObject({ itemsPerSecond: 10, etaSeconds: 4790 });
  });

  it('after the first minute, one line a minute', () => {
    let t = 0;
    const { log, lines } = logSink();
    const p = createProgress({ log, label: 'export', tty: false, now: () => t });
    for (t = 0; t <= 180_000; t += 1000) p.update({ done: t / 1000, counts: counts(t / 1000), total: 1000 });
    // 0, 5, …, 55 s (12 lines), then 115 s and 175 s.
    expect(lines).toHaveLength(14);
  });
});

describe('progress on a terminal', () => {
  it('draws a bar on the status line, and log lines print above it, never onto it', () => {
    const written: string[] = [];
    const status = new StatusLine({ write: (s: string) => written.push(s), columns: 200 });
    let t = 0;
    const p = createProgress({ log: logSink().log, label: 'import', tty: true, now: () => t, statusLine: status });
    p.update({ done: 0, counts: counts(0), total: 10 });
    t = 4000;
    p.update({ done: 4, counts: counts(3, 1), total: 10, concurrency: 8 });
    status.print('{"msg":"a log line"}\n');
    p.stop();
    expect(written[0]).toMatch(/^\r\x1b\[2Kimport \[░+\] 0\/10 \| failed 0 \| rejected 0 \| -\/s \| ETA -$/);
    expect(written[1]).toBe(`\r\x1b[2K${barText('import', { done: 4, counts: counts(3, 1), total: 10, concurrency: 8 }, 1, 6)}`);
    expect(written[1]).toContain('| 1.0/s | ETA 6 s | concurrency 8');
    // Cleared, the line written, the bar drawn again below it: one write.
    expect(written[2]).toBe(`\r\x1b[2K{"msg":"a log line"}\n${written[1]!.slice('\r\x1b[2K'.length)}`);
    expect(written[3]).toBe('\n');
    expect(written.join('')).not.toMatch(/NaN|Infinity/);
  });

  it('cuts the bar to the terminal width, so it never wraps', () => {
    const written: string[] = [];
    const status = new StatusLine({ write: (s: string) => written.push(s), columns: 40 });
    status.show('x'.repeat(100));
    expect(written[0]).toBe(`\r\x1b[2K${'x'.repeat(39)}`);
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
    expect(lines[0]![1]).toContain(", 3 answers over the API's capacity");
    expect(lines[1]![0]).not.toHaveProperty('overCapacity');
    expect(lines[1]![1]).not.toContain('capacity');
  });
});
