import type { Logger } from '../log.ts';
import type { RunStore } from '../queue/run-store.ts';
import { ReportWriter, type FailedCsvFormat, type RunSummary } from '../report/report-writer.ts';
import type { RowResult } from '../report/row-result.ts';
import { readManifest, type ManifestReadOptions, type ManifestRecord } from '../sources/manifest-reader.ts';

/** Manifest rows read ahead of the report at most (memory stays flat whatever the manifest). */
export const REPORT_WINDOW = 1000;
/** Results asked of Redis per call. */
const RESULTS_PER_CALL = 250;

export interface RunReportOptions {
  manifest: string;
  requiredColumns: readonly string[];
  /** The manifest's header, as read before the run. */
  columns: string[];
  knownColumns: readonly string[];
  failedRow?: (values: Record<string, string>) => Record<string, string>;
  /** How the manifest is read (delimiter, encoding, known columns): as for the enqueue. */
  read?: ManifestReadOptions;
  /** failed.csv's delimiter and header: the manifest's. */
  failedFormat?: FailedCsvFormat;
  runs: Pick<RunStore, 'getResults'>;
  reportDir: string;
  /** Rows that succeeded before this time were done by an earlier invocation of the run. */
  invocationStart: number;
  /** The action of a row that ends without a result (upload, download). */
  action: string;
  /** The report's cells for a row that never had a result (its ids from the manifest). */
  idsOf: (values: Record<string, string>) => Partial<RowResult>;
  log?: Logger;
}

/**
 * The run's report, written in manifest order while the run goes on: a row is written as soon as
 * it and every row before it have their final result, so when the last job ends only the rows
 * finished in the last moments are left (the report of a large run used to be written whole
 * after it, ~40 µs per row). Call `advance()` whenever results may have come in, and `finish()`
 * once the run is over, which gives the rows still without a result the reason why.
 *
 * A succeeded, skipped or rejected result is final once it is in Redis for this invocation (a job
 * that runs again finds it and returns it); a failed one is written only at the end, since its
 * job may still be retried. The enqueue pass, which forgets the results of rows it retries, is
 * over before the run's report starts, so what is written never changes afterwards.
 */
export class RunReport {
  readonly #o: RunReportOptions;
  readonly #writer: ReportWriter;
  readonly #records: AsyncGenerator<ManifestRecord>;
  /** Read from the manifest, not written yet (at most REPORT_WINDOW). */
  #window: ManifestRecord[] = [];
  #manifestDone = false;
  /** Set when writing failed: the report cannot go on, and finish() says why. */
  #broken: unknown;
  #advancing: Promise<void> | undefined;

  constructor(options: RunReportOptions) {
    this.#o = options;
    this.#writer = new ReportWriter(options.reportDir, options.columns, options.knownColumns, options.failedRow, options.failedFormat);
    this.#records = readManifest(options.manifest, options.requiredColumns, options.read);
  }

  /** Rows written so far. */
  get written(): number {
    return this.#writer.rows;
  }

  /**
   * Writes the rows, in order, up to the first one without a final result (none yet, or failed
   * and maybe to be retried). Never throws: a Redis error
   * leaves the rows for the next call or finish(); a failed write stops the report, and finish()
   * reports it.
   */
  advance(): Promise<void> {
    // One at a time: the wait loop may ask again while a call is still writing.
    this.#advancing ??= this.#fill(undefined)
      .catch((err: unknown) => {
        if (this.#broken === undefined) this.#o.log?.debug({ err }, 'report: results not read yet; trying again later');
        else if (this.#broken === err) this.#o.log?.warn({ err }, 'cannot write the report; the run goes on, and the command will end in this error');
      })
      .finally(() => {
        this.#advancing = undefined;
      });
    return this.#advancing;
  }

  /**
   * Writes every row still to be written; a row without a result gets `missing` as its reason.
   * Then closes the files and writes summary.json.
   */
  async finish(missing: { code: string; text: string }, summary: (endedAt: Date) => Parameters<ReportWriter['finish']>[0]): Promise<RunSummary> {
    await this.#advancing;
    return this.#writer.guard(async () => {
      if (this.#broken !== undefined) throw this.#broken;
      await this.#fill(missing);
      return this.#writer.finish(summary(new Date()));
    });
  }

  async #fill(missing: { code: string; text: string } | undefined): Promise<void> {
    if (this.#broken !== undefined) return;
    for (;;) {
      try {
        await this.#topUp();
      } catch (err) {
        // The manifest became unreadable: its generator is over, the report cannot go on.
        this.#broken = err;
        throw err;
      }
      if (this.#window.length === 0) return;
      const head = this.#window.slice(0, RESULTS_PER_CALL);
      const results = await this.#o.runs.getResults(head.map((r) => r.row));
      let n = 0;
      try {
        for (; n < head.length; n++) {
          const record = head[n]!;
          let result = results[n];
          // A failed row may still be tried again (its job retried after its result was written,
          // when a later step failed), so while the run goes on it waits like a row without one.
          if (!missing && result?.status === 'failed') break;
          if (!result) {
            if (!missing) break;
            result = { row: record.row, status: 'failed', action: this.#o.action, ...this.#o.idsOf(record.values), error: missing.text, errorCode: missing.code };
          } else if (result.status === 'succeeded' && (result.finishedAt ?? 0) < this.#o.invocationStart) {
            // Done by an earlier invocation of this run: nothing was sent for it this time.
            result = { ...result, status: 'skipped', action: `done-earlier (${result.action})` };
          }
          await this.#writer.add(result, record.values, record.raw);
        }
      } catch (err) {
        this.#broken = err;
        throw err;
      } finally {
        this.#window.splice(0, n);
      }
      if (n < head.length) return;
    }
  }

  /** For a run that ends without a report (an error before its end): closes the files, removes them. */
  async discard(): Promise<void> {
    // Not waiting for a call under way: with Redis unreachable it could wait for a long time.
    this.#broken ??= new Error('report discarded');
    await this.#records.return(undefined).catch(() => undefined);
    await this.#writer.discard();
  }

  async #topUp(): Promise<void> {
    while (!this.#manifestDone && this.#window.length < REPORT_WINDOW) {
      const next = await this.#records.next();
      if (next.done) this.#manifestDone = true;
      else this.#window.push(next.value);
    }
  }
}
