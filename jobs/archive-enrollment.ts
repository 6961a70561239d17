import { randomBytes } from 'node:crypto';
import { rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { AllowedFolders } from '../src/allowed-folders.ts';
import type { ApiClient } from '../src/api/client.ts';
import { FileError } from '../src/errors.ts';
import type { Logger } from '../src/log.ts';
import { appendIndex, type IndexEntry } from '../src/outputs/archive-index.ts';
import { archivePath, existingFile, linkNew } from '../src/outputs/archive-files.ts';
import { prepareOutTarget } from '../src/outputs/out-dir.ts';
import { enrollmentPath, enrollmentVersionPath } from '../src/outputs/archive-names.ts';
import type { ArchiveEnrollmentPayload } from './archive-job-data.ts';
import type { JobOutcome, RowJobKind } from './job-kind.ts';

/** Enough tries to find a free name for the kept version when several changes land in one second. */
const MAX_VERSION_SUFFIX = 100;

/**
 * Archives one face's enrollment photo as `enrollment/<faceId>.jpg`. The photo is always
 * downloaded (the API offers no version or date to ask first), to a temp name; when it equals
 * the archived one it is dropped and nothing changes. When it differs, the archived one is
 * first linked to `<faceId>.<UTC time>.jpg` and only then replaced by a rename, so at every
 * moment both names hold complete files.
 */
export const archiveEnrollment: RowJobKind<ArchiveEnrollmentPayload> = {
  type: 'row',
  name: 'archive-enrollment',
  action: 'archive-enrollment',
  ids: ({ faceId }) => ({ faceId }),
  run: (job, ctx) => archiveOne(job.payload, ctx.client, ctx.clock.now(), ctx.log, job.signal, ctx.allowWrite),
};

async function archiveOne(payload: ArchiveEnrollmentPayload, client: ApiClient, now: number, log: Logger, signal?: AbortSignal, allowed?: AllowedFolders): Promise<JobOutcome> {
  const { faceId, outDir, runAtMs } = payload;
  const relative = enrollmentPath(faceId);
  // prepareOutTarget, not archivePath: the download below is confined to the root it checked.
  const { root, target } = await prepareOutTarget(outDir, relative, allowed);
  const incoming = path.join(path.dirname(target), `.${faceId}.incoming-${randomBytes(6).toString('hex')}.jpg`);
  try {
    // Confined to the checked root: a folder swapped for a link while the photo downloads is refused.
    const fresh = await client.downloadEnrollmentPhoto(faceId, { root, path: incoming }, signal);
    const current = await existingFile(target);
    const archivedAt = new Date(now).toISOString();
    const ids = { faceId, output: relative, bytes: fresh.bytes, sha256: fresh.sha256 };
    if (current?.sha256 === fresh.sha256) return { status: 'skipped', action: 'unchanged', ...ids };

    const entries: IndexEntry[] = [];
    if (current) {
      const kept = await keepPrevious(outDir, faceId, target, current.sha256, runAtMs);
      entries.push({ path: kept, kind: 'enrollment-previous', faceId, bytes: current.bytes, sha256: current.sha256, archivedAt });
    }
    try {
      await rename(incoming, target);
    } catch (err) {
      throw new FileError(`cannot write ${target}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, target, { cause: err });
    }
    entries.push({ path: relative, kind: 'enrollment', faceId, bytes: fresh.bytes, sha256: fresh.sha256, archivedAt });
    await appendIndex(outDir, entries);
    log.debug({ faceId, changed: current !== undefined }, 'enrollment photo archived');
    return { status: 'succeeded', action: current ? 'changed (previous kept)' : 'archived', ...ids };
  } finally {
    await rm(incoming, { force: true }).catch(() => undefined);
  }
}

/** Links the current photo to its versioned name; a retry that finds its own earlier link reuses it. */
async function keepPrevious(outDir: string, faceId: string, target: string, sha256: string, runAtMs: number): Promise<string> {
  for (let suffix = 0; suffix < MAX_VERSION_SUFFIX; suffix++) {
    const relative = enrollmentVersionPath(faceId, runAtMs, suffix);
    const versioned = await archivePath(outDir, relative);
    if (await linkNew(target, versioned)) return relative;
    if ((await existingFile(versioned))?.sha256 === sha256) return relative;
  }
  throw new FileError(`no free name to keep the previous enrollment photo of ${faceId}`, target);
}
