import { describe, expect, it } from 'vitest';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { compactUtc, compactUtcMs, detectionPath, enrollmentVersionPath, sanitizeDetector } from '../../src/outputs/archive-names.ts';
import { parseSchedule, parseSince } from '../../src/commands/archive/archive-schedule.ts';

describe('archive file names', () => {
  it.each([
    ['Entrance Camera 1', 'Entrance-Camera-1'],
    ['../../etc/passwd', 'etc-passwd'],
    ['Caméra Süd/Nord', 'Camera-Sud-Nord'],
    ['', 'unknown'],
    [null, 'unknown'],
    ['...', 'unknown'],
    ['x'.repeat(100), 'x'.repeat(60)],
  ])('sanitises detector %j to %j', (input, expected) => {
    expect(sanitizeDetector(input)).toBe(expected);
  });

  it('names detections by UTC day, millisecond time, detector and n', () => {
    const ms = Date.UTC(2026, 10, 25, 22, 0, 0, 7);
    expect(compactUtc(ms)).toBe('20261125T220000Z');
    expect(compactUtcMs(ms)).toBe('20261125T220000.007Z');
    expect(detectionPath('p', ms, 'Lobby', 2)).toBe('detections/p/2026-11-25/20261125T220000.007Z_Lobby_2.jpg');
    expect(enrollmentVersionPath('f', ms)).toBe('enrollment/f.20261125T220000Z.jpg');
    expect(enrollmentVersionPath('f', ms, 1)).toBe('enrollment/f.20261125T220000Z-2.jpg');
  });
});

describe('archive schedule and --since', () => {
  it('accepts cron patterns with and without seconds, and IANA zones', () => {
    expect(parseSchedule('0 3 * * *', 'Europe/Amsterdam')).toEqual({ pattern: '0 3 * * *', tz: 'Europe/Amsterdam' });
    expect(parseSchedule('*/10 * * * * *').tz).toBe('UTC');
  });

  it.each([['bogus'], ['61 * * * *'], ['* * *']])('refuses %j with exit 2', (pattern) => {
    let caught: unknown;
    try {
      parseSchedule(pattern);
    } catch (err) {
      caught = err;
    }
    expect((caught as Error).message).toMatch(/--cron/);
    expect(exitCodeForError(caught)).toBe(2);
  });

  it('refuses an unknown time zone and a zoneless --since', () => {
    expect(() => parseSchedule('0 3 * * *', 'Nowhere/Zone')).toThrow(/--tz/);
    expect(() => parseSince('2026-11-25T22:00:00')).toThrow(/--since/);
    expect(parseSince('2026-11-25T22:00:00Z')).toBe(Date.UTC(2026, 10, 25, 22));
    expect(parseSince('2026-11-25')).toBe(Date.UTC(2026, 10, 25));
  });
});
