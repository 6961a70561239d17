import { isGuid, normalizeGuid } from './guid.ts';
import { readManifest, type ManifestReadOptions } from './manifest-reader.ts';

/** --delimiter and --encoding, for FACES.csv and PERSONS.csv alike (each detects its own delimiter when none is given). */
export type ArchiveCsvOptions = Pick<ManifestReadOptions, 'delimiter' | 'encoding'>;

/** One line of an archive run: a face (enrollment photo) or a person (detection window). */
export interface ArchiveTarget {
  /** 1-based line of the run's report: faces first, then persons. */
  row: number;
  kind: 'face' | 'person';
  /** The GUID, lower case; the raw cell when invalid. */
  id: string;
  /** Why the line is not archived (reported rejected) ... */
  invalid?: string;
  /** ... or the earlier line it repeats (reported skipped). */
  duplicateOf?: number;
}

export const FACES_REQUIRED_COLUMNS = ['faceId'] as const;
export const PERSONS_REQUIRED_COLUMNS = ['personId'] as const;

function target(row: number, kind: ArchiveTarget['kind'], raw: string, seen: Map<string, number>): ArchiveTarget {
  const column = kind === 'face' ? 'faceId' : 'personId';
  const value = raw.trim();
  if (!value) return { row, kind, id: raw, invalid: `${column} is empty` };
  if (!isGuid(value)) return { row, kind, id: raw, invalid: `${column} "${value}" is not a GUID` };
  const id = normalizeGuid(value);
  const first = seen.get(id);
  if (first !== undefined) return { row, kind, id, duplicateOf: first };
  seen.set(id, row);
  return { row, kind, id };
}

/**
 * Reads FACES.csv and then PERSONS.csv or the people carrying a tag into one numbered list.
 * A missing file or column throws ManifestError (exit 2) before anything is queued.
 */
export async function readArchiveTargets(options: { faces: string; persons?: string; tag?: string; client?: { listPeopleByTag(tag: string, signal?: AbortSignal): Promise<Array<{ personId?: unknown }>> }; signal?: AbortSignal; csv?: ArchiveCsvOptions }): Promise<ArchiveTarget[]> {
  const out: ArchiveTarget[] = [];
  const faces = new Map<string, number>();
  for await (const record of readManifest(options.faces, FACES_REQUIRED_COLUMNS, options.csv)) {
    out.push(target(out.length + 1, 'face', record.values.faceId ?? '', faces));
  }
  const people = new Map<string, number>();
  if (options.persons) {
    for await (const record of readManifest(options.persons, PERSONS_REQUIRED_COLUMNS, options.csv)) {
      out.push(target(out.length + 1, 'person', record.values.personId ?? '', people));
    }
  } else if (options.tag) {
    if (!options.client) throw new Error('listing a tag needs an API client');
    for (const person of await options.client.listPeopleByTag(options.tag, options.signal)) {
      out.push(target(out.length + 1, 'person', typeof person?.personId === 'string' ? person.personId : '', people));
    }
  }
  return out;
}

/** Checks that the files can be read and carry their column, without keeping anything. */
export async function checkArchiveInputs(options: { faces: string; persons?: string; csv?: ArchiveCsvOptions }): Promise<void> {
  for await (const _ of readManifest(options.faces, FACES_REQUIRED_COLUMNS, options.csv)) break;
  if (options.persons) for await (const _ of readManifest(options.persons, PERSONS_REQUIRED_COLUMNS, options.csv)) break;
}
