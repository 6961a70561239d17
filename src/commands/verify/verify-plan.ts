import { createHash } from 'node:crypto';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { ManifestError, RowInvalidError, UsageError } from '../../errors.ts';
import { INDEX_COLUMNS, INDEX_FILE } from '../../outputs/archive-index.ts';
import { compactUtcMs } from '../../outputs/archive-names.ts';
import { REPORT_COLUMNS, type RowResult, type RowStatus } from '../../report/row-result.ts';
import { safeRelativeOutput } from '../../sources/export-items.ts';
import { isGuid, normalizeGuid } from '../../sources/guid.ts';
import { IMPORT_KNOWN_COLUMNS } from '../../sources/import-items.ts';
import { hashManifest, readManifest, type ManifestHeader, type ManifestReadOptions, type ManifestRecord } from '../../sources/manifest-reader.ts';
import type { PlannedRow, ReportShape, RunPlan } from '../../../jobs/job-kind.ts';
import type { ServerCopy, VerifyPayload } from '../../../jobs/verify.ts';
import { fromSpreadsheetCell } from '../../report/spreadsheet-cell.ts';

/**
 * What INPUT is, told by its header: an import manifest (personId, file), an idsync report
 * (row, status, sha256: an import's, an export's, a verify's), or an archive's index (path, kind,
 * sha256: index.csv, which a folder given as INPUT must hold).
 */
export type VerifyInputKind = 'manifest' | 'report' | 'index';

const COLUMNS: Record<VerifyInputKind, { required: readonly string[]; known: readonly string[] }> = {
  manifest: { required: ['personId', 'file'], known: IMPORT_KNOWN_COLUMNS },
  report: { required: ['row', 'status', 'sha256'], known: REPORT_COLUMNS },
  index: { required: ['path', 'kind', 'sha256'], known: INDEX_COLUMNS },
};

/** What verify's rows end in; the summary shows these even at 0. */
export const VERIFY_STATUSES: readonly RowStatus[] = ['verified', 'mismatch', 'missing', 'failed', 'rejected'];

/** Report rows whose sha256 is content that was there: what the run that wrote the report moved or found. */
const RECORDED = new Set(['succeeded', 'skipped', 'verified', 'mismatch', 'missing']);
const SHA256 = /^[0-9a-f]{64}$/i;

export interface VerifyPlanOptions {
  /** A manifest, a report.csv, an index.csv, or an archive folder. */
  input: string;
  /** --out: the folder an export report's `output` paths (or an index's `path`s) are relative to. */
  outDir?: string;
  /** --remote: a folder's files are compared with the server's copies too. */
  remote: boolean;
  /** Asked once the input has been read: its problems come before missing connection settings. */
  apiUrl: () => string;
  /** This invocation's start: every verify is a run of its own. */
  startedAt: number;
  delimiter?: string | undefined;
  encoding?: string | undefined;
}

/**
 * `idsync verify`'s input as a run's plan: one row per line, each one verify job (jobs/verify.ts)
 * or, for a line that cannot be checked, a result at once (`rejected`; `skipped` for an archive's
 * enrollment line that a later line of the same path superseded).
 *
 * Each invocation is a run of its own (its id carries its start time) and never resumed: what a
 * verify says is true of the moment it looked, so a rerun looks again at every row. An earlier
 * invocation's results are never mixed in.
 */
export class VerifyPlan implements RunPlan {
  readonly runId: string;
  readonly command = 'verify';
  readonly resumable = false;
  readonly input: string;
  readonly inputSha256: string;
  readonly kind: VerifyInputKind;
  readonly report: ReportShape;
  readonly #o: VerifyPlanOptions;
  readonly #read: ManifestReadOptions;
  /** What relative paths are relative to: the manifest's folder (`file`), --out or the archive (`output`, `path`). */
  readonly #base: string | undefined;
  /**
   * The folder a report's outputs or an index's paths are relative to (--out, or the archive
   * holding the index): a failed.csv of such rows, written elsewhere, needs it given as --out.
   */
  readonly filesDir: string | undefined;
  /** An archive's enrollment paths → the last line naming each (earlier lines were superseded). */
  #latest: Map<string, number> | undefined;

