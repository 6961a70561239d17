import { randomUUID } from 'node:crypto';
import { lstat, opendir, realpath, unlink } from 'node:fs/promises';
import path from 'node:path';

/**
 * The temp files idsync leaves under --out when it is killed mid-write (kill -9, power loss):
 * downloads and archive files write `.<name>.<12 hex>.part` beside their target, the enrollment
 * archive `.<faceId>.incoming-<12 hex>.jpg`, the archive index `index.csv.<12 hex>.part`. Only
 * names of these shapes are ever removed.
 */
const TEMP_NAMES = [/^\..+\.[0-9a-f]{12}\.part$/, /^\..+\.incoming-[0-9a-f]{12}\.jpg$/, /^index\.csv\.[0-9a-f]{12}\.part$/];

/**
 * Age from which a temp file is taken for abandoned. A live download's temp file is written at
 * least every body-timeout (60 s by default) or its request fails, so ten minutes leaves a
 * concurrent worker's file alone with a wide margin.
 */
export const STALE_PART_MS = 10 * 60_000;

export interface StalePartOptions {
  /** Epoch ms; injectable for tests. */
  now?: number;
  /** Most directory entries looked at (the walk stops there: a start must not take minutes). */
  maxEntries?: number;
  /** Deepest folder level walked below outDir. */
  maxDepth?: number;
}

export interface StalePartResult {
  /** Paths removed. */
  removed: string[];
  /** Directory entries looked at. */
  scanned: number;
  /** False when maxEntries or maxDepth cut the walk short. */
  complete: boolean;
}

export function isTempName(name: string): boolean {
  return TEMP_NAMES.some((re) => re.test(name));
}

/** The hidden temp name a download is written under beside `baseName` until it is renamed. */
export function partFileName(baseName: string): string {
  // 12 random hex digits: the first 12 of a UUIDv4 (its version digit is the 13th). randomUUID
  // draws from a cached pool; randomBytes(6) cost a call into OpenSSL per file (~15 µs).
  const id = randomUUID();
  return `.${baseName}.${id.slice(0, 8)}${id.slice(9, 13)}.part`;
}

/**
 * Removes idsync's temp files under `outDir` that were last written more than `olderThanMs` ago.
 * Never follows a link (a linked folder is not entered, a link is never removed), reads each
 * folder as a stream (memory does not grow with its size) and stops after `maxEntries`. Best
 * effort: a file that cannot be looked at or removed is left for the next run.
 */
export async function removeStaleParts(outDir: string, olderThanMs: number, options: StalePartOptions = {}): Promise<StalePartResult> {
  const now = options.now ?? Date.now();
  const maxEntries = options.maxEntries ?? 1_000_000;
  const maxDepth = options.maxDepth ?? 32;
  const result: StalePartResult = { removed: [], scanned: 0, complete: true };
  let root: string;
  try {
    root = await realpath(outDir);
  } catch {
    return result; // no --out yet: nothing to clean
  }
  const pending: Array<{ dir: string; depth: number }> = [{ dir: root, depth: 0 }];
  while (pending.length > 0) {
    const { dir, depth } = pending.pop()!;
    const stale: string[] = [];
    try {
      for await (const entry of await opendir(dir)) {
        if (result.scanned >= maxEntries) {
          result.complete = false;
          break;
        }
        result.scanned++;
        // Dirent types come from readdir, without following links: a link is neither.
        if (entry.isDirectory()) {
          if (depth + 1 > maxDepth) result.complete = false;
          else pending.push({ dir: path.join(dir, entry.name), depth: depth + 1 });
        } else if (entry.isFile() && isTempName(entry.name)) {
          stale.push(entry.name);
        }
      }
    } catch {
      continue; // gone or unreadable meanwhile
    }
    if (stale.length === 0) continue;
    // The folder swapped for a link since it was listed: leave it (never remove outside --out).
    if ((await realpath(dir).catch(() => undefined)) !== dir) continue;
    for (const name of stale) {
      const file = path.join(dir, name);
      const st = await lstat(file).catch(() => undefined);
      if (!st?.isFile() || now - st.mtimeMs < olderThanMs) continue;
      try {
        await unlink(file);
        result.removed.push(file);
      } catch {
        // Removed by someone else, or not ours to remove: the next run looks again.
      }
    }
    if (result.scanned >= maxEntries) {
      result.complete = false;
      break;
    }
  }
  return result;
}
