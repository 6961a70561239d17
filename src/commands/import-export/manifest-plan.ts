import { createHash } from 'node:crypto';
import path from 'node:path';
import type { AllowedFolders } from '../../allowed-folders.ts';
import { NotAllowedError, RowInvalidError } from '../../errors.ts';
import type { FailedCsvFormat } from '../../report/report-writer.ts';
import type { RowResult } from '../../report/row-result.ts';
import { EXPORT_KNOWN_COLUMNS, EXPORT_REQUIRED_COLUMNS, toExportItem, type ExportItem } from '../../sources/export-items.ts';
import { IMPORT_KNOWN_COLUMNS, IMPORT_REQUIRED_COLUMNS, toImportItem, type ImportItem } from '../../sources/import-items.ts';
import { hashManifest, readManifest, type ManifestHeader, type ManifestReadOptions, type ManifestRecord } from '../../sources/manifest-reader.ts';
import type { DownloadPayload } from '../../../jobs/download.ts';
import type { PlannedRow, ReportShape, RowsContext, RunPlan } from '../../../jobs/job-kind.ts';
import type { UploadPayload } from '../../../jobs/upload.ts';

export type ManifestCommand = 'import' | 'export';

/** Export rows whose outputs are claimed together (one Redis call). */
const CLAIM_BATCH = 250;

/**
 * A run is "this command, on this manifest's content, in this folder, against this API, into
 * this output": the same command run again is the same run and resumes it.
 */
export function manifestRunId(parts: { command: string; apiUrl: string; manifest: string; manifestSha256: string; outDir?: string }): string {
  const h = createHash('sha256');
  h.update(`${parts.command}\n${parts.apiUrl}\n${path.dirname(path.resolve(parts.manifest))}\n${parts.manifestSha256}\n${parts.outDir ?? ''}`);
  return `${parts.command}-${h.digest('hex').slice(0, 16)}`;
}

/** The cells of a row as the report shows them for a row that never became a job. */
export function idsOfValues(values: Record<string, string>): Partial<RowResult> {
  const pick = (k: string) => (values[k] ?? '').trim() || undefined;
  const out: Partial<RowResult> = {};
  for (const k of ['personId', 'faceId', 'detectionId', 'documentId', 'file', 'output'] as const) {
    const v = pick(k);
    if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  }
  const publicId = pick('publicId');
  if (publicId && !out.documentId) out.documentId = publicId;
  return out;
}

function withAbsoluteFile(ids: Partial<RowResult>, dir: string): Partial<RowResult> {
  return ids.file && !ids.file.includes('\0') ? { ...ids, file: path.resolve(dir, ids.file) } : ids;
}

export interface ManifestPlanOptions {
  command: ManifestCommand;
  manifest: string;
  /** Asked once the manifest has been read: its problems come before missing connection settings. */
  apiUrl: () => string;
  /** export's --out (absolute). */
  outDir?: string;
  checkExisting: boolean;
  /** --delimiter and --encoding. */
  delimiter?: string | undefined;
  encoding?: string | undefined;
  /** import's --allow-read: a row whose file lies outside is rejected at once, never queued. */
  allowRead?: AllowedFolders | undefined;
}

/**
 * An import or export manifest as a run's plan: one row per data line, validated as it is
 * queued (a row that cannot work is `rejected`, never sent), each valid row one upload or
 * download job.
 */
export class ManifestPlan implements RunPlan {
  readonly runId: string;
  #checkExisting: boolean;
  readonly command: ManifestCommand;
  readonly input: string;
  readonly inputSha256: string;
  readonly report: ReportShape;
  /** Export: a downloaded file may have been deleted since; its job looks before fetching again. */
  readonly recheckSettled: boolean;
  readonly #o: ManifestPlanOptions;
  readonly #read: ManifestReadOptions;
  readonly #dir: string;
  readonly #required: readonly string[];

  private constructor(o: ManifestPlanOptions, apiUrl: string, sha256: string, header: ManifestHeader, read: ManifestReadOptions) {
    this.#o = o;
    this.command = o.command;
    this.recheckSettled = o.command === 'export';
    this.input = path.resolve(o.manifest);
    this.#dir = path.dirname(this.input);
    this.inputSha256 = sha256;
    this.#read = read;
    this.#required = o.command === 'import' ? IMPORT_REQUIRED_COLUMNS : EXPORT_REQUIRED_COLUMNS;
    this.#checkExisting = o.checkExisting;
    this.runId = manifestRunId({ command: o.command, apiUrl, manifest: this.input, manifestSha256: sha256, ...(o.outDir ? { outDir: o.outDir } : {}) });
    const failedFormat: FailedCsvFormat = { delimiter: header.delimiter, header: header.labels };
    const dir = this.#dir;
    this.report = {
      columns: header.columns,
      knownColumns: read.known ?? [],
      action: o.command === 'import' ? 'upload' : 'download',
      // An import's `file` as its upload reports it: resolved against the manifest's folder.
      ids: o.command === 'import' ? (values) => withAbsoluteFile(idsOfValues(values), dir) : idsOfValues,
      failedFormat,
      // failed.csv lives in another folder than the manifest: a relative `file` is made absolute so the retry finds it.
      ...(o.command === 'import' ? { failedRow: (values: Record<string, string>) => (values.file?.trim() ? { ...values, file: path.resolve(dir, values.file.trim()) } : values) } : {}),
    };
  }

