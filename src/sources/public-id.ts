import { v5 as uuidv5 } from 'uuid';

/** Fixed namespace of idsync's derived document ids (a random UUID chosen once; never change it). */
export const PUBLIC_ID_NAMESPACE = '6f1c2b7e-3d4a-4e8b-9a51-0c7d2e9f4b13';

/**
 * The publicId a document is stored under when the manifest gives none: a UUIDv5 of the
 * person and the file's content, so the same file for the same person always maps to the same
 * id, whatever its name or path, on every rerun and every machine.
 */
export function derivePublicId(personId: string, sha256: string): string {
  return uuidv5(`${personId.toLowerCase()}:${sha256.toLowerCase()}`, PUBLIC_ID_NAMESPACE);
}
