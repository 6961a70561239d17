import type { Logger } from '../log.ts';
import { stderrStatus, type StatusLine } from '../status-line.ts';
import { etaSeconds, formatEta, RateWindow } from './rate-window.ts';
import type { BaseStatus, StatusCounts } from './row-result.ts';

export interface ProgressState {
  /** Rows with a result. */
  done: number;
  counts: StatusCounts;
  total: number | undefined;
  /** Requests this process keeps in flight at most (its current concurrency), when it works. */
  concurrency?: number;
  /** Over-capacity answers so far (the client's stats().overloaded; shown when given, --concurrency auto). */
  overloaded?: number;
}

export interface Progress {
  update(state: ProgressState): void;
  stop(): void;
}

/** Statuses whose growth is work done (rejected rows are recorded in bursts while rows are queued). */
const WORKED: readonly BaseStatus[] = ['succeeded', 'skipped', 'failed'];
/** Progress log lines: every 5 s in the first minute (short runs, CI), then every minute. */
const FIRST_MINUTE_EVERY_MS = 5_000;
const LATER_EVERY_MS = 60_000;
const BAR_WIDTH = 24;

/**
 * Where a run is, honestly: the rate over the last minute of rows worked in this invocation (rows
 * done by an earlier one are neither speed nor progress of this one), an ETA from that rate
 * (`unknown` until there is one, never NaN or Infinity), failed and rejected apart, and this
 * process's concurrency when it works. On a terminal a live bar on stderr's status line (log lines
 * print above it); elsewhere a log line every few seconds, so CI logs and journald stay readable.
 */
export function createProgress(options: {
  log: Logger;
  label: string;
  tty?: boolean;
  everyMs?: number;
  now?: () => number;
  statusLine?: StatusLine;
  /** This process's concurrency now, when it works (undefined: it only waits). */
  concurrency?: () => number | undefined;
}): Progress {
  const now = options.now ?? Date.now;
  const started = now();
  const tty = options.tty ?? process.stderr.isTTY === true;
  const rate = new RateWindow();
  let previous: Record<BaseStatus, number> | undefined;
  let worked = 0;
  const withConcurrency = (s: ProgressState): ProgressState => {
    const concurrency = s.concurrency ?? options.concurrency?.();
    return concurrency === undefined ? s : { ...s, concurrency };
  };
  const measure = (s: ProgressState) => {
    // Growth per status, never shrinkage: a rerun's failed rows leave `failed` as they are queued
    // again, and come back as succeeded (or failed) when done.
    if (previous) for (const status of WORKED) worked += Math.max(0, s.counts[status] - previous[status]);
    previous = { ...s.counts };
    const t = now();
    rate.add(t, worked);
    const perSecond = rate.perSecond();
    const eta = s.total === undefined ? undefined : etaSeconds(s.total - s.done, perSecond);
    return { t, perSecond, eta };
  };

  if (tty) {
    const status = options.statusLine ?? stderrStatus;
    let shown = false;
    return {
      update(given) {
        const s = withConcurrency(given);
        const { perSecond, eta } = measure(s);
        status.show(barText(options.label, s, perSecond, eta));
        shown = true;
      },
      stop() {
        if (shown) status.done();
      },
    };
  }
  let last = Number.NEGATIVE_INFINITY;
  return {
    update(given) {
      const s = withConcurrency(given);
      const { t, perSecond, eta } = measure(s);
      const every = options.everyMs ?? (t - started < 60_000 ? FIRST_MINUTE_EVERY_MS : LATER_EVERY_MS);
      if (t - last < every) return;
      last = t;
      const speed = perSecond === undefined ? undefined : Number(perSecond.toFixed(1));
      options.log.info(
        {
          done: s.done,
          total: s.total,
          succeeded: s.counts.succeeded,
          skipped: s.counts.skipped,
          failed: s.counts.failed,
          rejected: s.counts.rejected,
          ...(speed !== undefined ? { itemsPerSecond: speed } : {}),
          ...(eta !== undefined ? { etaSeconds: eta } : {}),
          ...(s.concurrency !== undefined ? { concurrency: s.concurrency } : {}),
          ...(s.overloaded !== undefined ? { overCapacity: s.overloaded } : {}),
        },
        `${options.label}: ${s.done}/${s.total ?? '?'} done, ${speed === undefined ? 'rate not known yet' : `${speed}/s over the last minute`}, ETA ${formatEta(eta)}${s.overloaded ? `, ${s.overloaded} answers over the API's capacity` : ''}`,
      );
    },
    stop() {},
  };
}

/** `import [#########---------] 505/1000 | failed 3 | rejected 1 | 12.3/s | ETA 41 s | concurrency 8` */
export function barText(label: string, s: ProgressState, perSecond: number | undefined, eta: number | undefined): string {
  const total = s.total ?? 0;
  const filled = total > 0 ? Math.min(BAR_WIDTH, Math.round((s.done / total) * BAR_WIDTH)) : 0;
  const bar = `${'█'.repeat(filled)}${'░'.repeat(BAR_WIDTH - filled)}`;
  const parts = [
    `${label} [${bar}] ${s.done}/${s.total ?? '?'}`,
    `failed ${s.counts.failed}`,
    `rejected ${s.counts.rejected}`,
    perSecond === undefined ? '-/s' : `${perSecond.toFixed(1)}/s`,
    `ETA ${eta === undefined ? '-' : formatEta(eta)}`,
  ];
  if (s.concurrency !== undefined) parts.push(`concurrency ${s.concurrency}${s.overloaded ? `, ${s.overloaded} over capacity` : ''}`);
  return parts.join(' | ');
}
