import { ROW_STATUSES } from '../../report/row-result.ts';
import type { ErrorClass } from '../../store/run-stats.ts';
import { formatDuration } from './recent-rate.ts';
import type { RunSummaryView, RunView } from './run-view.ts';

/** Error classes shown by `idsync status` at most (the dashboard shows them all). */
export const TOP_ERROR_CLASSES = 5;

const n = (x: number) => x.toLocaleString('en-US');
const iso = (ms: number | undefined) => (ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z'));
const ago = (ms: number, now: number) => `${formatDuration((now - ms) / 1000)} ago`;

/** `running (owner host:123, heartbeat 4s ago)`, `running (owner host:123 silent for 5m 10s: dead?)`, `stopped`. */
export function stateText(r: RunSummaryView, now: number): string {
  if (r.state !== 'running') return r.fatal ? `${r.state} (${r.fatal})` : r.state;
  if (!r.owner) return 'running (no owner: served by `idsync worker` processes)';
  const who = `${r.owner.host}:${r.owner.pid}`;
  return r.owner.alive ? `running (owner ${who}, heartbeat ${ago(r.owner.at, now)})` : `running? (owner ${who} silent for ${formatDuration((now - r.owner.at) / 1000)}: it died or lost Redis; rerun the command to resume)`;
}

function countsText(r: RunSummaryView): string {
  const of = r.total !== undefined ? ` / ${n(r.total)} rows${r.total > 0 ? ` (${((100 * r.done) / r.total).toFixed(1)} %)` : ''}` : ' rows';
  // Every command's four statuses, and a verify run's own three when it counts them.
  const parts = ROW_STATUSES.filter((s) => r.counts[s] !== undefined).map((s) => `${n(r.counts[s]!)} ${s}`);
  return `${n(r.done)}${of}: ${parts.join(', ')}`;
}

/** One error class: `E_FORBIDDEN  12 failed  e.g. row 17 (personId …): POST … answered 403`. */
export function errorClassText(c: ErrorClass): string {
  const what = [c.failed > 0 ? `${n(c.failed)} failed` : '', c.rejected > 0 ? `${n(c.rejected)} rejected` : '', c.retried > 0 ? `${n(c.retried)} retried` : ''].filter(Boolean).join(', ');
  const x = c.example;
  const where = x ? [x.file ? `file ${x.file}` : '', x.personId ? `personId ${x.personId}` : '', x.faceId ? `faceId ${x.faceId}` : ''].filter(Boolean).join(', ') : '';
  const example = x ? `  e.g. row ${x.row}${where ? ` (${where})` : ''}: ${x.error ?? x.action}` : '';
  return `${c.code}  ${what}${example}`;
}

/** What `idsync status` prints for one run. */
export function statusLines(v: RunView, note?: string): string[] {
  const lines: string[] = [];
  if (note) lines.push(`(${note})`);
  lines.push(`run       ${v.runId}`);
  lines.push(`command   ${v.command} ${v.input}`);
  lines.push(`api       ${v.apiUrl}`);
  lines.push(`state     ${stateText(v, v.now)}`);
  const started = v.startedAt ?? v.createdAt;
  lines.push(`started   ${iso(started)} (${ago(started, v.now)})${v.endedAt !== undefined && v.state !== 'running' ? `, ended ${iso(v.endedAt)}` : ''}`);
  lines.push(`progress  ${countsText(v)}`);
  if (v.state === 'running') {
    const rate = v.rate ? `${v.rate.perSecond.toFixed(1)} rows/s over the last ${formatDuration(v.rate.seconds)}` : 'no rows finished yet';
    // A run without a known total (a watched folder) has no end to estimate.
    const eta = v.total === undefined ? '' : v.etaSeconds === undefined ? '; ETA unknown until rows finish' : v.etaSeconds === 0 ? '; ETA: all rows have a result' : `; ETA ${formatDuration(v.etaSeconds)}`;
    lines.push(`rate      ${rate}${eta}`);
  }
  const q = v.queue;
  lines.push(`queue     ${n(v.inFlight)} in flight, ${n(q.waiting + q.prioritized)} waiting, ${n(q.delayed)} delayed (retrying or throttled)${q.paused ? '; paused: no worker takes its jobs until the command runs again' : ''}`);
  lines.push(`retries   ${n(v.retries)}; 429 throttles: ${n(v.throttles)}${v.rateLimit !== undefined ? `; rate limit ${n(v.rateLimit)} requests/s (stored; idsync limits --clear removes it)` : ''}`);
  const bad = v.errors.filter((c) => c.failed + c.rejected > 0);
  const retried = v.errors.filter((c) => c.failed + c.rejected === 0 && c.retried > 0);
  if (bad.length === 0) lines.push('errors    none');
  else {
    lines.push(`errors    ${bad.length} class${bad.length === 1 ? '' : 'es'}${bad.length > TOP_ERROR_CLASSES ? ` (top ${TOP_ERROR_CLASSES})` : ''}:`);
    for (const c of bad.slice(0, TOP_ERROR_CLASSES)) lines.push(`  ${errorClassText(c)}`);
  }
  if (retried.length > 0) lines.push(`retried   ${retried.map((c) => `${c.code} ${n(c.retried)}`).join(', ')} (tried again; no row failed of them yet)`);
  if (v.workers.length === 0) lines.push(`workers   none serving this run${v.state === 'running' ? (v.owner?.alive ? ' (its owner enqueues only: start `idsync worker` with the same REDIS_URL and API settings)' : '') : ''}`);
  else lines.push(`workers   ${v.workers.map((w) => `${w.id}${w.command ? ` (${w.command})` : ''}`).join(', ')}`);
  if (v.reportDir) lines.push(`report    ${v.reportDir}`);
  return lines;
}

/** What `idsync runs` prints: one line per run, grouped by API when there are several. */
export function runsLines(runs: RunSummaryView[], now: number, options: { showApi: boolean }): string[] {
  if (runs.length === 0) return ['no runs'];
  const header = ['RUN', 'COMMAND', 'STATE', 'ROWS', 'SUCCEEDED', 'SKIPPED', 'FAILED', 'REJECTED', 'STARTED', 'ENDED', 'OWNER', 'INPUT'];
  const rows = runs.map((r) => [
    r.runId,
    r.command,
    r.state,
    `${n(r.done)}/${r.total === undefined ? '?' : n(r.total)}`,
    n(r.counts.succeeded),
    n(r.counts.skipped),
    n(r.counts.failed),
    n(r.counts.rejected),
    iso(r.startedAt ?? r.createdAt),
    r.state === 'running' ? '-' : iso(r.endedAt),
    r.owner ? `${r.owner.host}:${r.owner.pid} ${r.owner.alive ? 'alive' : `silent ${formatDuration((now - r.owner.at) / 1000)}`}` : '-',
    r.input,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!))).join('  ');
  const out: string[] = [];
  let api: string | undefined;
  runs.forEach((r, i) => {
    if (options.showApi && r.apiUrl !== api) {
      if (api !== undefined) out.push('');
      api = r.apiUrl;
      out.push(`API ${api}`);
      out.push(line(header));
    } else if (i === 0) out.push(line(header));
    out.push(line(rows[i]!));
  });
  return out;
}
