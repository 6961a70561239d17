import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { ApiHealth } from '../../src/api/api-health.ts';
import { OutageNotice } from '../../src/commands/watch/outage-notice.ts';
import { HttpStatusError, NetworkError } from '../../src/errors.ts';
import { createLogger } from '../../src/log.ts';

const status = (s: number) => new HttpStatusError({ method: 'POST', path: '/up', status: s });
const refused = new NetworkError({ method: 'POST', path: '/up', sysCode: 'ECONNREFUSED', requestSent: false });

function capture() {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      lines.push(JSON.parse(chunk.toString('utf8')) as never);
      cb();
    },
  });
  return { lines, log: createLogger({ level: 'info', format: 'json', destination }) };
}

describe('ApiHealth', () => {
  it('is down from the first outage until the next answer; a 4xx or 429 is an answer, an abort of ours tells nothing', () => {
    const h = new ApiHealth();
    expect(h.snapshot()).toEqual({ failures: 0 });
    h.answered(1000);
    h.failed(status(503), 2000);
    h.failed(refused, 3000);
    h.failed(Object.assign(new Error('aborted'), { name: 'AbortError' }), 3500);
    expect(h.snapshot()).toEqual({ lastAnswerAt: 1000, downSince: 2000, failures: 2, lastFailure: 'E_NETWORK ECONNREFUSED' });
    h.failed(status(429), 4000);
    expect(h.snapshot()).toEqual({ lastAnswerAt: 4000, failures: 0 });
    h.failed(status(502), 5000);
    h.failed(status(404), 6000);
    expect(h.snapshot()).toEqual({ lastAnswerAt: 6000, failures: 0 });
  });
});

describe('OutageNotice (the watch heartbeat)', () => {
  it('says when the API went down and, later, after how long it answers again; a single failure of a flaky server says nothing', () => {
    const { lines, log } = capture();
    const h = new ApiHealth();
    const notice = new OutageNotice(10_000, log, 'until 6h after their first failure (--retry-budget)');
    const t0 = Date.UTC(2026, 0, 5, 8, 0, 0);
    h.answered(t0);
    h.failed(status(503), t0 + 1000); // one failure, then answers: flaky, not down
    expect(notice.check(h.snapshot(), t0 + 1500)).toBeUndefined();
    h.answered(t0 + 2000);
    expect(notice.check(h.snapshot(), t0 + 20_000)).toBeUndefined();
    expect(lines).toEqual([]);

    h.failed(status(503), t0 + 30_000);
    expect(notice.check(h.snapshot(), t0 + 35_000)).toBeUndefined(); // not 10 s yet
    h.failed(status(503), t0 + 39_000);
    expect(notice.check(h.snapshot(), t0 + 40_000)).toBe(t0 + 30_000);
    expect(lines).toHaveLength(1);
    expect(lines[0]!.msg).toBe('watch: the API is not answering (E_HTTP_STATUS 503) since 2026-01-05T08:00:30.000Z; files wait and are tried again until 6h after their first failure (--retry-budget)');
    expect(notice.check(h.snapshot(), t0 + 41_000)).toBe(t0 + 30_000);
    expect(lines).toHaveLength(1); // said once

    const beat = notice.heartbeat(h.snapshot(), t0 + 30_000, t0 + 30_000 + 2 * 3_600_000 + 5 * 60_000);
    expect(beat.fields).toEqual({ apiDownSince: '2026-01-05T08:00:30.000Z', apiDownForMs: 7_500_000, apiFailures: 2, lastFailure: 'E_HTTP_STATUS 503' });
    expect(beat.message).toMatch(/^watch heartbeat: the API has not answered for 2h5m \(since 2026-01-05T08:00:30\.000Z; 2 requests failed, the last E_HTTP_STATUS 503\)/);

    h.answered(t0 + 90_000);
    expect(notice.check(h.snapshot(), t0 + 90_500)).toBeUndefined();
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ msg: 'watch: the API answers again after 1m down', apiDownForMs: 60_000 });
  });
});
