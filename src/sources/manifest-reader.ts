import { createReadStream } from 'node:fs';
import { Readable } from 'node:stream';
import { parse } from 'csv-parse';
import { ManifestError } from '../errors.ts';
import { chunkStreamed } from '../memory.ts';
import { sha256OfFile } from './file-hash.ts';
import { ManifestTextDecoder, type ManifestTextOptions } from './manifest-text.ts';

export interface ManifestRecord {
  /** 1-based data row number (the header is row 0). */
  row: number;
  /**
   * Cells by column: a known column under its canonical name (`personId` for a header `PersonID `),
   * any other under its header text (trimmed).
   */
  values: Record<string, string>;
  /** Set when the row's cell count differs from the header's. */
  shapeError?: string;
  /**
   * The row's text exactly as read (decoded, without its line ending); set for a row with a
   * shapeError, whose cells cannot be told apart, so failed.csv gives it back as it was (#15.8).
   */
  raw?: string;
}

export interface ManifestHeader {
  /** The keys of every record's `values`, in the header's order. */
  columns: string[];
  /** The header's cells as written (failed.csv repeats them). */
  labels: string[];
  /** The delimiter in use: --delimiter, or the one detected in the header line. */
  delimiter: string;
}

export interface ManifestReadOptions extends ManifestTextOptions {
  /** One character; when absent, detected from the header line (see detectDelimiter). */
  delimiter?: string | undefined;
  /**
   * Column names matched case-insensitively and ignoring surrounding spaces, besides the
   * required ones; records carry them under these spellings.
   */
  known?: readonly string[];
  onHeader?: (header: ManifestHeader) => void;
}

/** Bytes looked at for the header line when detecting the delimiter. */
const HEADER_PEEK_BYTES = 64 * 1024;

function describeReadError(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `cannot read manifest ${file}: no such file`;
  if (code === 'EACCES') return `cannot read manifest ${file}: permission denied`;
  if (code === 'EISDIR') return `cannot read manifest ${file}: it is a folder, not a CSV file`;
  return `cannot read manifest ${file}: ${(err as Error).message}`;
}

/**
 * sha256 of the manifest's bytes (as stored, whatever the encoding), streamed: part of the run's
 * identity, so a rerun resumes. The same pass checks that the whole file is text in its
 * encoding (ManifestTextDecoder), so a bad line stops the run before any row is queued.
 */
export async function hashManifest(file: string, text?: ManifestTextOptions): Promise<string> {
  // Through one reused buffer: a stream's fresh chunk per 64 KB leaves garbage in proportion to
  // the manifest's size before the first row is read.
  const decoder = text ? new ManifestTextDecoder(file, text) : undefined;
  let sha256: string;
  try {
    sha256 = (await sha256OfFile(file, decoder ? (chunk) => void decoder.write(chunk) : undefined)).sha256;
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    throw new ManifestError(describeReadError(file, err), { cause: err });
  }
  decoder?.end();
  return sha256;
}

/**
 * The delimiter of a manifest whose header line is `line` (UTF-8): a comma, unless the line has
 * none but a `;` (European spreadsheets, where the comma is the decimal mark) or a tab.
 */
export function detectDelimiter(line: string): string {
  if (line.includes(',')) return ',';
  if (line.includes(';')) return ';';
  if (line.includes('\t')) return '\t';
  return ',';
}

function fold(name: string): string {
  return name.trim().toLowerCase();
}

function showDelimiter(d: string): string {
  return d === '\t' ? 'tab' : `"${d}"`;
}

/** Maps header cells onto record keys, refusing a header that cannot work. */
function headerOf(file: string, labels: string[], delimiter: string, required: readonly string[], known: readonly string[]): ManifestHeader {
  const canonical = new Map<string, string>();
  for (const name of [...known, ...required]) canonical.set(fold(name), name);
  const columns = labels.map((label) => canonical.get(fold(label)) ?? label.trim());
  const seen = new Map<string, number>();
  columns.forEach((column, i) => {
    if (column === '') return;
    const first = seen.get(fold(column));
    if (first !== undefined) {
      throw new ManifestError(
        `manifest ${file} has the column "${column}" twice ("${labels[first]}" and "${labels[i]}": header names are matched ignoring case and surrounding spaces); rename or remove one`,
      );
    }
    seen.set(fold(column), i);
  });
  const missing = required.filter((name) => !columns.includes(name));
  if (missing.length > 0) {
    const other = columns.length === 1 ? [';', '\t', ','].find((d) => d !== delimiter && labels[0]!.includes(d)) : undefined;
    const hint = other ? `; its cells are separated by ${showDelimiter(other)}, not ${showDelimiter(delimiter)}: pass --delimiter ${other === '\t' ? 'tab' : `'${other}'`}` : '';
    throw new ManifestError(
      `manifest ${file} is missing the required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (its header: ${labels.join(', ') || 'empty'})${hint}`,
    );
  }
  return { columns, labels, delimiter };
}

