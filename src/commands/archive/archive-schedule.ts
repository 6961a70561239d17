import { getNextMillis } from 'bullmq';
import { UsageError } from '../../errors.ts';

export interface ArchiveSchedule {
  pattern: string;
  tz: string;
}

/**
 * Checks --cron and --tz at start, with BullMQ's own cron parser (the one its job scheduler
 * will use), so a typo stops the command with exit 2 instead of a scheduler that never fires.
 */
export function parseSchedule(pattern: string, tz = 'UTC', now = Date.now()): ArchiveSchedule {
  try {
    new Intl.DateTimeFormat('en', { timeZone: tz });
  } catch {
    throw new UsageError(`--tz ${JSON.stringify(tz)} is not a time zone (expected an IANA name such as UTC or Europe/Amsterdam)`);
  }
  // cron-parser fills in missing fields; a pattern of 3 or 4 fields is a typo, not a schedule.
  const fields = pattern.trim().split(/\s+/).length;
  if (fields !== 5 && fields !== 6) throw new UsageError(`--cron ${JSON.stringify(pattern)} has ${fields} fields; expected 5 (minute hour day month weekday) or 6 (seconds first)`);
  let next: number | undefined;
  try {
    next = getNextMillis(now, { pattern, tz });
  } catch (err) {
    throw new UsageError(`--cron ${JSON.stringify(pattern)} is not a valid cron expression: ${(err as Error).message} (expected e.g. "0 * * * *" for hourly, or six fields with seconds first)`);
  }
  if (next === undefined || !Number.isFinite(next)) throw new UsageError(`--cron ${JSON.stringify(pattern)} never fires`);
  return { pattern, tz };
}

/** --since: an ISO-8601 time with a zone (a bare date is read as UTC midnight). */
export function parseSince(text: string): number {
  const ms = Date.parse(text);
  const zoned = /^\d{4}-\d{2}-\d{2}$/.test(text) || /(Z|[+-]\d{2}:?\d{2})$/i.test(text);
  if (Number.isNaN(ms) || !zoned) throw new UsageError(`--since ${JSON.stringify(text)} is not an ISO-8601 time with a zone (e.g. 2026-11-25T22:00:00Z)`);
  return ms;
}