  private constructor(o: VerifyPlanOptions, file: string, kind: VerifyInputKind, base: string | undefined, sha256: string, header: ManifestHeader, read: ManifestReadOptions, apiUrl: string) {
    this.#o = o;
    this.input = file;
    this.kind = kind;
    this.#base = base;
    this.filesDir = kind === 'manifest' ? undefined : base;
    this.inputSha256 = sha256;
    this.#read = read;
    const identity = `verify\n${apiUrl}\n${file}\n${sha256}\n${base ?? ''}\n${o.remote ? 'remote' : ''}`;
    this.runId = `verify-${createHash('sha256').update(identity).digest('hex').slice(0, 16)}-${compactUtcMs(o.startedAt)}`;
    const dir = path.dirname(file);
    this.report = {
      columns: header.columns,
      knownColumns: read.known ?? [],
      action: 'verify',
      ids: (values) => idsOf(kind, values),
      failedFormat: { delimiter: header.delimiter, header: header.labels },
      statuses: VERIFY_STATUSES,
      // failed.csv lives in another folder than a manifest: a relative `file` is made absolute so it is found again.
      ...(kind === 'manifest' ? { failedRow: (values: Record<string, string>) => (values.file?.trim() ? { ...values, file: path.resolve(dir, values.file.trim()) } : values) } : {}),
    };
  }

  /**
   * Reads what the run's identity needs: the input's bytes (hashed; the same pass checks its
   * encoding) and its header, which says what kind of input it is.
   */
  static async open(o: VerifyPlanOptions): Promise<VerifyPlan> {
    const given = path.resolve(o.input);
    let file = given;
    let folder: string | undefined;
    let isDir = false;
    try {
      isDir = statSync(given).isDirectory();
    } catch {
      // Not there: hashManifest says so in its words.
    }
    if (isDir) {
      folder = given;
      file = path.join(given, INDEX_FILE);
      if (!existsSync(file)) {
        throw new ManifestError(
          `${given} is a folder without ${INDEX_FILE}: verify takes an archive folder (it has ${INDEX_FILE}), an import manifest, or the report.csv of an import or of an export (an export's with --out DIR, the export's folder)`,
        );
      }
    }
    const text = { delimiter: o.delimiter, encoding: o.encoding };
    const sha256 = await hashManifest(file, text);
    let header: ManifestHeader = { columns: [], labels: [], delimiter: ',' };
    const onHeader = (h: ManifestHeader) => (header = h);
    const allKnown = [...new Set([...IMPORT_KNOWN_COLUMNS, ...REPORT_COLUMNS, ...INDEX_COLUMNS])];
    for await (const _ of readManifest(file, [], { ...text, known: allKnown, onHeader })) break;
    const kind = kindOf(header.columns);
    if (folder && kind !== 'index') throw new ManifestError(`${file} is not an archive index: it lacks the columns path, kind and sha256`);
    const read: ManifestReadOptions = { ...text, delimiter: header.delimiter, known: COLUMNS[kind].known };
    // Read again as its kind: a manifest without personId or file is told so by name.
    for await (const _ of readManifest(file, COLUMNS[kind].required, { ...read, onHeader })) break;
    const base = kind === 'manifest' ? path.dirname(file) : kind === 'index' ? (o.outDir ? path.resolve(o.outDir) : (folder ?? path.dirname(file))) : o.outDir ? path.resolve(o.outDir) : undefined;
    return new VerifyPlan(o, file, kind, base, sha256, header, read, o.apiUrl());
  }

  #records(): AsyncGenerator<ManifestRecord> {
    const records = readManifest(this.input, COLUMNS[this.kind].required, this.#read);
    // idsync wrote a report or an index spreadsheet-safe: `'-front.jpg` is the file -front.jpg.
    return this.kind === 'manifest' ? records : cellsAsWritten(records);
  }

  /**
   * Parses the whole input once (one that is not valid CSV stops the run before anything is
   * queued). An export's report without --out stops it too: its paths are relative to that folder.
   */
  async check(signal?: AbortSignal): Promise<number> {
    let rows = 0;
    const latest = new Map<string, number>();
    for await (const r of this.#records()) {
      rows++;
      if (signal?.aborted) break;
      const v = r.values;
      if (this.kind === 'report' && !this.#base && (v.output ?? '').trim() && RECORDED.has((v.status ?? '').trim())) {
        throw new UsageError(`${this.input} is the report of an export (row ${r.row} has an output): give the export's folder with --out DIR`);
      }
      if (this.kind === 'index' && (v.kind ?? '').trim() === 'enrollment') latest.set((v.path ?? '').trim(), r.row);
    }
    this.#latest = latest;
    return rows;
  }

