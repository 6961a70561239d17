import { jpegFor } from './jpeg-image.ts';
import { isKnownGuid } from './guid.ts';
import type { SandboxData } from './sandbox-data.ts';

/** How many generated photos stay cached; beyond that they are simply computed again (cheap). */
const CACHE_LIMIT = 10_000;

/**
 * Enrollment and detection photos: pinned bytes from the data file, else a generated JPEG
 * for every GUID outside the missing range. An enrollment photo's bytes change when its
 * version is bumped (to rehearse archival of changed photos).
 */
export class PhotoLibrary {
  private readonly versions = new Map<string, number>();
  private readonly cache = new Map<string, Buffer>();

  constructor(private readonly data: SandboxData) {}

  enrollmentPhoto(faceId: string): Buffer | undefined {
    const id = faceId.toLowerCase();
    const version = this.versions.get(id) ?? 1;
    const pinned = this.data.enrollmentPhotos.get(id);
    if (pinned && version === 1) return pinned;
    if (!pinned && !isKnownGuid(id)) return undefined;
    return this.cached(`idsync-sandbox enrollment face=${id} version=${version}`);
  }

  detectionPhoto(faceId: string, detectionId: string): Buffer | undefined {
    const face = faceId.toLowerCase();
    const detection = detectionId.toLowerCase();
    const pinned = this.data.detectionPhotos.get(`${face}/${detection}`);
    if (pinned) return pinned;
    if (!isKnownGuid(face) || !isKnownGuid(detection)) return undefined;
    return this.cached(`idsync-sandbox detection face=${face} detection=${detection}`);
  }

  bumpEnrollmentVersion(faceId: string): number {
    const id = faceId.toLowerCase();
    const next = (this.versions.get(id) ?? 1) + 1;
    this.versions.set(id, next);
    return next;
  }

  private cached(label: string): Buffer {
    let bytes = this.cache.get(label);
    if (!bytes) {
      bytes = jpegFor(label);
      if (this.cache.size >= CACHE_LIMIT) this.cache.delete(this.cache.keys().next().value!);
      this.cache.set(label, bytes);
    }
    return bytes;
  }
}
