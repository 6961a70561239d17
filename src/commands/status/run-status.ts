import type { Config } from '../../config/load.ts';
import type { Logger } from '../../log.ts';
import type { Clock } from '../../pacing/clock.ts';
import { systemClock } from '../../pacing/clock.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { pickRun } from './run-lookup.ts';
import { viewRun } from './run-view.ts';
import { storesToRead } from './state-session.ts';
import { statusLines } from './status-text.ts';

/** How often `--watch` draws the status again. */
export const WATCH_EVERY_MS = 2000;

export interface StatusOptions {
  config: Config;
  log: Logger;
  /** Aborted on Ctrl-C: ends --watch. */
  signal: AbortSignal;
  /** RUN: an id or the start of one; default the latest running run. */
  run?: string;
  watch?: boolean;
  json?: boolean;
  all?: boolean;
  /** Where frames go; `clear` empties a terminal before each one (--watch on a TTY). */
  out?: (line: string) => void;
  clear?: () => void;
  clock?: Clock;
  /** Test hook: frames drawn at most. */
  frames?: number;
}

/**
 * `idsync status [RUN] [--watch]`: one run's progress, rate, ETA, queue, retries, error classes
 * and workers, read from Redis (no login), from any terminal and folder. With --watch, drawn
 * again every 2 s until Ctrl-C, following the run picked at the start.
 */
export async function runStatus(o: StatusOptions): Promise<number> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const clock = o.clock ?? systemClock;
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const stores = await storesToRead(session, o.all === true);
    const picked = await pickRun(stores, o.run);
    let note = picked.note;
    for (let frame = 1; ; frame++) {
      const meta = (await picked.store.run(picked.meta.runId).getMeta()) ?? picked.meta;
      const view = await viewRun(session, picked.store, meta, clock.now());
      if (o.json) out(JSON.stringify(view, null, o.watch ? undefined : 2));
      else {
        if (o.watch) o.clear?.();
        for (const line of statusLines(view, note)) out(line);
        if (o.watch) out(`\n(every ${WATCH_EVERY_MS / 1000} s; Ctrl-C to stop watching: the run goes on)`);
      }
      note = undefined;
      if (!o.watch || o.signal.aborted || (o.frames !== undefined && frame >= o.frames)) break;
      await clock.sleep(WATCH_EVERY_MS, o.signal).catch(() => undefined);
      if (o.signal.aborted) break;
      if (!o.json && !o.clear) out('');
    }
    return ExitCode.Ok;
  } finally {
    await session.close();
  }
}
