import cliProgress from 'cli-progress';
import type { Logger } from '../log.ts';
import type { StatusCounts } from './row-result.ts';

export interface ProgressState {
  done: number;
  counts: StatusCounts;
  total: number | undefined;
  /** Requests allowed in flight now (the API client's concurrencyLimit(); shown when given). */
  concurrency?: number;
  /** Over-capacity answers so far (the client's stats().overloaded; shown when given). */
  overloaded?: number;
}

/** " | C 12, 3 over capacity": what the adaptive concurrency is doing, when the caller says. */
function concurrencyText(s: ProgressState): string {
  if (s.concurrency === undefined) return '';
  return ` | C ${s.concurrency}${s.overloaded ? `, ${s.overloaded} over capacity` : ''}`;
}

export interface Progress {
  update(state: ProgressState): void;
  stop(): void;
}

/**
 * A live bar on a terminal (done/failed/total, items/s, ETA); elsewhere a progress log line
 * every few seconds, so CI logs and journald stay readable.
 */
export function createProgress(options: { log: Logger; label: string; tty?: boolean; everyMs?: number; now?: () => number }): Progress {
  const now = options.now ?? Date.now;
  const started = now();
  const tty = options.tty ?? process.stderr.isTTY === true;
  if (tty) {
    const bar = new cliProgress.SingleBar(
      {
        format: `${options.label} [{bar}] {value}/{total} | failed {failed} | rejected {rejected} | {speed}/s | ETA {eta_formatted}{concurrency}`,
        stream: process.stderr,
        hideCursor: true,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    let startedBar = false;
    return {
      update(s) {
        const elapsed = Math.max((now() - started) / 1000, 0.001);
        const payload = { failed: s.counts.failed, rejected: s.counts.rejected, speed: (s.done / elapsed).toFixed(1), concurrency: concurrencyText(s) };
        if (!startedBar) {
          bar.start(s.total ?? s.done, s.done, payload);
          startedBar = true;
        }
        bar.setTotal(s.total ?? Math.max(s.done, 1));
        bar.update(s.done, payload);
      },
      stop() {
        if (startedBar) bar.stop();
      },
    };
  }
  const everyMs = options.everyMs ?? 5000;
  let last = 0;
  return {
    update(s) {
      const t = now();
      if (t - last < everyMs) return;
      last = t;
      const elapsed = Math.max((t - started) / 1000, 0.001);
      const rate = s.done / elapsed;
      const eta = s.total && rate > 0 ? Math.round((s.total - s.done) / rate) : undefined;
      const adaptive = s.concurrency !== undefined ? { concurrency: s.concurrency, overCapacity: s.overloaded ?? 0 } : {};
      options.log.info({ done: s.done, failed: s.counts.failed, rejected: s.counts.rejected, total: s.total, itemsPerSecond: Number(rate.toFixed(1)), etaSeconds: eta, ...adaptive }, `${options.label}: ${s.done}/${s.total ?? '?'} done${concurrencyText(s)}`);
    },
    stop() {},
  };
}
