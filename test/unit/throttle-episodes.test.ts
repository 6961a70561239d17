import { describe, expect, it } from 'vitest';
import { ThrottleEpisodes } from '../../src/api/throttle-episodes.ts';

function setup() {
  let t = 0;
  const lines: Array<{ level: string; msg: string }> = [];
  const log = { info: (_o: unknown, msg: string) => lines.push({ level: 'info', msg }), debug: (_o: unknown, msg: string) => lines.push({ level: 'debug', msg }) } as never;
  const clock = { now: () => t, sleep: async () => undefined };
  const episodes = new ThrottleEpisodes(clock as never, log, 30_000);
  return { episodes, lines, at: (ms: number) => (t = ms), info: () => lines.filter((l) => l.level === 'info').map((l) => l.msg) };
}

const REQ = { method: 'POST', path: '/api/v1/people/fileDocuments/upload', status: 429 };

describe('ThrottleEpisodes', () => {
  it('one info line when the API starts asking to slow down, debug while it goes on, one when it stopped asking', () => {
    const { episodes, at, info, lines } = setup();
    for (let t = 0; t < 60_000; t += 2000) {
      at(t);
      episodes.throttled(REQ, 1000);
      at(t + 1000);
      episodes.answered();
    }
    expect(info()).toEqual(['the API asks to slow down (429): pausing new requests for 1000 ms, and again whenever it asks']);
    expect(lines.filter((l) => l.level === 'debug')).toHaveLength(29);
    at(58_000 + 29_999);
    episodes.answered();
    expect(info()).toHaveLength(1);
    at(58_000 + 30_000);
    episodes.answered();
    expect(info()[1]).toBe('the API no longer asks to slow down: back to full pace');
    // A new episode is told again.
    at(200_000);
    episodes.throttled(REQ, 2000);
    expect(info()).toHaveLength(3);
  });
});
