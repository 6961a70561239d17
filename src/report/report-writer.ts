import { createWriteStream, mkdirSync } from 'node:fs';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { once } from 'node:events';
import type { Writable } from 'node:stream';
import { ReportWriteError } from '../errors.ts';
import { stringify } from 'csv-stringify/sync';
import { VERSION } from '../version.ts';
import { emptyCounts, OK_STATUSES, REPORT_COLUMNS, rowsDone, type ReportRow, type RowStatus, type StatusCounts } from './row-result.ts';
import { spreadsheetSafe } from './spreadsheet-cell.ts';

export interface RunSummary {
  runId: string;
  command: string;
  /** idsync's version that wrote the report. */
  version: string;
  manifest?: string;
  startedAt: string;
  endedAt: string;
  interrupted: boolean;
  rows: number;
  counts: StatusCounts;
  /** Rows per error class (errorCode) among the rows not OK. */
  errors: Record<string, number>;
  bytes: number;
  seconds: number;
  itemsPerSecond: number;
  reportDir: string;
  /** The settings the run used (never a secret; see src/config/public-settings.ts). */
  options?: Record<string, unknown>;
}

/** What a caller says about a run; the writer adds what it counted. */
export type SummaryInput = Omit<RunSummary, 'rows' | 'counts' | 'errors' | 'bytes' | 'reportDir' | 'itemsPerSecond' | 'version'>;

/** Opens one report file for writing; injectable so tests can make a disk fill up. */
export type ReportFileOpener = (file: string) => Writable;

/**
 * fsync'd before the close completes (`flush`): on most disks a full disk shows only when the
 * data is written back, and a report must not take its real name before that has succeeded.
 */
const openForReport: ReportFileOpener = (file) => createWriteStream(file, { flush: true });

/**
 * One report file. Its stream's first error (disk full, say) is kept, as a ReportWriteError naming
 * the file, and makes every later write and the close reject: a stream 'error' with no listener
 * would end the whole process, and the report is written while jobs are still running. Closing
 * twice is closing once.
 */
class ReportFile {
  readonly path: string;
  readonly #stream: Writable;
  #error: ReportWriteError | undefined;
  #closing: Promise<void> | undefined;

