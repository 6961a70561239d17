import path from 'node:path';

/**
 * Names a watched folder never ingests. Editors, browsers and copy tools write under these
 * names and rename when done (`*.part`, `*.crdownload`, `~$x.docx` Office lock files), and
 * dot-folders hold idsync's own `.processed`/`.failed`, which must never be ingested again.
 */
const TEMP_SUFFIXES = ['.tmp', '.part', '.crdownload'];

/** Why a path (relative to the watched folder, either separator) is ignored, or undefined. */
export function ignoredReason(relPath: string): string | undefined {
  const segments = relPath.split(/[\\/]+/).filter((s) => s !== '' && s !== '.');
  for (const segment of segments) {
    if (segment.startsWith('.')) return 'dotfile or dot-folder';
  }
  const base = segments[segments.length - 1];
  if (base === undefined) return undefined;
  const lower = base.toLowerCase();
  if (TEMP_SUFFIXES.some((s) => lower.endsWith(s))) return 'temporary file';
  if (base.startsWith('~$')) return 'Office lock file';
  return undefined;
}

/**
 * A sidecar is `<file>.json` where `<file>` has an extension of its own (`scan.pdf.json`);
 * `report.json` alone is a document. The rule depends on the name only, so a sidecar that
 * arrives before its file is already known as one.
 */
export function isSidecarName(fileName: string): boolean {
  return /^.+\.[^.]+\.json$/i.test(fileName) && !fileName.startsWith('.');
}

/** `dir/scan.pdf` → `dir/scan.pdf.json`. */
export function sidecarPathOf(file: string): string {
  return `${file}.json`;
}

/** `dir/scan.pdf.json` → `dir/scan.pdf`. */
export function dataPathOfSidecar(sidecar: string): string {
  return sidecar.slice(0, -'.json'.length);
}

/** True when `candidate` is `dir` itself or inside it (both absolute). */
export function isInside(dir: string, candidate: string): boolean {
  const rel = path.relative(dir, candidate);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}
