import type { Logger } from '../log.ts';
import { ReportWriter, type FailedCsvFormat, type RunSummary } from './report-writer.ts';
import type { ReportRow, RowResult, RowStatus } from './row-result.ts';

/** Why rows ended without a result, for their report lines: `interrupted` after a stop, `failed` when their jobs were lost. */
export interface MissingReason {
  code: string;
  text: string;
  /** Default `failed`. */
  status?: 'failed' | 'interrupted';
  /** Whether running again may do them (default true: nothing final happened to them). */
  retryable?: boolean;
}

/** One line of the report: the row's number and its cells in the input. */
export interface ReportLine {
  row: number;
  values: Record<string, string>;
  /** The row's text as read, for a row that did not fit the header (failed.csv gets it back as it was). */
  raw?: string;
}

/** Manifest rows read ahead of the report at most (memory stays flat whatever the manifest). */
export const REPORT_WINDOW = 1000;
/** Results asked of Redis per call. */
const RESULTS_PER_CALL = 250;

export interface RunReportOptions {
  /** The run's lines in order (a manifest's rows), read again for the report. */
  lines: AsyncIterable<ReportLine>;
  /** The input's header, as read before the run. */
  columns: string[];
  knownColumns: readonly string[];
  failedRow?: (values: Record<string, string>) => Record<string, string>;
  /** failed.csv's delimiter and header: the input's. */
  failedFormat?: FailedCsvFormat;
  /** Statuses counted even when no row has them (a verify run's). */
  statuses?: readonly RowStatus[];
  /** The rows' results, from the run's store. */
  getResults(rows: number[]): Promise<Array<RowResult | undefined>>;
  /** Called with the rows just written: their results may be dropped from Redis (their status stays). */
  retire?(rows: number[]): Promise<void>;
  /**
   * The last row this invocation has queued or settled: until then a row's result in Redis may be
   * an earlier invocation's, about to be forgotten and done again, so the report waits for it.
   */
  preparedThrough?: () => number;
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
 * finished in the last moments are left, and a large run's report does not keep its end
 * waiting. Call `advance()` whenever results may have come in, and `finish()`
 * once the run is over, which gives the rows still without a result the reason why.
 *
 * A result is final once it is in Redis (a job that runs again finds it and returns it; a failed
 * one is recorded last, when nothing can retry its job any more), so a written line never
 * changes. The rows written are then retired from Redis (only their status stays), which keeps
 * Redis's memory of a run bounded by how far the report lags, not by the run's size.
 */
export class RunReport {
  readonly #o: RunReportOptions;
  readonly #writer: ReportWriter;
  readonly #records: AsyncIterator<ReportLine>;
  /** Read from the input, not written yet (at most REPORT_WINDOW). */
  #window: ReportLine[] = [];
  #manifestDone = false;
  /** Set when writing failed: the report cannot go on, and finish() says why. */
  #broken: unknown;
  #advancing: Promise<void> | undefined;

  constructor(options: RunReportOptions) {
    this.#o = options;
    this.#writer = new ReportWriter(options.reportDir, options.columns, options.knownColumns, options.failedRow, options.failedFormat, undefined, options.statuses);
    this.#records = options.lines[Symbol.asyncIterator]();
  }

  /** Rows written so far. */
  get written(): number {
    return this.#writer.rows;
  }

  /**
   * Writes the rows, in order, up to the first one without a result. Never throws: a Redis error
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
  async finish(missing: MissingReason, summary: (endedAt: Date) => Parameters<ReportWriter['finish']>[0]): Promise<RunSummary> {
    await this.#advancing;
    return this.#writer.guard(async () => {
      if (this.#broken !== undefined) throw this.#broken;
      await this.#fill(missing);
      return this.#writer.finish(summary(new Date()));
    });
  }

  async #fill(missing: MissingReason | undefined): Promise<void> {
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
      const results = await this.#o.getResults(head.map((r) => r.row));
      let n = 0;
      try {
        for (; n < head.length; n++) {
          const record = head[n]!;
          if (!missing && this.#o.preparedThrough && record.row > this.#o.preparedThrough()) break;
          let result: ReportRow | undefined = results[n];
          if (!result) {
            if (!missing) break;
            result = {
              row: record.row,
              status: missing.status ?? 'failed',
              action: this.#o.action,
              ...this.#o.idsOf(record.values),
              error: missing.text,
              errorCode: missing.code,
              retryable: missing.retryable ?? true,
            };
          } else if (result.action === 'done-earlier') {
            // Retired to its status (the row's result JSON is gone once a report wrote it): the
            // manifest row still says which row it was.
            result = { ...this.#o.idsOf(record.values), ...result, status: result.status === 'succeeded' ? 'skipped' : result.status };
          } else if (result.status === 'succeeded' && (result.finishedAt ?? 0) < this.#o.invocationStart) {
            // Done by an earlier invocation of this run: nothing was sent for it this time.
            result = { ...result, status: 'skipped', action: result.action === 'done-earlier' ? result.action : `done-earlier (${result.action})` };
          }
          await this.#writer.add(result, record.values, record.raw);
        }
      } catch (err) {
        this.#broken = err;
        throw err;
      } finally {
        const written = this.#window.splice(0, n);
        if (written.length > 0) await this.#o.retire?.(written.map((r) => r.row)).catch((err: unknown) => this.#o.log?.debug({ err }, 'report: cannot retire written rows yet'));
      }
      if (n < head.length) return;
    }
  }

  /** For a run that ends without a report (an error before its end): closes the files, removes them. */
  async discard(): Promise<void> {
    // Not waiting for a call under way: with Redis unreachable it could wait for a long time.
    this.#broken ??= new Error('report discarded');
    await this.#records.return?.(undefined).catch(() => undefined);
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