/** The text of a raw record without the line endings csv-parse leaves around it. */
function rawText(raw: string): string {
  // A record cannot begin or end with a line break outside quotes, and one inside quotes is
  // enclosed by them, so only the separators of empty lines and of the record itself go.
  return raw.replace(/^[\r\n]+|[\r\n]+$/g, '');
}

/**
 * The manifest's bytes as UTF-8 chunks (see ManifestTextDecoder), the first ones held back until
 * the header line is complete so its delimiter can be detected. Resolves once the header is in.
 */
async function openText(file: string, options: ManifestTextOptions): Promise<{ head: Buffer[]; rest: AsyncGenerator<Buffer>; close: () => void }> {
  const input = createReadStream(file);
  const opened = new Promise<void>((resolve, reject) => {
    input.once('open', () => resolve());
    input.once('error', reject);
  });
  try {
    await opened;
  } catch (err) {
    throw new ManifestError(describeReadError(file, err), { cause: err });
  }
  const decoder = new ManifestTextDecoder(file, options);
  async function* text(): AsyncGenerator<Buffer> {
    for await (const chunk of input as AsyncIterable<Buffer>) {
      chunkStreamed(chunk.length);
      const out = decoder.write(chunk);
      if (out.length > 0) yield out;
    }
    const last = decoder.end();
    if (last.length > 0) yield last;
  }
  const rest = text();
  const head: Buffer[] = [];
  let peeked = 0;
  try {
    while (peeked < HEADER_PEEK_BYTES) {
      const next = await rest.next();
      if (next.done) break;
      head.push(next.value);
      peeked += next.value.length;
      if (next.value.includes(0x0a)) break;
    }
  } catch (err) {
    input.destroy();
    throw err;
  }
  return { head, rest, close: () => input.destroy() };
}

/**
 * Streams a CSV manifest record by record; memory does not grow with its length. Header names
 * are matched case-insensitively and ignoring surrounding spaces; the delimiter is the given one
 * or detected; the text is strict UTF-8 or in the given encoding (ManifestTextDecoder). The
 * header is checked for the required columns before any row is yielded, so a manifest that
 * cannot work stops the run before anything is queued.
 */
export async function* readManifest(file: string, required: readonly string[], options: ManifestReadOptions = {}): AsyncGenerator<ManifestRecord> {
  let text: Awaited<ReturnType<typeof openText>>;
  try {
    text = await openText(file, options);
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    throw new ManifestError(describeReadError(file, err), { cause: err });
  }
  const firstLine = Buffer.concat(text.head).toString('utf8').split('\n', 1)[0] ?? '';
  const delimiter = options.delimiter ?? detectDelimiter(firstLine);
  const rest = text.rest;
  const source = Readable.from(
    (async function* () {
      yield* text.head;
      yield* rest;
    })(),
    { objectMode: false },
  );
  const parser = source.pipe(
    parse({ bom: true, delimiter, relax_column_count: true, skip_empty_lines: true, trim: false, max_record_size: 1_000_000, raw: true }),
  );
  source.on('error', (err) => parser.destroy(err));
  let header: ManifestHeader | undefined;
  let row = 0;
  try {
    for await (const { record: cells, raw } of parser as AsyncIterable<{ record: string[]; raw: string }>) {
      if (!header) {
        header = headerOf(file, cells, delimiter, required, options.known ?? []);
        options.onHeader?.(header);
        continue;
      }
      row++;
      const { columns } = header;
      const values: Record<string, string> = {};
      for (let i = 0; i < columns.length; i++) values[columns[i]!] = cells[i] ?? '';
      const record: ManifestRecord = { row, values };
      if (cells.length !== columns.length) {
        record.shapeError = `has ${cells.length} cells but the header has ${columns.length} columns`;
        record.raw = rawText(raw);
      }
      yield record;
    }
  } catch (err) {
    if (err instanceof ManifestError) throw err;
    const e = err as Error & { code?: string; lines?: number };
    if (e.code?.startsWith('CSV_')) {
      throw new ManifestError(`manifest ${file} is not valid CSV near line ${e.lines ?? '?'}: ${e.message}`, { cause: err });
    }
    throw new ManifestError(describeReadError(file, err), { cause: err });
  } finally {
    source.destroy();
    parser.destroy();
    text.close();
  }
  if (!header) throw new ManifestError(`manifest ${file} is empty: it needs a header row with ${required.join(', ')}`);
}
