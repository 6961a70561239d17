import type { Config } from '../../config/load.ts';
import type { Logger } from '../../log.ts';
import type { ApiStore } from '../../store/api-store.ts';
import { runQueueName } from '../../store/keys.ts';
import { ownerAlive, type RunMeta } from '../../store/run-store.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { formatDuration } from './recent-rate.ts';
import { pickRun } from './run-lookup.ts';
import { storesToRead } from './state-session.ts';

/** In-flight jobs looked at, to say which workers hold them. */
const ACTIVE_LOOKED_AT = 1000;

export interface CancelOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  run: string;
  /** Cancel even though the run's owner is alive (its wait loop then ends the run: exit 130). */
  force?: boolean;
  all?: boolean;
  out?: (line: string) => void;
  now?: () => number;
}

export interface CancelResult {
  exitCode: number;
  runId?: string;
  /** Jobs removed from the run's queue, by the state they were in. */
  removed?: Record<string, number>;
  /** Jobs that were being worked on, by worker (host:pid, or `unknown`). */
  inFlight?: Record<string, number>;
}

const n = (x: number) => x.toLocaleString('en-US');

/**
 * `idsync cancel RUN`: removes every job of the run from its queue (BullMQ obliterate: the queue
 * is named after the run, so nothing else goes), marks the run `cancelled` (no `idsync worker`
 * serves it from then on), and says what it removed. A run whose owner is alive is refused
 * unless --force: its owner then sees the state in its wait loop, stops queueing, writes its
 * report and exits 130. The rows without a result stay so: the same command run again does them.
 */
export async function cancelRun(o: CancelOptions): Promise<CancelResult> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const now = (o.now ?? Date.now)();
    const { store, meta } = await pickRun(await storesToRead(session, o.all === true), o.run);
    const owner = meta.owner ? `${meta.owner.host}:${meta.owner.pid}` : undefined;
    const alive = meta.state === 'running' && ownerAlive(meta, now);
    if (alive && !o.force) {
      out(`run ${meta.runId} is running: its owner ${owner} renewed its heartbeat ${formatDuration((now - meta.owner!.at) / 1000)} ago. Nothing was changed.`);
      out(`Stop it there (Ctrl-C keeps its jobs for a rerun), or cancel it anyway with: idsync cancel ${meta.runId} --force (its owner then stops, writes its report and exits 130).`);
      return { exitCode: ExitCode.RowsFailed, runId: meta.runId };
    }
    return { exitCode: ExitCode.Ok, runId: meta.runId, ...(await cancel(session, store, meta, { alive, now, out })) };
  } finally {
    await session.close();
  }
}

async function cancel(session: Session, store: ApiStore, meta: RunMeta, o: { alive: boolean; now: number; out: (line: string) => void }): Promise<Pick<CancelResult, 'removed' | 'inFlight'>> {
  const { out } = o;
  const run = store.run(meta.runId);
  const queue = session.queue(runQueueName(meta.runId), store);
  // The state first: workers stop taking the run's jobs and its owner stops queueing more,
  // then the queue goes (with what it holds at that moment).
  if (meta.state !== 'done') await run.updateMeta({ state: 'cancelled', endedAt: o.now });
  const counts = await queue.getJobCounts('waiting', 'prioritized', 'delayed', 'active', 'waiting-children', 'completed', 'failed');
  const inFlight: Record<string, number> = {};
  if ((counts.active ?? 0) > 0) {
    for (const job of await queue.getJobs(['active'], 0, ACTIVE_LOOKED_AT - 1)) {
      const by = job?.processedBy ?? 'unknown';
      inFlight[by] = (inFlight[by] ?? 0) + 1;
    }
  }
  await queue.obliterate({ force: true });
  const removed = Object.fromEntries(Object.entries(counts).filter(([, v]) => v > 0));
  const total = Object.values(removed).reduce((a, b) => a + b, 0);
  const what = `${meta.command} of ${meta.input}`;
  if (meta.state === 'done') out(`run ${meta.runId} (${what}) was already done; it stays done.`);
  else out(`cancelled run ${meta.runId} (${what}), which was ${meta.state}.`);
  out(total === 0 ? 'its queue held no jobs.' : `removed ${n(total)} job${total === 1 ? '' : 's'} from its queue: ${Object.entries(removed).map(([state, count]) => `${n(count)} ${state}`).join(', ')}.`);
  const active = counts.active ?? 0;
  if (active > 0) {
    const holders = Object.entries(inFlight).map(([by, count]) => `${by} (${n(count)})`).join(', ');
    out(
      `${n(active)} of them were in flight on ${holders}: each finishes its current attempt and records its result, or is cancelled once its lock cannot be renewed (within ~${formatDuration(session.config.lockDurationMs / 2000)}); none is tried again. ` +
        'An upload cut short stays in doubt, and a rerun asks the API before sending it again.',
    );
  }
  if (o.alive) out(`its owner ${meta.owner!.host}:${meta.owner!.pid} notices within a second: it stops queueing, writes its report and exits 130.`);
  if (meta.state !== 'done') {
    const counts = await run.counts();
    const done = counts.succeeded + counts.skipped + counts.failed + counts.rejected;
    const left = meta.total !== undefined ? meta.total - done : undefined;
    out(`${n(done)} rows have a result${left !== undefined ? `, ${n(left)} have none` : ''}; running the same ${meta.command} command again does the rest (rows done are skipped).`);
  }
  return { removed, inFlight };
}
