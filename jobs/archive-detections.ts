import type { AllowedFolders } from '../src/allowed-folders.ts';
import type { DetectionItem } from '../src/api/client.ts';
import { FileError } from '../src/errors.ts';
import { appendIndex, type IndexEntry } from '../src/outputs/archive-index.ts';
import { archivePath, existingFile, sha256Of, storeNew } from '../src/outputs/archive-files.ts';
import { compactUtc, detectionPath, undatedDetectionPath } from '../src/outputs/archive-names.ts';
import { WatermarkStore } from '../src/store/archive-state.ts';
import type { ArchiveDetectionsPayload } from './archive-job-data.ts';
import type { JobContext, JobOutcome, RowJobKind } from './job-kind.ts';

/** A name taken by other content moves the item to the next n; this bounds that search. */
const MAX_SAME_TIME = 1000;

interface Counts {
  listed: number;
  written: number;
  existing: number;
  noImage: number;
  bytes: number;
}

interface Photo {
  timeMs: number | undefined;
  detector: unknown;
  dateTimeUtc: unknown;
  bytes: Buffer;
  sha256: string;
}

/**
 * Archives one person's detection photos for the window (last watermark, run time]. Pages
 * through the listing oldest first; every inline image becomes
 * `detections/<personId>/<day>/<time>_<detector>_<n>.jpg`. The watermark moves to the
 * window's end only after the last page was stored, so any failure leaves it where it was
 * and the next run (or this job's retry) lists the same window again, skipping what is there.
 */
export const archiveDetections: RowJobKind<ArchiveDetectionsPayload> = {
  type: 'row',
  name: 'archive-detections',
  action: 'archive-detections',
  ids: ({ personId }) => ({ personId }),
  run: (job, ctx) => archiveWindow(job.payload, ctx, job.signal),
};

async function archiveWindow(payload: ArchiveDetectionsPayload, ctx: JobContext, signal?: AbortSignal): Promise<JobOutcome> {
  const { personId, outDir, windowEndMs, pageSize } = payload;
  const marks = new WatermarkStore(ctx.store.redis, ctx.store.keys.archive(payload.archiveKey), outDir);
  const known = await marks.get(personId);
  const startMs = known.watermarkMs !== undefined ? known.watermarkMs + 1 : payload.explicitSince ? payload.firstStartMs : (known.startMs ?? payload.firstStartMs);
  const window = `${new Date(startMs).toISOString()} .. ${new Date(windowEndMs).toISOString()}`;
  const output = `detections/${personId}`;
  if (startMs > windowEndMs) return { status: 'skipped', action: `up to date (watermark ${new Date(known.watermarkMs ?? startMs).toISOString()})`, personId, output };
  if (known.watermarkMs === undefined) await marks.recordStart(personId, startMs, payload.explicitSince);

  const counts: Counts = { listed: 0, written: 0, existing: 0, noImage: 0, bytes: 0 };
  const archivedAt = new Date(ctx.clock.now()).toISOString();
  // Items of one millisecond are named together (their n), so the last group of a page waits for the next page.
  let carry: Photo[] = [];
  for (let skip = 0; ; skip += pageSize) {
    const page = await ctx.client.listDetectionsByPerson(personId, { skip, take: pageSize, epochStartMs: startMs, epochEndMs: windowEndMs, dateAscending: true }, signal);
    counts.listed += page.length;
    const photos = [...carry, ...page.map((d) => toPhoto(d, counts)).filter((p): p is Photo => p !== undefined)];
    // Stop only at an EMPTY page: a server that caps `take` below ours returns short pages that are not the last.
    if (page.length === 0) {
      await storeGroups(photos, { outDir, personId, archivedAt, counts, allowed: ctx.allowWrite });
      break;
    }
    const lastTime = photos.at(-1)?.timeMs;
    carry = photos.filter((p) => p.timeMs !== undefined && p.timeMs === lastTime);
    await storeGroups(
      photos.filter((p) => !(p.timeMs !== undefined && p.timeMs === lastTime)),
      { outDir, personId, archivedAt, counts, allowed: ctx.allowWrite },
    );
  }
  await marks.advance(personId, windowEndMs);
  ctx.log.debug({ personId, window, ...counts }, 'detection window archived');
  const action = `window ${compactUtc(startMs)}..${compactUtc(windowEndMs)}: ${counts.written} new, ${counts.existing} already archived, ${counts.noImage} without image`;
  return { status: counts.written > 0 ? 'succeeded' : 'skipped', action, personId, output, bytes: counts.bytes };
}

function toPhoto(d: DetectionItem, counts: Counts): Photo | undefined {
  if (typeof d?.image !== 'string' || d.image === '') {
    counts.noImage++;
    return undefined;
  }
  const bytes = Buffer.from(d.image, 'base64');
  const parsed = typeof d.dateTimeUtc === 'string' ? Date.parse(d.dateTimeUtc) : Number.NaN;
  return { timeMs: Number.isNaN(parsed) ? undefined : parsed, detector: d.detector, dateTimeUtc: d.dateTimeUtc, bytes, sha256: sha256Of(bytes) };
}

/**
 * Stores photos grouped by their exact time. Within a group, n follows the content's sha256
 * (not the server's order, which the API does not promise to keep), so the same window
 * always yields the same names. A name held by other content moves on to the next n; a name
 * held by the same content means "already archived".
 */
async function storeGroups(photos: Photo[], where: { outDir: string; personId: string; archivedAt: string; counts: Counts; allowed: AllowedFolders | undefined }): Promise<void> {
  const groups = new Map<string, Photo[]>();
  for (const p of photos) {
    const key = p.timeMs === undefined ? `undated/${p.sha256}` : String(p.timeMs);
    let g = groups.get(key);
    if (!g) groups.set(key, (g = []));
    g.push(p);
  }
  const entries: IndexEntry[] = [];
  for (const group of groups.values()) {
    group.sort((a, b) => (a.sha256 < b.sha256 ? -1 : a.sha256 > b.sha256 ? 1 : 0));
    const taken = new Set<number>();
    for (const p of group) {
      let n = 0;
      for (; n < MAX_SAME_TIME; n++) {
        if (taken.has(n)) continue;
        const relative = p.timeMs === undefined ? undatedDetectionPath(where.personId, p.sha256, p.detector) : detectionPath(where.personId, p.timeMs, p.detector, n);
        const target = await archivePath(where.outDir, relative, where.allowed);
        if ((await storeNew(target, p.bytes)) === 'written') {
          where.counts.written++;
          where.counts.bytes += p.bytes.length;
          entries.push({
            path: relative,
            kind: 'detection',
            personId: where.personId,
            detectionTime: typeof p.dateTimeUtc === 'string' ? p.dateTimeUtc : '',
            detector: typeof p.detector === 'string' ? p.detector : '',
            bytes: p.bytes.length,
            sha256: p.sha256,
            archivedAt: where.archivedAt,
          });
          break;
        }
        if ((await existingFile(target))?.sha256 === p.sha256) {
          where.counts.existing++;
          break;
        }
        if (p.timeMs === undefined) break; // content-named: same name, other bytes cannot happen short of a sha256 prefix clash
      }
      if (n >= MAX_SAME_TIME) throw new FileError(`no free name for a detection of ${where.personId} at ${String(p.dateTimeUtc)}`, where.outDir);
      taken.add(n);
    }
  }
  await appendIndex(where.outDir, entries);
}
