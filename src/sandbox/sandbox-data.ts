import { readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';
import { isGuid } from './guid.ts';

/**
 * The optional `--data FILE` (or `data` object): pins people, tags, faces and photos so a
 * rehearsal can use known records. Everything not pinned is still generated on demand.
 *
 * Photos are either `photoBase64` or `photoFile` (a path, relative to the data file's folder).
 */
export interface PinnedPerson {
  personId: string;
  aliases?: Array<Record<string, unknown>>;
  addresses?: unknown[];
  entityFields?: unknown[];
  notes?: unknown[];
  /** tag ids */
  tags?: string[];
  faceIds?: string[];
}

export interface PinnedTag {
  tagId: string;
  name?: string;
}

export interface PinnedFace {
  faceId: string;
  personId?: string;
  photoBase64?: string;
  photoFile?: string;
}

export interface PinnedDetectionPhoto {
  faceId: string;
  detectionId: string;
  photoBase64?: string;
  photoFile?: string;
}

export interface SandboxDataFile {
  people?: PinnedPerson[];
  tags?: PinnedTag[];
  faces?: PinnedFace[];
  detectionPhotos?: PinnedDetectionPhoto[];
}

export interface SandboxData {
  people: Map<string, PinnedPerson>;
  tags: Map<string, PinnedTag>;
  /** faceId -> person it belongs to */
  faceOwner: Map<string, string>;
  enrollmentPhotos: Map<string, Buffer>;
  /** `${faceId}/${detectionId}` -> bytes */
  detectionPhotos: Map<string, Buffer>;
}

const key = (id: string) => id.toLowerCase();

export function emptyData(): SandboxData {
  return { people: new Map(), tags: new Map(), faceOwner: new Map(), enrollmentPhotos: new Map(), detectionPhotos: new Map() };
}

/** Reads and checks the data; `source` is a file path or an already parsed object. Bad data fails at start with a clear message. */
export function loadSandboxData(source: string | object | undefined): SandboxData {
  const data = emptyData();
  if (source === undefined) return data;
  let raw: unknown = source;
  let baseDir = process.cwd();
  if (typeof source === 'string') {
    baseDir = path.dirname(path.resolve(source));
    try {
      raw = JSON.parse(readFileSync(source, 'utf8'));
    } catch (err) {
      throw new ConfigError(`cannot read sandbox data ${source}: ${(err as Error).message}`, '--data');
    }
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) throw new ConfigError('sandbox data must be a JSON object', '--data');
  const file = raw as SandboxDataFile;
  const photo = (where: string, p: { photoBase64?: string; photoFile?: string }): Buffer | undefined => {
    if (p.photoBase64) return Buffer.from(p.photoBase64, 'base64');
    if (p.photoFile) {
      try {
        return readFileSync(path.resolve(baseDir, p.photoFile));
      } catch (err) {
        throw new ConfigError(`sandbox data ${where}: cannot read ${p.photoFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, '--data');
      }
    }
    return undefined;
  };
  const guid = (where: string, id: unknown): string => {
    if (typeof id !== 'string' || !isGuid(id)) throw new ConfigError(`sandbox data ${where}: ${JSON.stringify(id)} is not a GUID`, '--data');
    return key(id);
  };
  for (const [i, p] of (file.people ?? []).entries()) {
    const id = guid(`people[${i}].personId`, p.personId);
    data.people.set(id, { ...p, personId: p.personId });
    for (const faceId of p.faceIds ?? []) data.faceOwner.set(guid(`people[${i}].faceIds`, faceId), id);
  }
  for (const [i, t] of (file.tags ?? []).entries()) data.tags.set(guid(`tags[${i}].tagId`, t.tagId), t);
  for (const [i, f] of (file.faces ?? []).entries()) {
    const id = guid(`faces[${i}].faceId`, f.faceId);
    if (f.personId) data.faceOwner.set(id, guid(`faces[${i}].personId`, f.personId));
    const bytes = photo(`faces[${i}]`, f);
    if (bytes) data.enrollmentPhotos.set(id, bytes);
  }
  for (const [i, d] of (file.detectionPhotos ?? []).entries()) {
    const id = `${guid(`detectionPhotos[${i}].faceId`, d.faceId)}/${guid(`detectionPhotos[${i}].detectionId`, d.detectionId)}`;
    const bytes = photo(`detectionPhotos[${i}]`, d);
    if (bytes) data.detectionPhotos.set(id, bytes);
  }
  return data;
}
