import type { Config } from '../../config/load.ts';
import { UsageError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import type { ApiStore } from '../../store/api-store.ts';
import { runQueueName } from '../../store/keys.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { storesToRead } from '../status/state-session.ts';

export interface LimitsOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  out?: (line: string) => void;
  /** Remove the stored limit (and the limiter of the API's runs' queues). */
  clear?: boolean;
  all?: boolean;
  json?: boolean;
}

export interface ApiLimits {
  apiUrl: string;
  /** Requests per second across all workers, stored by `--rate N`; absent = unlimited. */
  rate?: number;
  /** Runs whose queue has BullMQ's global limiter set now (running ones follow it). */
  limitedRuns: Array<{ runId: string; state: string; max: number; durationMs: number }>;
}

async function readLimits(session: Session, store: ApiStore): Promise<ApiLimits> {
  const [rate, runs] = await Promise.all([store.rateLimit(), store.listRuns()]);
  const limited = await Promise.all(
    runs.map(async (meta) => {
      const limit = await session.queue(runQueueName(meta.runId), store).getGlobalRateLimit();
      return limit ? { runId: meta.runId, state: meta.state, max: limit.max, durationMs: limit.duration } : undefined;
    }),
  );
  return { apiUrl: store.apiUrl, ...(rate !== undefined ? { rate } : {}), limitedRuns: limited.filter((l) => l !== undefined) };
}

/**
 * `idsync limits [--clear]`: what is stored with an API beyond one run (today: the global rate
 * limit that `--rate N` keeps for every later command and worker), and removes it. `--rate 0` on
 * a job command removes it too.
 */
export async function runLimits(o: LimitsOptions): Promise<number> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  if (o.clear && !o.config.apiUrl && !o.all) throw new UsageError('--clear needs the API: give --api-url (or IDSYNC_API_URL), or --all to clear the limits of every API in this Redis');
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const stores = await storesToRead(session, o.all === true);
    const limits = await Promise.all(stores.map((store) => readLimits(session, store)));
    if (o.clear) {
      for (const [i, store] of stores.entries()) {
        const l = limits[i]!;
        await store.setRateLimit(undefined);
        for (const r of l.limitedRuns) await session.queue(runQueueName(r.runId), store).removeGlobalRateLimit();
        out(l.rate !== undefined || l.limitedRuns.length > 0 ? `${l.apiUrl}: removed the rate limit${l.rate !== undefined ? ` of ${l.rate} requests/s` : ''}${l.limitedRuns.length > 0 ? ` (also from ${l.limitedRuns.length} run queue${l.limitedRuns.length === 1 ? '' : 's'})` : ''}; commands and workers run unlimited unless given --rate` : `${l.apiUrl}: no rate limit was stored`);
      }
      return ExitCode.Ok;
    }
    if (o.json) {
      out(JSON.stringify(limits, null, 2));
      return ExitCode.Ok;
    }
    if (limits.length === 0) out('no API has used this Redis');
    for (const l of limits) {
      out(`${l.apiUrl}: rate limit ${l.rate !== undefined ? `${l.rate} requests/s across all workers (set by --rate; \`idsync limits --clear\` or --rate 0 removes it)` : 'none stored (unlimited unless a command passes --rate)'}`);
      for (const r of l.limitedRuns) out(`  run ${r.runId} (${r.state}): its queue's limiter allows ${r.max} jobs per ${r.durationMs} ms`);
    }
    return ExitCode.Ok;
  } finally {
    await session.close();
  }
}
