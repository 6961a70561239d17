import path from 'node:path';
import { cutText } from '../text.ts';
import { isGuid, normalizeGuid } from './guid.ts';

/** Where a dropped file goes: `DIR/<personId>/<file>`. */
export type DropPlace = { ok: true; personId: string; fileName: string } | { ok: false; reason: string };

/** Reads the person from a path relative to the watched folder. */
export function placeOfDrop(relPath: string): DropPlace {
  const segments = relPath.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');
  if (segments.length < 2) return { ok: false, reason: 'not inside a person folder: drop files into <dir>/<personId>/' };
  if (segments.length > 2) return { ok: false, reason: `nested folder: only <dir>/<personId>/<file> is ingested, not deeper (${segments.slice(1, -1).join('/')})` };
  const [folder, fileName] = segments as [string, string];
  if (!isGuid(folder)) return { ok: false, reason: `folder "${folder}" is not a person id (GUID)` };
  return { ok: true, personId: normalizeGuid(folder), fileName };
}

/** What a sidecar may set. */
export interface SidecarFields {
  name?: string;
  description?: string;
  publicId?: string;
}

const MAX_NAME = 255;
const SIDECAR_KEYS = new Set(['name', 'description', 'publicId']);

/** Parses a sidecar's text; throws an Error whose message is the reason it is set aside. */
export function parseSidecar(text: string): SidecarFields {
  let data: unknown;
  try {
    data = JSON.parse(text.replace(/^\uFEFF/, ''));
  } catch (err) {
    throw new Error(`sidecar is not valid JSON: ${(err as Error).message}`);
  }
  if (data === null || typeof data !== 'object' || Array.isArray(data)) throw new Error('sidecar must hold a JSON object');
  const record = data as Record<string, unknown>;
  // Unknown keys are refused rather than ignored: a typo ("nmae") would otherwise go unnoticed.
  const unknown = Object.keys(record).filter((k) => !SIDECAR_KEYS.has(k));
  if (unknown.length > 0) throw new Error(`sidecar has unknown key(s) ${unknown.join(', ')} (allowed: name, description, publicId)`);
  const out: SidecarFields = {};
  for (const key of ['name', 'description', 'publicId'] as const) {
    const value = record[key];
    if (value === undefined || value === null) continue;
    if (typeof value !== 'string') throw new Error(`sidecar "${key}" must be a string`);
    const trimmed = value.trim();
    if (trimmed === '') continue;
    out[key] = trimmed;
  }
  if (out.name && out.name.length > MAX_NAME) throw new Error(`sidecar "name" is longer than ${MAX_NAME} characters`);
  if (out.publicId) {
    if (!isGuid(out.publicId)) throw new Error(`sidecar "publicId" "${out.publicId}" is not a GUID`);
    out.publicId = normalizeGuid(out.publicId);
  }
  return out;
}

/** The document's display name when no sidecar names it: the file name without its extension. */
export function defaultDocumentName(fileName: string): string {
  const ext = path.extname(fileName);
  const stem = ext ? fileName.slice(0, -ext.length) : fileName;
  return cutText(stem || fileName, MAX_NAME);
}
