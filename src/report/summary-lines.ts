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

type SummaryLike = Pick<RunSummary, 'runId' | 'rows' | 'counts' | 'bytes' | 'reportDir'> & Partial<Pick<RunSummary, 'interrupted' | 'seconds' | 'itemsPerSecond'>>;

/** What every command's summary counts, in this order, even at 0. */
const BASE_STATUSES: readonly RowStatus[] = ['succeeded', 'skipped', 'failed', 'rejected'];

/**
 * The lines a run's summary prints (every command the same way): counts, where the report is,
 * and at most one next step. `statuses`: the counts shown even at 0, in order (default every
 * command's four); any other status some row has is shown after them.
 */
export function summaryLines(command: string, s: SummaryLike, options: { retry?: string; statuses?: readonly RowStatus[] } = {}): string[] {
  const c = s.counts;
  const shown = options.statuses ?? BASE_STATUSES;
  const counted = [...shown, ...ROW_STATUSES.filter((st) => !shown.includes(st) && (c[st] ?? 0) > 0)].map((st) => `${c[st] ?? 0} ${st}`);
  const timing = s.seconds !== undefined ? ` in ${s.seconds.toFixed(1)} s${s.itemsPerSecond !== undefined ? ` (${s.itemsPerSecond} items/s)` : ''}` : '';
  const lines = [
    `${command}${s.interrupted ? ' (interrupted)' : ''} ${s.runId}: ${s.rows} rows: ${counted.join(', ')}; ${formatBytes(s.bytes)}${timing}`,
    `report: ${path.join(s.reportDir, 'report.csv')}`,
  ];
  if (s.interrupted) lines.push('interrupted: run the same command again to resume');
  else if (rowsNotOk(c) > 0 && options.retry) lines.push(options.retry);
  return lines;
}