  constructor(file: string, openFile: ReportFileOpener) {
    this.path = file;
    this.#stream = openFile(file);
    this.#stream.on('error', (err) => {
      this.#error ??= new ReportWriteError(file, err);
    });
  }

  async write(text: string): Promise<void> {
    if (this.#error) throw this.#error;
    if (!this.#stream.write(text)) await this.#until('drain');
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      if (this.#error) throw this.#error;
      this.#stream.end();
      // 'close' (not 'finish'): only then has the flush (fsync) of the file been done.
      await this.#until('close');
      if (this.#error) throw this.#error;
    })();
    return this.#closing;
  }

  /** The event, or the stream's error (events.once rejects on 'error'). */
  async #until(event: 'drain' | 'close'): Promise<void> {
    if (this.#error) throw this.#error;
    try {
      await once(this.#stream, event);
    } catch (err) {
      throw (this.#error ??= new ReportWriteError(this.path, err));
    }
  }
}

/** How failed.csv repeats the manifest: its delimiter and its header as written. */
export interface FailedCsvFormat {
  /** Default `,`. */
  delimiter?: string;
  /** The header cells as the manifest wrote them; default: the manifest's column keys. */
  header?: readonly string[];
}

/** Rows formatted and written together (one CSV formatting call and one write per file). */
const ROWS_PER_WRITE = 256;

/** The report's files, each written under a `.partial` name until the report is finished. */
const FILES = ['report.csv', 'report.jsonl', 'failed.csv'] as const;
const SUMMARY = 'summary.json';
const PARTIAL = '.partial';

/**
 * Writes report.csv, report.jsonl and failed.csv as rows arrive (in manifest order), then
 * summary.json. Rows are formatted and written ROWS_PER_WRITE at a time (a write per row costs a
 * syscall each), which is also all the memory the writer holds.
 *
 * The files grow under `.partial` names and take their real names only when the whole report,
 * summary.json included, has been written and flushed: a report that fails (disk full) or is
 * abandoned keeps its `.partial` names, and the previous invocation's report stays whole.
 */
export class ReportWriter {
  readonly dir: string;
  readonly #csv: ReportFile;
  readonly #jsonl: ReportFile;
  readonly #failed: ReportFile;
  readonly #passThrough: string[];
  readonly #manifestColumns: string[];
  readonly counts: StatusCounts;
  readonly errors: Record<string, number> = {};
  bytes = 0;
  rows = 0;

  readonly #failedRow: (values: Record<string, string>) => Record<string, string>;
  readonly #failedDelimiter: string;
  readonly #openFile: ReportFileOpener;

  /**
   * `failedRow` may adjust a failed row for failed.csv, which lives in another folder than the
   * manifest: import rewrites a relative `file` to an absolute path so the retry finds it.
   * failed.csv is written in UTF-8 (whatever the manifest's encoding) with `failedFormat`'s delimiter.
   * `statuses`: statuses counted even when no row has them (a verify run's), besides every command's four.
   */
  constructor(
    dir: string,
    manifestColumns: string[],
    knownColumns: readonly string[],
    failedRow: (values: Record<string, string>) => Record<string, string> = (v) => v,
    failedFormat: FailedCsvFormat = {},
    openFile: ReportFileOpener = openForReport,
    statuses: readonly RowStatus[] = [],
  ) {
    this.counts = emptyCounts(statuses);
    this.#failedRow = failedRow;
    this.#failedDelimiter = failedFormat.delimiter ?? ',';
    this.dir = dir;
    this.#openFile = openFile;
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new ReportWriteError(dir, err);
    }
    this.#manifestColumns = manifestColumns;
    const reserved = new Set<string>([...REPORT_COLUMNS, ...knownColumns]);
    this.#passThrough = manifestColumns.filter((c) => c !== '' && !reserved.has(c));
    this.#csv = new ReportFile(path.join(dir, `report.csv${PARTIAL}`), openFile);
    this.#jsonl = new ReportFile(path.join(dir, `report.jsonl${PARTIAL}`), openFile);
    this.#failed = new ReportFile(path.join(dir, `failed.csv${PARTIAL}`), openFile);
    // Headers: a failure shows at the next write or at the close.
    this.#csv.write(stringify([[...REPORT_COLUMNS, ...this.#passThrough.map(spreadsheetSafe)]])).catch(() => undefined);
    // failed.csv is the manifest's own format, values untouched, so it can be fed back to idsync.
    this.#failed.write(stringify([[...(failedFormat.header ?? manifestColumns)]], { delimiter: this.#failedDelimiter })).catch(() => undefined);
  }

  #csvLines: unknown[][] = [];
  #jsonLines: string[] = [];
  /** Cells of rows that fitted the header, or the text of a row that did not, as read. */
  #failedLines: Array<string[] | string> = [];

  /**
   * `raw`, given for a row whose cells did not fit the header, is what failed.csv gets for it:
   * cells spread over the columns would shift (a `Smith, John` split in two sends "John" as the
   * description), so the operator gets the row back as written, to fix it (#15.8).
   */
  async add(given: ReportRow, manifestValues: Record<string, string>, raw?: string): Promise<void> {
    // An invalid row stays invalid however often it is run: never retryable as it is.
    const result = given.status === 'rejected' && given.retryable === undefined ? { ...given, retryable: false } : given;
    this.rows++;
    this.counts[result.status] = (this.counts[result.status] ?? 0) + 1;
    if (result.errorCode && !OK_STATUSES.has(result.status)) this.errors[result.errorCode] = (this.errors[result.errorCode] ?? 0) + 1;
    // Bytes moved, or (verify) checked: a skipped row's file was moved by an earlier run.
    if ((result.status === 'succeeded' || result.status === 'verified') && result.bytes) this.bytes += result.bytes;
    const line = REPORT_COLUMNS.map((c) => spreadsheetSafe(result[c]));
    for (const c of this.#passThrough) line.push(spreadsheetSafe(manifestValues[c]));
    this.#csvLines.push(line);
    const json: Record<string, unknown> = {};
    for (const c of REPORT_COLUMNS) if (result[c] !== undefined) json[c] = result[c];
    for (const c of this.#passThrough) json[c] = manifestValues[c] ?? '';
    this.#jsonLines.push(JSON.stringify(json));
    // Every row not OK (interrupted ones too): failed.csv fed back to the same command does exactly those again.
    if (!OK_STATUSES.has(result.status)) {
      if (raw !== undefined) {
        this.#failedLines.push(raw);
      } else {
        const values = this.#failedRow(manifestValues);
        this.#failedLines.push(this.#manifestColumns.map((c) => values[c] ?? ''));
      }
    }
    if (this.#csvLines.length >= ROWS_PER_WRITE) await this.#flush();
  }

  async #flush(): Promise<void> {
    if (this.#csvLines.length > 0) await this.#csv.write(stringify(this.#csvLines));
    if (this.#jsonLines.length > 0) await this.#jsonl.write(`${this.#jsonLines.join('\n')}\n`);
    if (this.#failedLines.length > 0) await this.#failed.write(this.#failedText());
    this.#csvLines = [];
    this.#jsonLines = [];
    this.#failedLines = [];
  }

  /** The failed rows to write: runs of cells formatted in one call, raw rows as they are. */
  #failedText(): string {
    let text = '';
    let cells: string[][] = [];
    const format = () => {
      if (cells.length > 0) text += stringify(cells, { delimiter: this.#failedDelimiter });
      cells = [];
    };
    for (const line of this.#failedLines) {
      if (typeof line !== 'string') {
        cells.push(line);
        continue;
      }
      format();
      text += `${line}\n`;
    }
    format();
    return text;
  }

  /**
   * When the report cannot be completed (the manifest became unreadable mid-way, say): what was
   * added so far still reaches the files, which are closed under their `.partial` names; the
   * previous report keeps its real names. Best effort; never throws.
   */
  async abort(): Promise<void> {
    await this.#flush().catch(() => undefined);
    await this.#closeAll().catch(() => undefined);
  }

  /** Closes the files and removes them: the report is not to be had (the run failed before its end). */
  async discard(): Promise<void> {
    await this.#closeAll().catch(() => undefined);
    for (const f of [...FILES, SUMMARY]) await rm(path.join(this.dir, `${f}${PARTIAL}`), { force: true }).catch(() => undefined);
  }

  /** Closes every file, waiting for all of them (not only up to the first failure), then throws the first error. */
  async #closeAll(): Promise<void> {
    const closed = await Promise.allSettled([this.#csv.close(), this.#jsonl.close(), this.#failed.close()]);
    const failed = closed.find((c) => c.status === 'rejected');
    if (failed) throw failed.reason;
  }

  /**
   * Gives the `.partial` files their real names, once every one is complete. Renames within one
   * folder need no space, so a full disk cannot stop this half-way; the summary goes last, so a
   * summary.json always describes the report.csv beside it.
   */
  async #publish(): Promise<void> {
    for (const f of [...FILES, SUMMARY]) {
      const from = path.join(this.dir, `${f}${PARTIAL}`);
      try {
        await rename(from, path.join(this.dir, f));
      } catch (err) {
        throw new ReportWriteError(from, err);
      }
    }
  }

  /** Runs `fill`, and on a failure keeps what was added so far (abort) before passing it on. */
  async guard<T>(fill: () => Promise<T>): Promise<T> {
    try {
      return await fill();
    } catch (err) {
      await this.abort();
      throw err;
    }
  }

  /** Writes the last rows and summary.json, then publishes all; a write failure is a ReportWriteError and publishes nothing. */
  async finish(summary: SummaryInput): Promise<RunSummary> {
    await this.#flush();
    await this.#closeAll();
    const done = rowsDone(this.counts);
    const itemsPerSecond = summary.seconds > 0 ? Number((done / summary.seconds).toFixed(2)) : done;
    const { options, ...rest } = summary;
    const full: RunSummary = {
      ...rest,
      version: VERSION,
      rows: this.rows,
      counts: { ...this.counts },
      errors: { ...this.errors },
      bytes: this.bytes,
      itemsPerSecond,
      reportDir: this.dir,
      ...(options ? { options } : {}),
    };
    const summaryFile = new ReportFile(path.join(this.dir, `${SUMMARY}${PARTIAL}`), this.#openFile);
    // A failed write destroys its stream (and closes the file); close() then rejects with that error.
    await summaryFile.write(`${JSON.stringify(full, null, 2)}\n`).catch(() => undefined);
    await summaryFile.close();
    await this.#publish();
    return full;
  }
}