  /**
   * Reads what the run's identity needs: the manifest's bytes (hashed; the same pass checks its
   * encoding) and its header (required columns, delimiter). Local problems come first: they are
   * the cheapest to find and the likeliest.
   */
  static async open(o: ManifestPlanOptions): Promise<ManifestPlan> {
    const manifest = path.resolve(o.manifest);
    const known = o.command === 'import' ? IMPORT_KNOWN_COLUMNS : EXPORT_KNOWN_COLUMNS;
    const required = o.command === 'import' ? IMPORT_REQUIRED_COLUMNS : EXPORT_REQUIRED_COLUMNS;
    const read: ManifestReadOptions = { known, delimiter: o.delimiter, encoding: o.encoding };
    const sha256 = await hashManifest(manifest, read);
    let header: ManifestHeader = { columns: [], labels: [], delimiter: ',' };
    for await (const _ of readManifest(manifest, required, { ...read, onHeader: (h) => (header = h) })) break;
    // Every later read reads it alike: the delimiter of its header, in its encoding.
    return new ManifestPlan(o, o.apiUrl(), sha256, header, { ...read, delimiter: header.delimiter });
  }

  #records(signal?: AbortSignal): AsyncGenerator<ManifestRecord> {
    void signal;
    return readManifest(this.input, this.#required, this.#read);
  }

  /** Parses the whole manifest once: one that is not valid CSV stops the run before anything is queued. */
  /** Every upload looks its document up on the server first (--check-existing), from the next row queued on. */
  checkBeforeSending(): void {
    this.#checkExisting = true;
  }

  async check(signal?: AbortSignal): Promise<number> {
    let rows = 0;
    for await (const _ of this.#records(signal)) {
      rows++;
      if (signal?.aborted) break;
    }
    return rows;
  }

  async *lines(): AsyncIterable<{ row: number; values: Record<string, string>; raw?: string }> {
    for await (const r of this.#records()) yield { row: r.row, values: r.values, ...(r.raw !== undefined ? { raw: r.raw } : {}) };
  }

  async *rows(signal?: AbortSignal, context?: RowsContext): AsyncIterable<PlannedRow> {
    let batch: Array<{ record: ManifestRecord; item?: ImportItem | ExportItem; error?: RowInvalidError | NotAllowedError }> = [];
    const settle = async function* (this: ManifestPlan): AsyncGenerator<PlannedRow> {
      if (this.command === 'export' && context) await this.#claimOutputs(batch, context);
      for (const { record, item, error } of batch) yield this.#planned(record, item, error);
      batch = [];
    }.bind(this);
    for await (const record of this.#records(signal)) {
      try {
        const item = this.command === 'import' ? await toImportItem(record, this.#dir, this.#o.allowRead) : toExportItem(record);
        batch.push({ record, item });
      } catch (err) {
        if (!(err instanceof RowInvalidError) && !(err instanceof NotAllowedError)) throw err;
        batch.push({ record, error: err });
      }
      if (batch.length >= CLAIM_BATCH) yield* settle();
    }
    yield* settle();
  }

  #planned(record: ManifestRecord, item: ImportItem | ExportItem | undefined, error: RowInvalidError | NotAllowedError | undefined): PlannedRow {
    const base = { row: record.row, values: record.values, ...(record.raw !== undefined ? { raw: record.raw } : {}) };
    if (error || !item) {
      return { ...base, result: { status: 'rejected', action: 'validate', ...idsOfValues(record.values), error: error?.message ?? 'invalid row', errorCode: error?.code ?? 'E_ROW_INVALID' } };
    }
    if (this.command === 'import') {
      const payload: UploadPayload = { item: item as ImportItem, checkExisting: this.#checkExisting };
      return { ...base, job: { kind: 'upload', payload } };
    }
    const payload: DownloadPayload = { item: item as ExportItem, outDir: this.#o.outDir! };
    return { ...base, job: { kind: 'download', payload } };
  }

  /**
   * Export: each output belongs to the first row that names it, so two rows never write one file.
   * A document without an explicit output gets its extension from the server's answer, so it
   * claims its stem (`documents/P/D`); an explicit output (`documents/P/D.pdf`) then conflicts
   * with that stem too, whichever of the two rows comes first.
   */
  async #claimOutputs(batch: Array<{ record: ManifestRecord; item?: ImportItem | ExportItem; error?: RowInvalidError }>, context: RowsContext): Promise<void> {
    const claims = batch.flatMap(({ record, item }) => {
      if (!item) return [];
      const e = item as ExportItem;
      const stemOnly = e.type === 'document' && !e.explicitOutput;
      return [{ row: record.row, output: e.output, stemOnly }];
    });
    const owners = await context.claimOutputs(claims);
    for (const entry of batch) {
      const owner = owners.get(entry.record.row);
      if (owner === undefined || !entry.item) continue;
      entry.error = new RowInvalidError(`output ${(entry.item as ExportItem).output} is also the output of row ${owner}; give one of them another output`);
      delete entry.item;
    }
  }
}
