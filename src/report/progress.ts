import cliProgress from 'cli-progress';
import type { Logger } from '../log.ts';
import type { StatusCounts } from './row-result.ts';

export interface ProgressState {
  done: number;
  counts: StatusCounts;
  total: number | undefined;
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
        format: `${options.label} [{bar}] {value}/{total} | failed {failed} | rejected {rejected} | {speed}/s | ETA {eta_formatted}`,
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
        const payload = { failed: s.counts.failed, rejected: s.counts.rejected, speed: (s.done / elapsed).toFixed(1) };
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
      options.log.info({ done: s.done, failed: s.counts.failed, rejected: s.counts.rejected, total: s.total, itemsPerSecond: Number(rate.toFixed(1)), etaSeconds: eta }, `${options.label}: ${s.done}/${s.total ?? '?'} done`);
    },
    stop() {},
  };
}
