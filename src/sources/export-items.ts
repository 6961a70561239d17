import path from 'node:path';
import { RowInvalidError } from '../errors.ts';
import type { ManifestRecord } from './manifest-reader.ts';
import { isGuid, normalizeGuid } from './guid.ts';

export const EXPORT_REQUIRED_COLUMNS = ['type'] as const;
export const EXPORT_KNOWN_COLUMNS = ['type', 'faceId', 'detectionId', 'personId', 'documentId', 'output'] as const;

export type ExportType = 'enrollmentPhoto' | 'detectionPhoto' | 'document';

export interface ExportItem {
  type: ExportType;
  faceId?: string;
  detectionId?: string;
  personId?: string;
  documentId?: string;
  /**
   * Output path relative to --out, with forward slashes. For documents without an explicit
   * output it has no extension yet: the job adds one from the response's content type.
   */
  output: string;
  /** True when `output` came from the manifest (then it is used exactly). */
  explicitOutput: boolean;
}

function requireGuid(values: Record<string, string>, column: string, type: string): string {
  const value = (values[column] ?? '').trim();
  if (!value) throw new RowInvalidError(`${column} is required for type ${type}`);
  if (!isGuid(value)) throw new RowInvalidError(`${column} "${value}" is not a GUID`);
  return normalizeGuid(value);
}

/**
 * A manifest's output path must stay inside --out: no absolute paths, no `..`, no drive
 * letters or backslash tricks. (Links under --out are checked again when the file is written.)
 */
export function safeRelativeOutput(raw: string): string {
  const value = raw.trim();
  if (value.includes('\0')) throw new RowInvalidError('output contains a NUL character');
  if (value.includes('\\')) throw new RowInvalidError(`output "${value}" contains a backslash; use / between folders`);
  if (path.posix.isAbsolute(value) || /^[A-Za-z]:/.test(value)) throw new RowInvalidError(`output "${value}" is absolute; it must be a path under --out`);
  const segments = value.split('/');
  if (segments.some((s) => s === '..')) throw new RowInvalidError(`output "${value}" leaves --out (..)`);
  const normal = path.posix.normalize(value);
  if (normal === '.' || normal.endsWith('/') || normal === '') throw new RowInvalidError(`output "${value}" names a folder, not a file`);
  if (normal.split('/').some((s) => s.startsWith('.') && (s === '.' || s.endsWith('.part')))) {
    throw new RowInvalidError(`output "${value}" uses a reserved name`);
  }
  return normal;
}

export function toExportItem(record: ManifestRecord): ExportItem {
  if (record.shapeError) throw new RowInvalidError(`row ${record.shapeError}`);
  const v = record.values;
  const type = (v.type ?? '').trim();
  const outputCell = (v.output ?? '').trim();
  const explicit = outputCell !== '';
  // The manifest's output when it names one (kept inside --out), else the type's default path.
  const output = (fallback: string) => ({ output: explicit ? safeRelativeOutput(outputCell) : fallback, explicitOutput: explicit });
  switch (type) {
    case 'enrollmentPhoto': {
      const faceId = requireGuid(v, 'faceId', type);
      return { type, faceId, ...output(`enrollment/${faceId}.jpg`) };
    }
    case 'detectionPhoto': {
      const faceId = requireGuid(v, 'faceId', type);
      const detectionId = requireGuid(v, 'detectionId', type);
      return { type, faceId, detectionId, ...output(`detections/${faceId}/${detectionId}.jpg`) };
    }
    case 'document': {
      const personId = requireGuid(v, 'personId', type);
      const documentId = requireGuid(v, 'documentId', type);
      return { type, personId, documentId, ...output(`documents/${personId}/${documentId}`) };
    }
    case '':
      throw new RowInvalidError('type is empty (enrollmentPhoto, detectionPhoto or document)');
    default:
      throw new RowInvalidError(`type "${type}" is not enrollmentPhoto, detectionPhoto or document`);
  }
}
