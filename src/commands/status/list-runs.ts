import type { Config } from '../../config/load.ts';
import type { Logger } from '../../log.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { listRunMetas } from './run-lookup.ts';
import { summarizeRun, type RunSummaryView } from './run-view.ts';
import { storesToRead } from './state-session.ts';
import { runsLines } from './status-text.ts';

export interface RunsOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  out?: (line: string) => void;
  /** Every API this Redis served, not only the configured one. */
  all?: boolean;
  json?: boolean;
  /** Most runs listed (the latest). */
  limit?: number;
  now?: () => number;
}

/** The runs an operator asked for, latest first (grouped by API when there are several). */
export async function readRuns(session: Session, options: { all: boolean; limit: number; now: number }): Promise<RunSummaryView[]> {
  const stores = await storesToRead(session, options.all);
  const found = (await listRunMetas(stores)).slice(0, options.limit);
  const runs = await Promise.all(found.map(({ store, meta }) => summarizeRun(store, meta, options.now)));
  // Stable: within an API, the latest start first.
  return runs.map((r, i) => ({ r, i })).sort((a, b) => a.r.apiUrl.localeCompare(b.r.apiUrl) || a.i - b.i).map((x) => x.r);
}

/** `idsync runs [--all] [--json]`: id, command, input, state, counts, times and owner of each run. */
export async function runRuns(o: RunsOptions): Promise<number> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const now = (o.now ?? Date.now)();
    const all = o.all === true || !o.config.apiUrl;
    const runs = await readRuns(session, { all, limit: o.limit ?? 50, now });
    if (o.json) {
      out(JSON.stringify(runs, null, 2));
      return ExitCode.Ok;
    }
    if (runs.length === 0) out(o.config.apiUrl && !o.all ? `no runs for ${o.config.apiUrl} in this Redis (--all lists every API's)` : 'no runs in this Redis');
    else for (const line of runsLines(runs, now, { showApi: all })) out(line);
    return ExitCode.Ok;
  } finally {
    await session.close();
  }
}
