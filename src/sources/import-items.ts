import { accessSync, constants, realpathSync, statSync, type Stats } from 'node:fs';
import path from 'node:path';
import type { AllowedFolders } from '../allowed-folders.ts';
import { RowInvalidError } from '../errors.ts';
import type { ManifestRecord } from './manifest-reader.ts';
import { isGuid, normalizeGuid } from './guid.ts';

export const IMPORT_REQUIRED_COLUMNS = ['personId', 'file', 'name'] as const;
export const IMPORT_KNOWN_COLUMNS = ['personId', 'file', 'name', 'description', 'publicId'] as const;

/** One document to upload, as the upload job receives it. */
export interface ImportItem {
  personId: string;
  /** Absolute path. */
  file: string;
  name: string;
  description?: string;
  /** The manifest's publicId; when absent the job derives one from personId and the file's sha256. */
  publicId?: string;
}

const MAX_NAME = 255;

/**
 * Manifests made on Windows name files as `C:\scans\a.pdf` or `scans\a.pdf`; on Linux and macOS
 * a backslash is an ordinary character of a file name, so such a path names nothing here.
 */
function windowsHint(fileCell: string): string {
  return fileCell.includes('\\') ? ' (Windows path? use / between folders, or run idsync where the files are)' : '';
}

/**
 * Validates one import row; throws RowInvalidError with a reason a person can act on, or
 * NotAllowedError for a file outside `allowRead` (--allow-read; its job would be refused anyway).
 */
export async function toImportItem(record: ManifestRecord, manifestDir: string, allowRead?: AllowedFolders): Promise<ImportItem> {
  if (record.shapeError) throw new RowInvalidError(`row ${record.shapeError}`);
  const v = record.values;
  const personId = (v.personId ?? '').trim();
  if (!personId) throw new RowInvalidError('personId is empty');
  if (!isGuid(personId)) throw new RowInvalidError(`personId "${personId}" is not a GUID`);
  const name = (v.name ?? '').trim();
  if (!name) throw new RowInvalidError('name is empty');
  if (name.length > MAX_NAME) throw new RowInvalidError(`name is longer than ${MAX_NAME} characters`);
  const publicId = (v.publicId ?? '').trim();
  if (publicId && !isGuid(publicId)) throw new RowInvalidError(`publicId "${publicId}" is not a GUID`);
  const fileCell = (v.file ?? '').trim();
  if (!fileCell) throw new RowInvalidError('file is empty');
  if (fileCell.includes('\0')) throw new RowInvalidError('file contains a NUL character');
  const file = path.resolve(manifestDir, fileCell);
  let stat: Stats;
  try {
    // Synchronous on purpose: two cached-metadata syscalls cost microseconds, while their promise
    // versions each make a thread-pool round trip, costlier than the syscall itself.
    stat = statSync(file);
    accessSync(file, constants.R_OK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new RowInvalidError(`file ${fileCell} does not exist${windowsHint(fileCell)}`);
    throw new RowInvalidError(`file ${fileCell} cannot be read (${code ?? 'error'})`);
  }
  if (allowRead) allowRead.check(file, realpathSync(file));
  if (!stat.isFile()) throw new RowInvalidError(`file ${fileCell} is not a regular file`);
  if (stat.size === 0) throw new RowInvalidError(`file ${fileCell} is empty (0 bytes)`);
  const description = (v.description ?? '').trim();
  return {
    personId: normalizeGuid(personId),
    file,
    name,
    ...(description ? { description } : {}),
    ...(publicId ? { publicId: normalizeGuid(publicId) } : {}),
  };
}
