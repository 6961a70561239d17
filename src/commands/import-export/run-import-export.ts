import path from 'node:path';
import { removeStaleParts, STALE_PART_MS } from '../../outputs/part-files.ts';
import { requireApiSettings, type Config } from '../../config/load.ts';
import { createOutAtStart } from '../../outputs/out-dir.ts';
import { ConfigError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { dryRunBatch, runBatch, type BatchResult } from '../../engine/batch-run.ts';
import { Session } from '../../engine/session.ts';
import { ManifestPlan, type ManifestCommand } from './manifest-plan.ts';

export interface ImportExportOptions {
  command: ManifestCommand;
  manifest: string;
  /** export's --out. */
  outDir?: string;
  config: Config;
  log: Logger;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
  /** Human-readable lines (the summary); stdout by default. */
  out?: (line: string) => void;
  /** Test hooks. */
  allowInstallRedis?: boolean;
  tty?: boolean;
  graceMs?: number;
  pollMs?: number;
  idleCheckMs?: number;
  window?: number;
}

/**
 * `idsync import` and `idsync export`: the manifest as a plan (read whole before anything is
 * queued), worked by the engine; waits, reports, and says how it ended.
 */
export async function runImportExport(o: ImportExportOptions): Promise<BatchResult> {
  const { config, command } = o;
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  let outDir: string | undefined;
  if (command === 'export') {
    if (!o.outDir) throw new ConfigError('export needs --out DIR', '--out');
    outDir = path.resolve(o.outDir);
    // Before --out is made: a run whose every download its own workers would refuse sends nothing.
    await createOutAtStart(outDir, config.allowWrite);
  }
  const plan = await ManifestPlan.open({
    command,
    manifest: o.manifest,
    apiUrl: () => requireApiSettings(config).apiUrl,
    ...(outDir ? { outDir } : {}),
    checkExisting: config.checkExisting,
    delimiter: config.delimiter,
    encoding: config.encoding,
    ...(command === 'import' ? { allowRead: config.allowRead } : {}),
  });
  const reportDir = config.reportDir ?? path.resolve('idsync-reports', plan.runId);
  const session = await Session.open({ config, log: o.log.child({ runId: plan.runId }), signal: o.signal, state: !config.dryRun, ...(o.allowInstallRedis !== undefined ? { allowInstallRedis: o.allowInstallRedis } : {}) });
  try {
    if (config.dryRun) return await dryRunBatch({ plan, reportDir, out, signal: o.signal });
    if (outDir) await removeLeftovers(outDir, session.log);
    if (command === 'import' && !config.checkExisting && (await session.knowsNothing())) {
      session.log.warn(
        { stateDir: config.stateDir, redis: session.redis.where },
        'no record of earlier uploads to this API, neither in this Redis nor in the ledger of this state dir: if documents of this manifest were uploaded before (from another machine, state dir or Redis), stop and run again with --check-existing, so that each is looked up before it is sent',
      );
    }
    if (command === 'import' && !config.checkExisting && session.redisForgot) {
      session.log.warn(
        { stateDir: config.stateDir, redis: session.redis.where },
        'this Redis holds none of the state this state dir worked with for this API before (Redis emptied or replaced, or another --redis-prefix): documents stored then may be unknown to it, so each document is looked up on the server before it is sent (--check-existing) until this run has every row done',
      );
      plan.checkBeforeSending();
    }
    const result = await runBatch({
      session,
      plan,
      signal: o.signal,
      out,
      reportDir,
      retryHint: (failedCsv) => `retry the failed and rejected rows with: idsync ${command} ${failedCsv}${command === 'export' ? ' --out …' : ''}`,
      ...(o.tty !== undefined ? { tty: o.tty } : {}),
      ...(o.graceMs !== undefined ? { graceMs: o.graceMs } : {}),
      ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
      ...(o.idleCheckMs !== undefined ? { idleCheckMs: o.idleCheckMs } : {}),
      ...(o.window !== undefined ? { window: o.window } : {}),
    });
    if (command === 'import' && result.ending === 'done') await session.rememberRedisState();
    return result;
  } finally {
    await session.close();
  }
}

/** Temp files a killed download left under --out (old enough that no live download owns them) go. */
export async function removeLeftovers(outDir: string, log: Logger): Promise<void> {
  const stale = await removeStaleParts(outDir, STALE_PART_MS);
  if (stale.removed.length > 0) log.info({ removed: stale.removed.length, outDir }, 'removed temp files left by an interrupted run');
}