  async *lines(): AsyncIterable<{ row: number; values: Record<string, string>; raw?: string }> {
    for await (const r of this.#records()) yield { row: r.row, values: r.values, ...(r.raw !== undefined ? { raw: r.raw } : {}) };
  }

  async *rows(signal?: AbortSignal): AsyncIterable<PlannedRow> {
    if (this.kind === 'index' && !this.#latest) await this.check(signal);
    for await (const record of this.#records()) {
      if (signal?.aborted) return;
      yield this.#planned(record);
    }
  }

  #planned(record: ManifestRecord): PlannedRow {
    const base = { row: record.row, values: record.values, ...(record.raw !== undefined ? { raw: record.raw } : {}) };
    const ids = idsOf(this.kind, record.values);
    try {
      if (record.shapeError) throw new RowInvalidError(`row ${record.shapeError}`);
      const planned = this.kind === 'manifest' ? this.#manifestRow(record.values) : this.kind === 'report' ? this.#reportRow(record.values) : this.#indexRow(record);
      if ('skipped' in planned) return { ...base, result: { status: 'skipped', action: planned.skipped, ...ids } };
      return { ...base, job: { kind: 'verify', payload: planned } };
    } catch (err) {
      if (!(err instanceof RowInvalidError)) throw err;
      return { ...base, result: { status: 'rejected', action: 'validate', ...ids, error: err.message, errorCode: 'E_ROW_INVALID' } };
    }
  }

  /** An import manifest's row: the file's content is what the server must hold, under the row's publicId or the derived one. */
  #manifestRow(v: Record<string, string>): VerifyPayload {
    const personId = guid(v, 'personId', true)!;
    const publicId = guid(v, 'publicId', false);
    const cell = (v.file ?? '').trim();
    if (!cell) throw new RowInvalidError('file is empty');
    if (cell.includes('\0')) throw new RowInvalidError('file contains a NUL character');
    const file = path.resolve(this.#base!, cell);
    const server: ServerCopy = { type: 'document', personId, ...(publicId ? { documentId: publicId } : {}) };
    return { file, server, show: { personId, file, ...(publicId ? { documentId: publicId } : {}) } };
  }

  /**
   * A report's row: its sha256 is the content the run moved. An import's row (no output) is checked
   * on the server; an export's (an output under --out) on disk, and with --remote on the server too.
   */
  #reportRow(v: Record<string, string>): VerifyPayload {
    const status = (v.status ?? '').trim();
    if (!RECORDED.has(status)) throw new RowInvalidError(`nothing to verify: the run that wrote this report did not do this row (${status || 'no status'})`);
    const sha256 = (v.sha256 ?? '').trim().toLowerCase();
    if (!SHA256.test(sha256)) throw new RowInvalidError(sha256 ? `sha256 "${sha256}" is not a SHA-256` : 'the report records no sha256 for this row');
    const outputCell = (v.output ?? '').trim();
    if (!outputCell) {
      const personId = guid(v, 'personId', true)!;
      const documentId = guid(v, 'documentId', true)!;
      const file = (v.file ?? '').trim();
      return { sha256, server: { type: 'document', personId, documentId }, show: { personId, documentId, ...(file ? { file } : {}) } };
    }
    const output = safeRelativeOutput(outputCell);
    const personId = guid(v, 'personId', false);
    const faceId = guid(v, 'faceId', false);
    const detectionId = guid(v, 'detectionId', false);
    const documentId = guid(v, 'documentId', false);
    const show = { output, ...(personId ? { personId } : {}), ...(faceId ? { faceId } : {}), ...(detectionId ? { detectionId } : {}), ...(documentId ? { documentId } : {}) };
    const payload: VerifyPayload = { file: path.join(this.#base!, output), sha256, show };
    if (!this.#o.remote) return payload;
    if (personId && documentId) return { ...payload, server: { type: 'document', personId, documentId } };
    if (faceId && detectionId) return { ...payload, server: { type: 'detectionPhoto', faceId, detectionId } };
    if (faceId) return { ...payload, server: { type: 'enrollmentPhoto', faceId } };
    return { ...payload, localOnly: 'no id to ask the server by' };
  }

  /** An archive index's line: the file at `path` must hold `sha256`; with --remote the server's photo too. */
  #indexRow(record: ManifestRecord): VerifyPayload | { skipped: string } {
    const v = record.values;
    const kind = (v.kind ?? '').trim();
    if (kind !== 'enrollment' && kind !== 'enrollment-previous' && kind !== 'detection') {
      throw new RowInvalidError(`kind "${kind}" is not enrollment, enrollment-previous or detection`);
    }
    const output = safeRelativeOutput(v.path ?? '');
    const sha256 = (v.sha256 ?? '').trim().toLowerCase();
    if (!SHA256.test(sha256)) throw new RowInvalidError(`sha256 "${sha256}" is not a SHA-256`);
    const later = kind === 'enrollment' ? this.#latest?.get((v.path ?? '').trim()) : undefined;
    // The photo changed later: this content now lives under the earlier version's name, which has its own line.
    if (later !== undefined && later !== record.row) return { skipped: `superseded by line ${later}` };
    const personId = guid(v, 'personId', false);
    const faceId = guid(v, 'faceId', false);
    const show = { output, ...(personId ? { personId } : {}), ...(faceId ? { faceId } : {}) };
    const payload: VerifyPayload = { file: path.join(this.#base!, output), sha256, show };
    if (!this.#o.remote) return payload;
    if (kind === 'enrollment-previous') return { ...payload, localOnly: 'an earlier version: the server keeps only the current photo' };
    if (kind === 'enrollment') return faceId ? { ...payload, server: { type: 'enrollmentPhoto', faceId } } : { ...payload, localOnly: 'no faceId' };
    const timeMs = Date.parse((v.detectionTime ?? '').trim());
    if (!personId || Number.isNaN(timeMs)) return { ...payload, localOnly: 'no person or time to look the detection up by' };
    return { ...payload, server: { type: 'listedDetection', personId, timeMs } };
  }
}

async function* cellsAsWritten(records: AsyncGenerator<ManifestRecord>): AsyncGenerator<ManifestRecord> {
  for await (const r of records) {
    const values: Record<string, string> = {};
    for (const [k, v] of Object.entries(r.values)) values[k] = fromSpreadsheetCell(v);
    yield { ...r, values };
  }
}

function kindOf(columns: string[]): VerifyInputKind {
  const has = (c: string) => columns.includes(c);
  if (has('path') && has('kind') && has('sha256')) return 'index';
  if (has('row') && has('status') && has('sha256')) return 'report';
  return 'manifest';
}

/** A GUID cell, normalised; `required` makes an empty one a rejected row. */
function guid(values: Record<string, string>, column: string, required: boolean): string | undefined {
  const value = (values[column] ?? '').trim();
  if (!value) {
    if (required) throw new RowInvalidError(`${column} is empty`);
    return undefined;
  }
  if (!isGuid(value)) throw new RowInvalidError(`${column} "${value}" is not a GUID`);
  return normalizeGuid(value);
}

/** The report's ids of a row as the input gives them (a row that never had a job, or lost its result). */
function idsOf(kind: VerifyInputKind, values: Record<string, string>): Partial<RowResult> {
  const pick = (k: string) => (values[k] ?? '').trim() || undefined;
  const columns: Record<VerifyInputKind, Array<[keyof RowResult, string]>> = {
    manifest: [['personId', 'personId'], ['file', 'file'], ['documentId', 'publicId']],
    report: [['personId', 'personId'], ['faceId', 'faceId'], ['detectionId', 'detectionId'], ['documentId', 'documentId'], ['file', 'file'], ['output', 'output']],
    index: [['personId', 'personId'], ['faceId', 'faceId'], ['output', 'path']],
  };
  const out: Record<string, string> = {};
  for (const [key, column] of columns[kind]) {
    const v = pick(column);
    if (v !== undefined) out[key] = v;
  }
  return out as Partial<RowResult>;
}
