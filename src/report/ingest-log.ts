import { appendFile, mkdir, stat } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { spreadsheetSafe } from '../report/spreadsheet-cell.ts';

/** What happened to one dropped file. */
export interface IngestRecord {
  /** ISO time. */
  time: string;
  /** Path relative to the watched folder. */
  file: string;
  personId?: string;
  /** succeeded (uploaded), skipped (already stored), failed (gave up), rejected (set aside unsent). */
  status: 'succeeded' | 'skipped' | 'failed' | 'rejected';
  action?: string;
  documentId?: string;
  sha256?: string;
  bytes?: number;
  attempts?: number;
  httpStatus?: number;
  error?: string;
  /** Where the file went (empty when deleted). */
  movedTo?: string;
}

export const INGEST_COLUMNS = ['time', 'file', 'personId', 'status', 'action', 'documentId', 'sha256', 'bytes', 'attempts', 'httpStatus', 'error', 'movedTo'] as const;

/**
 * The append-only daily log of `idsync watch`: `ingest-YYYY-MM-DD.csv` and `.jsonl` (UTC
 * date), one line per file. Each line is appended on its own (nothing is held open or
 * buffered), so a crash loses at most the line being written and a new day starts new files.
 */
export class IngestLog {
  readonly dir: string;
  readonly #now: () => number;
  #chain: Promise<void> = Promise.resolve();

  constructor(dir: string, now: () => number = Date.now) {
    this.dir = dir;
    this.#now = now;
  }

  filesFor(time: number): { csv: string; jsonl: string } {
    const day = new Date(time).toISOString().slice(0, 10);
    return { csv: path.join(this.dir, `ingest-${day}.csv`), jsonl: path.join(this.dir, `ingest-${day}.jsonl`) };
  }

  /** Appends one record; appends are serialised so lines never interleave. */
  add(record: Omit<IngestRecord, 'time'> & { time?: string }): Promise<void> {
    const time = this.#now();
    const full: IngestRecord = { ...record, time: record.time ?? new Date(time).toISOString() };
    const next = this.#chain.then(() => this.#write(full, time));
    this.#chain = next.catch(() => undefined);
    return next;
  }

  async #write(record: IngestRecord, time: number): Promise<void> {
    const { csv, jsonl } = this.filesFor(time);
    await mkdir(this.dir, { recursive: true });
    const isNew = await stat(csv).then(
      (s) => s.size === 0,
      () => true,
    );
    const header = isNew ? stringify([[...INGEST_COLUMNS]]) : '';
    await appendFile(csv, header + stringify([INGEST_COLUMNS.map((c) => spreadsheetSafe(record[c]))]));
    const json: Record<string, unknown> = {};
    for (const c of INGEST_COLUMNS) if (record[c] !== undefined) json[c] = record[c];
    await appendFile(jsonl, `${JSON.stringify(json)}\n`);
  }

  /** Resolves once every line added so far is written. */
  flush(): Promise<void> {
    return this.#chain;
  }
}
