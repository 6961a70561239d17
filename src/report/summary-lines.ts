import path from 'node:path';
import type { RunSummary } from './report-writer.ts';
import { ROW_STATUSES, rowsNotOk, type RowStatus } from './row-result.ts';

export function formatBytes(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  const units = ['KB', 'MB', 'GB', 'TB'];
  let v = bytes / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(1)} ${units[i]}`;
}

type SummaryLike = Pick<RunSummary, 'runId' | 'rows' | 'bytes' | 'reportDir'> & {
  counts: Partial<Record<RowStatus, number>>;
} & Partial<Pick<RunSummary, 'interrupted' | 'seconds' | 'itemsPerSecond' | 'errors'>>;

/** Error classes named on the summary's errors line at most. */
const TOP_ERRORS = 5;

/** What every command's summary counts, in this order, even at 0. */
const BASE_STATUSES: readonly RowStatus[] = ['succeeded', 'skipped', 'failed', 'rejected'];

/**
 * The lines a run's summary prints (every command the same way): counts, the error classes,
 * where the report is, and exactly one next step: after a stop, fix its cause and run the same
 * command again; after an interrupt, run it again; after rows not OK, `retry` (failed.csv).
 * `statuses`: the counts shown even at 0, in order (default every command's four); any other
 * status some row has (interrupted, a verify's) is shown after them.
 */
export function summaryLines(command: string, s: SummaryLike, options: { retry?: string; stopped?: string; statuses?: readonly RowStatus[] } = {}): string[] {
  const c = s.counts;
  const shown = options.statuses ?? BASE_STATUSES;
  const counted = [...shown, ...ROW_STATUSES.filter((st) => !shown.includes(st) && (c[st] ?? 0) > 0)].map((st) => `${c[st] ?? 0} ${st}`);
  const timing = s.seconds !== undefined ? ` in ${s.seconds.toFixed(1)} s${s.itemsPerSecond !== undefined ? ` (${s.itemsPerSecond} items/s)` : ''}` : '';
  const lines = [`${command}${s.interrupted ? ' (interrupted)' : ''} ${s.runId}: ${s.rows} rows: ${counted.join(', ')}; ${formatBytes(s.bytes)}${timing}`];
  const errors = Object.entries(s.errors ?? {}).sort((a, b) => b[1] - a[1]);
  if (errors.length > 0) {
    const named = errors.slice(0, TOP_ERRORS).map(([code, n]) => `${code} ${n}`);
    lines.push(`errors: ${named.join(', ')}${errors.length > TOP_ERRORS ? `, ${errors.length - TOP_ERRORS} more classes` : ''}`);
  }
  lines.push(`report: ${path.join(s.reportDir, 'report.csv')}`);
  if (options.stopped) lines.push(`stopped: ${options.stopped}; once that is fixed, run the same command again to resume`);
  else if (s.interrupted) lines.push('interrupted: run the same command again to resume');
  else if (rowsNotOk(c) > 0 && options.retry) lines.push(options.retry);
  return lines;
}
