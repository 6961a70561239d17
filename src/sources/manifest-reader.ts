import { createReadStream } from 'node:fs';
import { parse } from 'csv-parse';
import { ManifestError } from '../errors.ts';
import { chunkStreamed } from '../memory.ts';
import { sha256OfFile } from '../state/file-hash.ts';

export interface ManifestRecord {
  /** 1-based data row number (the header is row 0). */
  row: number;
  /** Cells by column name, exactly as in the file. */
  values: Record<string, string>;
  /** Set when the row's cell count differs from the header's. */
  shapeError?: string;
}

export interface ManifestHeader {
  columns: string[];
}

function describeReadError(file: string, err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return `cannot read manifest ${file}: no such file`;
  if (code === 'EACCES') return `cannot read manifest ${file}: permission denied`;
  if (code === 'EISDIR') return `cannot read manifest ${file}: it is a folder, not a CSV file`;
  return `cannot read manifest ${file}: ${(err as Error).message}`;
}

/** sha256 of the manifest's bytes, streamed: part of the run's identity, so a rerun resumes. */
export async function hashManifest(file: string): Promise<string> {
  // Through one reused buffer: a stream's fresh chunk per 64 KB left a large manifest's size in
  // garbage (a 135 MB manifest: ~30 MB of peak RSS before the first row was read).
  try {
    return (await sha256OfFile(file)).sha256;
  } catch (err) {
    throw new ManifestError(describeReadError(file, err), { cause: err });
  }
}

/**
 * Streams a CSV manifest (UTF-8, header row, BOM tolerated) record by record; memory does not
 * grow with its length. The header is checked for the required columns before any row is
 * yielded, so a manifest that cannot work stops the run before anything is queued.
 */
export async function* readManifest(
  file: string,
  required: readonly string[],
  onHeader?: (header: ManifestHeader) => void,
): AsyncGenerator<ManifestRecord> {
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
  const parser = input.pipe(
    parse({ bom: true, relax_column_count: true, skip_empty_lines: true, trim: false, max_record_size: 1_000_000 }),
  );
  input.on('error', (err) => parser.destroy(err));
  input.on('data', (chunk) => chunkStreamed(chunk.length));
  let columns: string[] | undefined;
  let row = 0;
  try {
    for await (const cells of parser as AsyncIterable<string[]>) {
      if (!columns) {
        columns = cells.map((c) => c.trim());
        const missing = required.filter((name) => !columns!.includes(name));
        if (missing.length > 0) {
          throw new ManifestError(
            `manifest ${file} is missing the required column${missing.length > 1 ? 's' : ''} ${missing.join(', ')} (its header: ${columns.join(', ') || 'empty'})`,
          );
        }
        const dup = columns.find((c, i) => c !== '' && columns!.indexOf(c) !== i);
        if (dup) throw new ManifestError(`manifest ${file} has the column "${dup}" twice`);
        onHeader?.({ columns });
        continue;
      }
      row++;
      const values: Record<string, string> = {};
      for (let i = 0; i < columns.length; i++) values[columns[i]!] = cells[i] ?? '';
      const record: ManifestRecord = { row, values };
      if (cells.length !== columns.length) {
        record.shapeError = `has ${cells.length} cells but the header has ${columns.length} columns`;
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
    input.destroy();
  }
  if (!columns) throw new ManifestError(`manifest ${file} is empty: it needs a header row with ${required.join(', ')}`);
}
