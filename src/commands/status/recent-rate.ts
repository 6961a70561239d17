import type { MinuteCounts } from '../../store/run-stats.ts';

export interface RecentRate {
  /** Rows finished by jobs per second (succeeded, skipped by a job, failed). */
  perSecond: number;
  /** The seconds the rate is taken over (60 to 120, less for a run younger than that). */
  seconds: number;
}

/**
 * The rate over the last minute or two, from the run's timeline: the current minute bucket and
 * the one before, divided by the time they cover (from the start of the previous minute, or the
 * invocation's start when later, to now). Rows skipped because an earlier invocation did them
 * are not in the timeline, so a resumed run's rate is its real one (an average since start was
 * 252,500 rows/s on a resume). Undefined when there is no time to speak of yet.
 */
export function recentRate(timeline: MinuteCounts[], now: number, startedAt?: number): RecentRate | undefined {
  const current = Math.floor(now / 60_000);
  let from = (current - 1) * 60_000;
  if (startedAt !== undefined && startedAt > from) from = startedAt;
  const seconds = (now - from) / 1000;
  if (!(seconds >= 1)) return undefined;
  // The previous minute belongs to this invocation only if it had started by the current one.
  const previous = from < current * 60_000 ? current - 1 : current;
  let rows = 0;
  for (const m of timeline) if (m.minute === current || m.minute === previous) rows += m.done + m.failed;
  return { perSecond: rows / seconds, seconds };
}

/** Seconds until `remaining` rows are done at `perSecond`; undefined when it cannot be said (no rate). Never NaN. */
export function etaSeconds(remaining: number, perSecond: number | undefined): number | undefined {
  if (!(remaining > 0)) return 0;
  if (perSecond === undefined || !(perSecond > 0) || !Number.isFinite(perSecond)) return undefined;
  return Math.ceil(remaining / perSecond);
}

/** `3h 05m`, `4m 10s`, `12s`. */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
  return `${Math.floor(s / 86_400)}d ${String(Math.floor((s % 86_400) / 3600)).padStart(2, '0')}h`;
}
