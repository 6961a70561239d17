import { derivedGuid, hash32 } from './seeded-random.ts';
import type { PhotoLibrary } from './photo-library.ts';

/**
 * Detections as a pure function of time: each face is seen every `period` minutes (12..59,
 * from its hash) at a hash-derived phase, from ORIGIN on. A listing computes the sightings
 * inside [epochStartMs, epochEndMs], so as the (injected) clock moves new detections appear,
 * exactly what an incremental archiver must notice. Explicit detections (POST
 * /_admin/detections) are merged in.
 */
export const ORIGIN_MS = Date.UTC(2024, 0, 1);
export const DEFAULT_WINDOW_MS = 7 * 24 * 3600 * 1000;
/** Largest `take` honoured; larger values are clamped (a real server caps pages too). */
export const MAX_TAKE = 1000;
/** Safety cap when a listing must be materialised (several faces or explicit detections). */
const MAX_MATERIALISED = 200_000;

const TIME_ZONES = ['Europe/Amsterdam', 'America/New_York', 'Asia/Singapore', 'UTC', 'Australia/Sydney', 'America/Los_Angeles'];
const DETECTORS = ['Entrance Camera 1', 'Entrance Camera 2', 'Lobby', 'Parking Gate', 'Loading Dock'];

export interface DetectionItem {
  confidence: number;
  dateTimeUtc: string;
  timeZone: string;
  detector: string;
  image: string | null;
  /** Extra fields the vendor's guide does not show; clients must not depend on them. */
  detectionId: string;
  faceId: string;
}

export interface ExplicitDetection {
  personId: string;
  faceId: string;
  detectionId: string;
  timeMs: number;
  detector: string;
  timeZone: string;
  confidence: number;
  /** base64, null for "no image", undefined for the generated detection photo */
  image: string | null | undefined;
}

export interface DetectionQuery {
  startMs: number;
  endMs: number;
  skip: number;
  take: number;
  ascending: boolean;
}

interface Sighting {
  faceId: string;
  n: number;
  timeMs: number;
  explicit?: ExplicitDetection;
}

function periodOf(faceId: string): number {
  return (12 + (hash32(`period/${faceId}`) % 48)) * 60_000;
}

function phaseOf(faceId: string, period: number): number {
  return hash32(`phase/${faceId}`) % period;
}

/** Index range [lo, hi] of a face's sightings inside the window. */
function indexRange(faceId: string, startMs: number, endMs: number): { lo: number; hi: number; period: number; first: number } {
  const period = periodOf(faceId);
  const first = ORIGIN_MS + phaseOf(faceId, period);
  const lo = Math.max(0, Math.ceil((startMs - first) / period));
  const hi = Math.floor((endMs - first) / period);
  return { lo, hi, period, first };
}

export class DetectionSchedule {
  private readonly explicit: ExplicitDetection[] = [];

  constructor(private readonly photos: PhotoLibrary) {}

  add(detection: ExplicitDetection): void {
    this.explicit.push(detection);
  }

  /** One page of the listing for these faces (a person's faces, or a single face). */
  list(faceIds: string[], query: DetectionQuery, filter: (d: ExplicitDetection) => boolean): DetectionItem[] {
    const { startMs, endMs, skip, take, ascending } = query;
    const explicit = this.explicit.filter((d) => filter(d) && d.timeMs >= startMs && d.timeMs <= endMs);
    if (faceIds.length === 1 && explicit.length === 0) {
      // The common case, computed arithmetically: no listing is ever materialised.
      const faceId = faceIds[0]!;
      const { lo, hi, period, first } = indexRange(faceId, startMs, endMs);
      const count = Math.max(0, hi - lo + 1);
      const out: DetectionItem[] = [];
      for (let p = skip; p < Math.min(count, skip + take); p++) {
        const n = ascending ? lo + p : hi - p;
        out.push(this.item({ faceId, n, timeMs: first + n * period }));
      }
      return out;
    }
    const all: Sighting[] = explicit.map((d) => ({ faceId: d.faceId, n: -1, timeMs: d.timeMs, explicit: d }));
    for (const faceId of faceIds) {
      const { lo, hi, period, first } = indexRange(faceId, Math.max(startMs, ORIGIN_MS), endMs);
      for (let n = lo; n <= hi && all.length < MAX_MATERIALISED; n++) all.push({ faceId, n, timeMs: first + n * period });
    }
    all.sort((a, b) => a.timeMs - b.timeMs || a.faceId.localeCompare(b.faceId) || a.n - b.n);
    if (!ascending) all.reverse();
    return all.slice(skip, skip + take).map((s) => this.item(s));
  }

  private item(s: Sighting): DetectionItem {
    if (s.explicit) {
      const d = s.explicit;
      const image = d.image === undefined ? this.photos.detectionPhoto(d.faceId, d.detectionId)?.toString('base64') ?? null : d.image;
      return { confidence: d.confidence, dateTimeUtc: new Date(d.timeMs).toISOString(), timeZone: d.timeZone, detector: d.detector, image, detectionId: d.detectionId, faceId: d.faceId };
    }
    const detectionId = derivedGuid(`detection/${s.faceId}/${s.n}`);
    const h = hash32(detectionId);
    // About one in seven detections comes without an image, as real listings do.
    const image = h % 7 === 0 ? null : (this.photos.detectionPhoto(s.faceId, detectionId)?.toString('base64') ?? null);
    return {
      confidence: Math.round((0.55 + (h % 4500) / 10_000) * 10_000) / 10_000,
      dateTimeUtc: new Date(s.timeMs).toISOString(),
      timeZone: TIME_ZONES[(h >>> 4) % TIME_ZONES.length]!,
      detector: DETECTORS[(h >>> 12) % DETECTORS.length]!,
      image,
      detectionId,
      faceId: s.faceId,
    };
  }
}
