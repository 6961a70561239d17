import type { ErrorClass, MinuteCounts } from '../../store/run-stats.ts';
import { formatDuration } from '../status/recent-rate.ts';
import type { RunSummaryView, RunView } from '../status/run-view.ts';
import { stateText } from '../status/status-text.ts';
import type { ReportFile } from './report-files.ts';

/**
 * idsync's own dashboard pages: plain HTML rendered on the server, no script (the pages reload
 * themselves every few seconds), every value escaped. bull-board serves the queues under /queues.
 */

/** Seconds between reloads of a page that shows a running run. */
export const REFRESH_SECONDS = 5;

export function esc(value: unknown): string {
  return String(value ?? '').replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const n = (x: number) => x.toLocaleString('en-US');
const iso = (ms: number | undefined) => (ms === undefined ? '–' : new Date(ms).toISOString().replace('T', ' ').replace(/\.\d{3}Z$/, 'Z'));
export const runPath = (runId: string) => `/runs/${encodeURIComponent(runId)}`;
export const queuePath = (queueName: string) => `/queues/queue/${encodeURIComponent(queueName)}`;

const STYLE = `
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2433; background: #f6f7f9; }
header { background: #1d2433; color: #fff; padding: 10px 24px; display: flex; gap: 24px; align-items: baseline; }
header a { color: #cfe0ff; text-decoration: none; } header strong { font-size: 16px; }
main { padding: 16px 24px; }
table { border-collapse: collapse; background: #fff; width: 100%; margin: 8px 0 20px; }
th, td { text-align: left; padding: 5px 10px; border-bottom: 1px solid #e3e6eb; vertical-align: top; white-space: nowrap; }
td.wrap { white-space: normal; word-break: break-all; min-width: 12em; }
th { background: #eef1f5; font-weight: 600; } td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.state-running { color: #0a7a32; font-weight: 600; } .state-cancelled, .state-stopped { color: #9a5b00; } .state-done { color: #555; }
.bad { color: #b3261e; } .muted { color: #6b7280; } code { font-size: 12px; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: 4px 16px; background: #fff; padding: 12px 16px; margin: 8px 0 20px; }
dt { font-weight: 600; } dd { margin: 0; }
.cards { display: flex; gap: 12px; flex-wrap: wrap; margin: 8px 0 16px; }
.card { background: #fff; padding: 10px 16px; min-width: 120px; border-left: 4px solid #8aa4d6; }
.card b { display: block; font-size: 22px; } .card.ok { border-color: #2e9d57; } .card.fail { border-color: #d0453c; } .card.skip { border-color: #9aa3b2; } .card.rej { border-color: #d08a3c; }
svg { background: #fff; display: block; margin: 8px 0 20px; }
`;

export function layout(title: string, body: string, options: { refresh?: boolean } = {}): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
${options.refresh ? `<meta http-equiv="refresh" content="${REFRESH_SECONDS}">` : ''}
<title>${esc(title)} · idsync</title><style>${STYLE}</style></head>
<body><header><strong>idsync</strong><a href="/runs">Runs</a><a href="/queues">Queues (bull-board)</a></header>
<main>${body}</main></body></html>`;
}

function stateCell(r: RunSummaryView, now: number): string {
  return `<span class="state-${esc(r.state)}" title="${esc(stateText(r, now))}">${esc(r.state)}</span>`;
}

/** The list of runs, latest first. */
export function runsPage(runs: RunSummaryView[], now: number): string {
  const rows = runs
    .map(
      (r) => `<tr data-run="${esc(r.runId)}">
<td><a href="${runPath(r.runId)}">${esc(r.runId)}</a><div class="muted">${esc(r.apiUrl)}</div></td>
<td>${esc(r.command)}</td><td>${stateCell(r, now)}</td>
<td class="num">${n(r.done)} / ${r.total === undefined ? '?' : n(r.total)}</td>
<td class="num">${n(r.counts.succeeded)}</td><td class="num">${n(r.counts.skipped)}</td>
<td class="num${r.counts.failed > 0 ? ' bad' : ''}">${n(r.counts.failed)}</td><td class="num${r.counts.rejected > 0 ? ' bad' : ''}">${n(r.counts.rejected)}</td>
<td>${esc(iso(r.startedAt ?? r.createdAt))}</td><td>${r.state === 'running' ? '–' : esc(iso(r.endedAt))}</td>
<td>${r.owner ? `${esc(r.owner.host)}:${r.owner.pid} ${r.owner.alive ? '' : '<span class="muted">(silent)</span>'}` : '–'}</td>
<td class="wrap"><code>${esc(r.input)}</code></td></tr>`,
    )
    .join('\n');
  const body = runs.length === 0
    ? '<h1>Runs</h1><p>No runs in this Redis yet.</p>'
    : `<h1>Runs</h1><table><thead><tr><th>Run</th><th>Command</th><th>State</th><th class="num">Rows</th><th class="num">Succeeded</th><th class="num">Skipped</th><th class="num">Failed</th><th class="num">Rejected</th><th>Started</th><th>Ended</th><th>Owner</th><th>Input</th></tr></thead><tbody>${rows}</tbody></table>`;
  return layout('Runs', body, { refresh: runs.some((r) => r.state === 'running') });
}

/**
 * The run's progress over time as an SVG: bars of rows finished per minute (done green, failed
 * red, on the left scale) and the rows finished since the first minute shown (a line, on its own
 * scale), for the minutes of the timeline (the last 24 h at most).
 */
export function progressChart(timeline: MinuteCounts[], width = 900, height = 220): string {
  if (timeline.length === 0) return '<p class="muted">No rows finished by a job yet: the chart starts with the first.</p>';
  const first = timeline[0]!.minute;
  const last = timeline[timeline.length - 1]!.minute;
  const span = Math.max(1, last - first + 1);
  const pad = { l: 48, r: 56, t: 12, b: 28 };
  const w = width - pad.l - pad.r;
  const h = height - pad.t - pad.b;
  const perMinuteMax = Math.max(1, ...timeline.map((m) => m.done + m.failed));
  let total = 0;
  const cumulative = timeline.map((m) => (total += m.done + m.failed));
  const bar = Math.max(1, w / span - 1);
  const x = (minute: number) => pad.l + ((minute - first) / span) * w;
  const y = (v: number, max: number) => pad.t + h - (v / max) * h;
  const bars = timeline
    .map((m) => {
      const done = `<rect class="done" x="${x(m.minute).toFixed(1)}" y="${y(m.done, perMinuteMax).toFixed(1)}" width="${bar.toFixed(1)}" height="${((m.done / perMinuteMax) * h).toFixed(1)}" fill="#5bb77a"><title>${esc(iso(m.minute * 60_000))}: ${m.done} done, ${m.failed} failed, ${m.retries} retries, ${m.throttles} throttles</title></rect>`;
      const failed = m.failed > 0 ? `<rect class="failed" x="${x(m.minute).toFixed(1)}" y="${y(m.done + m.failed, perMinuteMax).toFixed(1)}" width="${bar.toFixed(1)}" height="${((m.failed / perMinuteMax) * h).toFixed(1)}" fill="#d0453c"></rect>` : '';
      return done + failed;
    })
    .join('');
  // Rows finished by the end of each minute, from 0 at the start of the first.
  const line = [`${pad.l},${pad.t + h}`, ...timeline.map((m, i) => `${(x(m.minute) + bar).toFixed(1)},${y(cumulative[i]!, Math.max(1, total)).toFixed(1)}`)].join(' ');
  return `<svg id="progress" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="rows finished per minute and in all">
<line x1="${pad.l}" y1="${pad.t + h}" x2="${pad.l + w}" y2="${pad.t + h}" stroke="#9aa3b2"/>
${bars}
<polyline points="${line}" fill="none" stroke="#2f5fb3" stroke-width="2"/>
<text x="4" y="${pad.t + 10}" font-size="11" fill="#3d7a52">${n(perMinuteMax)}/min</text>
<text x="${width - pad.r + 4}" y="${pad.t + 10}" font-size="11" fill="#2f5fb3">${n(total)} rows</text>
<text x="${pad.l}" y="${height - 8}" font-size="11" fill="#6b7280">${esc(iso(first * 60_000))}</text>
<text x="${pad.l + w}" y="${height - 8}" font-size="11" fill="#6b7280" text-anchor="end">${esc(iso(last * 60_000 + 59_999))}</text>
</svg>`;
}

function errorsTable(classes: ErrorClass[], limit?: number): string {
  if (classes.length === 0) return '<p>No errors.</p>';
  const rows = (limit ? classes.slice(0, limit) : classes)
    .map((c) => {
      const x = c.example;
      const example = x
        ? `row ${x.row}${x.httpStatus ? ` (HTTP ${x.httpStatus})` : ''}: ${esc(x.error ?? x.action)}<div class="muted">${[x.file ? `file ${esc(x.file)}` : '', x.personId ? `personId ${esc(x.personId)}` : '', x.faceId ? `faceId ${esc(x.faceId)}` : '', x.documentId ? `documentId ${esc(x.documentId)}` : '', x.attempts ? `${x.attempts} attempt(s)` : ''].filter(Boolean).join(' · ')}</div>`
        : '–';
      return `<tr data-class="${esc(c.code)}"><td><code>${esc(c.code)}</code></td><td class="num">${n(c.failed)}</td><td class="num">${n(c.rejected)}</td><td class="num">${n(c.retried)}</td><td class="wrap">${example}</td></tr>`;
    })
    .join('\n');
  return `<table id="errors"><thead><tr><th>Class</th><th class="num">Failed</th><th class="num">Rejected</th><th class="num">Retried</th><th>Example</th></tr></thead><tbody>${rows}</tbody></table>`;
}

function filesList(runId: string, reportDir: string | undefined, files: ReportFile[] | undefined): string {
  if (!reportDir) return '<p class="muted">This run records no report folder.</p>';
  if (!files) return `<p class="muted">The report folder <code>${esc(reportDir)}</code> is not on this machine.</p>`;
  if (files.length === 0) return `<p class="muted">No report files in <code>${esc(reportDir)}</code> yet.</p>`;
  return `<p class="muted"><code>${esc(reportDir)}</code></p><ul id="files">${files.map((f) => `<li><a href="${runPath(runId)}/files/${encodeURIComponent(f.name)}">${esc(f.name)}</a> <span class="muted">${n(f.bytes)} bytes</span></li>`).join('')}</ul>`;
}

/** One run: its state, counts, rate and ETA, its progress over time, queue, workers, top error classes and report files. */
export function runPage(v: RunView, timeline: MinuteCounts[], files: ReportFile[] | undefined, boardQueue = v.runId): string {
  const c = v.counts;
  const cards = `<div class="cards" id="counts">
<div class="card"><span>rows</span><b data-count="done">${n(v.done)} / ${v.total === undefined ? '?' : n(v.total)}</b></div>
<div class="card ok"><span>succeeded</span><b data-count="succeeded">${n(c.succeeded)}</b></div>
<div class="card skip"><span>skipped</span><b data-count="skipped">${n(c.skipped)}</b></div>
${(['verified', 'mismatch', 'missing'] as const).filter((s) => c[s] !== undefined).map((s) => `<div class="card ${s === 'verified' ? 'ok' : 'fail'}"><span>${s}</span><b data-count="${s}">${n(c[s]!)}</b></div>`).join('\n')}
<div class="card fail"><span>failed</span><b data-count="failed">${n(c.failed)}</b></div>
<div class="card rej"><span>rejected</span><b data-count="rejected">${n(c.rejected)}</b></div></div>`;
  const rate = v.rate ? `${v.rate.perSecond.toFixed(1)} rows/s over the last ${formatDuration(v.rate.seconds)}` : '–';
  const eta = v.etaSeconds === undefined ? '–' : formatDuration(v.etaSeconds);
  const facts = `<dl>
<dt>Command</dt><dd>${esc(v.command)} <code>${esc(v.input)}</code></dd>
<dt>API</dt><dd>${esc(v.apiUrl)}</dd>
<dt>State</dt><dd class="state-${esc(v.state)}">${esc(stateText(v, v.now))}</dd>
<dt>Started</dt><dd>${esc(iso(v.startedAt ?? v.createdAt))}${v.state !== 'running' && v.endedAt !== undefined ? `, ended ${esc(iso(v.endedAt))}` : ''}</dd>
${v.state === 'running' ? `<dt>Rate</dt><dd>${esc(rate)}</dd><dt>ETA</dt><dd>${esc(eta)}</dd>` : ''}
<dt>Queue</dt><dd>${n(v.inFlight)} in flight, ${n(v.queue.waiting + v.queue.prioritized)} waiting, ${n(v.queue.delayed)} delayed${v.queue.paused ? ' (paused)' : ''} · <a href="${queuePath(boardQueue)}">jobs in bull-board</a></dd>
<dt>Retries</dt><dd>${n(v.retries)}; 429 throttles ${n(v.throttles)}${v.rateLimit !== undefined ? `; rate limit ${n(v.rateLimit)}/s` : ''}</dd>
<dt>Workers</dt><dd>${v.workers.length === 0 ? 'none' : v.workers.map((w) => `${esc(w.id)}${w.command ? ` (${esc(w.command)})` : ''}`).join(', ')}</dd>
</dl>`;
  const bad = v.errors.filter((e) => e.failed + e.rejected + e.retried > 0);
  const body = `<h1>Run <code>${esc(v.runId)}</code></h1>${cards}${facts}
<h2>Progress over time</h2>${progressChart(timeline)}
<h2>Error classes</h2>${errorsTable(bad, 10)}${bad.length > 10 ? `<p><a href="${runPath(v.runId)}/errors">all ${bad.length} classes</a></p>` : `<p><a href="${runPath(v.runId)}/errors">error classes page</a></p>`}
<h2>Report files</h2>${filesList(v.runId, v.reportDir, files)}`;
  return layout(`Run ${v.runId}`, body, { refresh: v.state === 'running' });
}

/** Every error class of a run, each with its example row. */
export function errorsPage(v: RunView): string {
  const body = `<h1>Error classes of <a href="${runPath(v.runId)}"><code>${esc(v.runId)}</code></a></h1>
<p class="muted">Rows that failed for good or were rejected, and attempts that failed and were tried again, by class, in the run's latest invocation; one example row each.</p>
${errorsTable(v.errors)}`;
  return layout(`Errors of ${v.runId}`, body, { refresh: v.state === 'running' });
}

export function messagePage(title: string, text: string): string {
  return layout(title, `<h1>${esc(title)}</h1><p>${esc(text)}</p>`);
}
