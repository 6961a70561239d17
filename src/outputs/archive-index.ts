import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { lstat, open, rm, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import { stringify } from 'csv-stringify/sync';
import { FileError, OutsideOutError } from '../errors.ts';
import { NO_FOLLOW } from '../folder-handle.ts';
import { spreadsheetSafe } from '../report/spreadsheet-cell.ts';
import { linkNew } from './archive-files.ts';

export const INDEX_FILE = 'index.csv';
export const INDEX_COLUMNS = ['path', 'kind', 'personId', 'faceId', 'detectionTime', 'detector', 'bytes', 'sha256', 'archivedAt'] as const;

export type IndexKind = 'enrollment' | 'enrollment-previous' | 'detection';

export interface IndexEntry {
  /** Relative to --out, with forward slashes. */
  path: string;
  kind: IndexKind;
  personId?: string;
  faceId?: string;
  detectionTime?: string;
  detector?: string;
  bytes: number;
  sha256: string;
  archivedAt: string;
}

/**
 * `<out>/index.csv`: one line per file the archive gained, appended, never rewritten. Every
 * call appends its lines in ONE write to a file opened for appending, so lines of concurrent
 * jobs do not interleave; the header is created by linking a complete file into place, so it
 * is there exactly once and always first.
 */
export async function appendIndex(outDir: string, entries: IndexEntry[]): Promise<void> {
  if (entries.length === 0) return;
  const file = path.join(outDir, INDEX_FILE);
  await ensureHeader(file);
  const text = stringify(entries.map((e) => INDEX_COLUMNS.map((c) => spreadsheetSafe(e[c]))));
  let handle: FileHandle | undefined;
  try {
    // O_NOFOLLOW: an index.csv that is a link (to any file of the worker's user) is refused;
    // O_NONBLOCK: one that is a FIFO fails the open (ENXIO) instead of holding a pool thread.
    handle = await open(file, constants.O_WRONLY | constants.O_APPEND | (constants.O_NONBLOCK ?? 0) | NO_FOLLOW);
    if (!(await handle.stat()).isFile()) throw Object.assign(new Error('not a regular file'), { code: 'EINVAL' });
    await handle.appendFile(text);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ELOOP') throw new OutsideOutError(`${file} is a symbolic link; idsync never writes through links under --out`, file);
    throw new FileError(`cannot append to ${file}: ${code ?? String(err)}`, file, { cause: err });
  } finally {
    await handle?.close().catch(() => undefined);
  }
}

async function ensureHeader(file: string): Promise<void> {
  try {
    await lstat(file);
    return;
  } catch {
    // Not there yet: create it below (or lose the race to another job, which is fine).
  }
  const temp = `${file}.${randomBytes(6).toString('hex')}.part`;
  try {
    await writeFile(temp, stringify([[...INDEX_COLUMNS]]), { flag: 'wx' });
    await linkNew(temp, file);
  } catch (err) {
    throw new FileError(`cannot create ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, file, { cause: err });
  } finally {
    await rm(temp, { force: true }).catch(() => undefined);
  }
}
