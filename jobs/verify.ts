import { createHash } from 'node:crypto';
import type { ApiClient } from '../src/api/client.ts';
import { hashFile } from '../src/sources/file-hash.ts';
import { derivePublicId } from '../src/sources/public-id.ts';
import type { JobOutcome, RowJobKind } from './job-kind.ts';

/** Where the server keeps the copy a row is compared with. */
export type ServerCopy =
  /** `documentId` absent: the id import derives from personId and the content (src/sources/public-id.ts). */
  | { type: 'document'; personId: string; documentId?: string }
  | { type: 'enrollmentPhoto'; faceId: string }
  | { type: 'detectionPhoto'; faceId: string; detectionId: string }
  /** An archived detection photo: the API lists it (inline, by person and time); it has no URL of its own. */
  | { type: 'listedDetection'; personId: string; timeMs: number };

export interface VerifyPayload {
  /** The local copy (absolute path). Without `sha256` its content is the one expected (a manifest's file). */
  file?: string;
  /** The content recorded (hex sha256: a report's or an archive index's). */
  sha256?: string;
  /** The server's copy, compared too (import manifests and reports always; folders with --remote). */
  server?: ServerCopy;
  /** Why a row of a folder is compared on disk only, though --remote was given (an earlier photo version). */
  localOnly?: string;
  /** What the report shows for the row. */
  show: { personId?: string; faceId?: string; detectionId?: string; documentId?: string; file?: string; output?: string };
}

/** Detections asked for at one instant (a person rarely has more than a few in one millisecond). */
const SAME_INSTANT = 100;

/**
 * Checks one row's copies without writing anything: the local file is hashed from disk, the
 * server's copy streamed through sha256 as it arrives. `verified` when every copy compared has the
 * content expected, `mismatch` when one has other content, `missing` when one is gone (a 404, a
 * deleted file). Anything that keeps it from checking (network, 5xx after the retries, a file it
 * may not read) is thrown: the engine retries it and in the end records `failed`.
 */
export const verify: RowJobKind<VerifyPayload> = {
  type: 'row',
  name: 'verify',
  action: 'verify',
  ids: ({ show }) => ({ ...show }),
  async run(job, ctx): Promise<JobOutcome> {
    const p = job.payload;
    const action = [p.file ? 'local' : '', p.server ? 'server' : ''].filter(Boolean).join('+') + (p.localOnly ? ` (${p.localOnly})` : '');
    const base = { action, ...p.show };
    let expected = p.sha256;
    let bytes: number | undefined;
    if (p.file) {
      const local = await localCopy(p.file);
      if (!local) return { status: 'missing', ...base, ...(expected ? { sha256: expected } : {}), error: `the local file is gone: ${p.file}` };
      if (expected && local.sha256 !== expected) {
        return { status: 'mismatch', ...base, bytes: local.bytes, sha256: expected, error: `the file on disk differs from the one recorded: its sha256 is ${local.sha256} (${local.bytes} bytes)` };
      }
      expected = local.sha256;
      bytes = local.bytes;
    }
    if (!expected) throw new Error('a verify job needs a file or a recorded sha256'); // the plan never makes one
    const sized = { ...(bytes !== undefined ? { bytes } : {}), sha256: expected };
    if (p.server) {
      const where = p.server.type === 'document' ? { documentId: p.server.documentId ?? derivePublicId(p.server.personId, expected) } : {};
      const held = await serverCopy(ctx.client, p.server, expected, job.signal);
      if (!held) return { status: 'missing', ...base, ...where, ...sized, error: 'the server has no such copy (404)' };
      if (held.sha256 !== expected) {
        return { status: 'mismatch', ...base, ...where, ...sized, error: `the server's copy differs: its sha256 is ${held.sha256} (${held.bytes} bytes)` };
      }
      return { status: 'verified', ...base, ...where, bytes: bytes ?? held.bytes, sha256: expected };
    }
    return { status: 'verified', ...base, ...sized };
  },
};

/** The local file's content, or undefined when it is gone; a file that cannot be read throws (failed). */
async function localCopy(file: string): Promise<{ sha256: string; bytes: number } | undefined> {
  try {
    return await hashFile(file);
  } catch (err) {
    const code = (err as { sysCode?: string }).sysCode;
    if (code === 'ENOENT' || code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/** The server's copy, hashed as it streams; undefined when the API has none. */
async function serverCopy(client: ApiClient, copy: ServerCopy, expected: string, signal?: AbortSignal): Promise<{ sha256: string; bytes: number } | undefined> {
  switch (copy.type) {
    case 'document':
      return client.hashDocument(copy.personId, copy.documentId ?? derivePublicId(copy.personId, expected), signal);
    case 'enrollmentPhoto':
      return client.hashEnrollmentPhoto(copy.faceId, signal);
    case 'detectionPhoto':
      return client.hashDetectionPhoto(copy.faceId, copy.detectionId, signal);
    case 'listedDetection': {
      // Several detections may share the instant: the one archived is the one with its content.
      const listed = await client.listDetectionsByPerson(copy.personId, { epochStartMs: copy.timeMs, epochEndMs: copy.timeMs, take: SAME_INSTANT }, signal);
      const images = listed.flatMap((d) => (typeof d?.image === 'string' && d.image !== '' ? [Buffer.from(d.image, 'base64')] : []));
      if (images.length === 0) return undefined;
      const hashed = images.map((b) => ({ sha256: createHash('sha256').update(b).digest('hex'), bytes: b.length }));
      return hashed.find((h) => h.sha256 === expected) ?? hashed[0];
    }
  }
}
