import path from 'node:path';
import { requireApiSettings, type Config } from '../../config/load.ts';
import type { Logger } from '../../log.ts';
import { systemClock, type Clock } from '../../pacing/clock.ts';
import { runBatch, type BatchResult } from '../../engine/batch-run.ts';
import { Session } from '../../engine/session.ts';
import { VerifyPlan } from './verify-plan.ts';

export interface VerifyOptions {
  /** A manifest, a report.csv, an index.csv, or an archive folder. */
  input: string;
  /** --out: the folder an export's report (or an index away from its archive) names files in. */
  outDir?: string;
  /** --remote: compare a folder's files with the server's copies too. */
  remote: boolean;
  config: Config;
  log: Logger;
  /** Aborted on the first Ctrl-C / SIGTERM. */
  signal: AbortSignal;
  /** Human-readable lines (the summary); stdout by default. */
  out?: (line: string) => void;
  /** The start time that names the run (default: the system clock). */
  clock?: Clock;
  /** Test hooks. */
  tty?: boolean;
  pollMs?: number;
}

/**
 * `idsync verify`: the input as a plan of verify jobs, worked by the engine like any other run
 * (concurrency, --rate, retries, tokens, `idsync worker` processes); waits, reports, and exits 0
 * only when every row is verified.
 */
export async function runVerify(o: VerifyOptions): Promise<BatchResult> {
  const { config } = o;
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const plan = await VerifyPlan.open({
    input: o.input,
    ...(o.outDir ? { outDir: o.outDir } : {}),
    remote: o.remote,
    apiUrl: () => requireApiSettings(config).apiUrl,
    startedAt: (o.clock ?? systemClock).now(),
    delimiter: config.delimiter,
    encoding: config.encoding,
  });
  const reportDir = config.reportDir ?? path.resolve('idsync-reports', plan.runId);
  const again = (failedCsv: string) => `idsync verify ${failedCsv}${plan.filesDir ? ` --out ${plan.filesDir}` : ''}${o.remote ? ' --remote' : ''}`;
  const session = await Session.open({ config, log: o.log.child({ runId: plan.runId }), signal: o.signal, state: true });
  try {
    return await runBatch({
      session,
      plan,
      signal: o.signal,
      out,
      reportDir,
      retryHint: (failedCsv) => `check the rows not verified again (once fixed) with: ${again(failedCsv)}`,
      ...(o.tty !== undefined ? { tty: o.tty } : {}),
      ...(o.pollMs !== undefined ? { pollMs: o.pollMs } : {}),
    });
  } finally {
    await session.close();
  }
}
