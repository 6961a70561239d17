import path from 'node:path';
import type { RunSummary } from './report-writer.ts';

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

/**
 * The lines a run's summary prints (every command the same way): counts, where the report is,
 * and at most one next step.
 */
export function summaryLines(command: string, s: SummaryLike, options: { retry?: string } = {}): string[] {
  const c = s.counts;
  const timing = s.seconds !== undefined ? ` in ${s.seconds.toFixed(1)} s${s.itemsPerSecond !== undefined ? ` (${s.itemsPerSecond} items/s)` : ''}` : '';
  const lines = [
    `${command}${s.interrupted ? ' (interrupted)' : ''} ${s.runId}: ${s.rows} rows: ${c.succeeded} succeeded, ${c.skipped} skipped, ${c.failed} failed, ${c.rejected} rejected; ${formatBytes(s.bytes)}${timing}`,
    `report: ${path.join(s.reportDir, 'report.csv')}`,
  ];
  if (s.interrupted) lines.push('interrupted: run the same command again to resume');
  else if (c.failed + c.rejected > 0 && options.retry) lines.push(options.retry);
  return lines;
}
