import path from 'node:path';

/**
 * File names of the archive. Pure functions: a re-run of the same window must compute the
 * same names, which is what lets it skip what is already there.
 */

function pad(n: number, width = 2): string {
  return String(n).padStart(width, '0');
}

/** `20261125T220000Z`: UTC, no separators that file systems or shells dislike. */
export function compactUtc(ms: number): string {
  const d = new Date(ms);
  return `${d.getUTCFullYear()}${pad(d.getUTCMonth() + 1)}${pad(d.getUTCDate())}T${pad(d.getUTCHours())}${pad(d.getUTCMinutes())}${pad(d.getUTCSeconds())}Z`;
}

/**
 * `20261125T220000.123Z`: detections keep their milliseconds, because the next window starts
 * 1 ms after the last one; a name that only knew the second could collide across windows.
 */
export function compactUtcMs(ms: number): string {
  return `${compactUtc(ms).slice(0, -1)}.${pad(new Date(ms).getUTCMilliseconds(), 3)}Z`;
}

export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10);
}

/** A detector name as a file-name part: letters, digits, dot, dash; at most 60 characters. */
export function sanitizeDetector(detector: unknown): string {
  const text = typeof detector === 'string' ? detector : '';
  const clean = text
    .normalize('NFKD')
    // Accents become their base letter (é → e) instead of a dash.
    .replace(/[\u0300-\u036f]/g, '')
    .replace(/[^A-Za-z0-9.-]+/g, '-')
    .replace(/-+/g, '-')
    .replace(/^[-.]+|[-.]+$/g, '')
    .slice(0, 60)
    .replace(/[-.]+$/g, '');
  return clean || 'unknown';
}

export function enrollmentPath(faceId: string): string {
  return path.posix.join('enrollment', `${faceId}.jpg`);
}

/** The kept previous version of a changed enrollment photo; `suffix` only when that second is taken already. */
export function enrollmentVersionPath(faceId: string, replacedAtMs: number, suffix = 0): string {
  return path.posix.join('enrollment', `${faceId}.${compactUtc(replacedAtMs)}${suffix > 0 ? `-${suffix + 1}` : ''}.jpg`);
}

export function detectionPath(personId: string, timeMs: number, detector: unknown, n: number): string {
  return path.posix.join('detections', personId, utcDay(timeMs), `${compactUtcMs(timeMs)}_${sanitizeDetector(detector)}_${n}.jpg`);
}

/** An item whose dateTimeUtc cannot be read still gets a stable name: from its content. */
export function undatedDetectionPath(personId: string, sha256: string, detector: unknown): string {
  return path.posix.join('detections', personId, 'unknown-date', `${sha256.slice(0, 16)}_${sanitizeDetector(detector)}.jpg`);
}
