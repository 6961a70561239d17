import { promises as fs } from 'node:fs';
import path from 'node:path';
import { syncDir, type LedgerIo } from './ledger-io.ts';
import type { SegmentInfo } from './segment-file.ts';

export const MANIFEST_FILE = 'manifest.json';
export const MANIFEST_FORMAT = 2;

/**
 * The one file naming what a ledger is made of. Replaced whole (write, fsync, rename, fsync the
 * folder) only by the holder of the compaction lock; every process re-reads it when its identity
 * (inode, size, times) changes, so each sees a compaction at its next look.
 */
export interface Manifest {
  format: typeof MANIFEST_FORMAT;
  apiUrl: string;
  /** Counts replacements (diagnostics). */
  version: number;
  /** Oldest first: a newer segment's record of a document overrides an older one's. */
  segments: SegmentInfo[];
  /** Generations, oldest first; the last takes the appends, the others await their fold. */
  journals: number[];
  /** Documents the segments know (started or stored), kept exact by each fold. */
  documents: number;
  /** Number of the next segment file. */
  nextSegment: number;
  /** The file of an older ledger format this one was made from. */
  migratedFrom?: string;
}

export interface ManifestStats {
  ino: number;
  size: number;
  mtimeMs: number;
  ctimeMs: number;
}

export interface LoadedManifest {
  manifest: Manifest;
  /** identityOf(stats): a manifest replaced since has another. */
  identity: string;
  stats: ManifestStats;
}

export function identityOf(stats: ManifestStats): string {
  return `${stats.ino}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}`;
}

export async function manifestIdentity(dir: string, io: LedgerIo): Promise<string | undefined> {
  const stats = await io.stat(path.join(dir, MANIFEST_FILE));
  return stats ? identityOf(stats) : undefined;
}

/** Reads the manifest and its identity from one open file, so the two always belong together. */
export async function readManifest(dir: string): Promise<LoadedManifest | undefined> {
  const file = path.join(dir, MANIFEST_FILE);
  let handle: fs.FileHandle;
  try {
    handle = await fs.open(file, 'r');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    const stats = await handle.stat();
    const manifest = JSON.parse(await handle.readFile('utf8')) as Manifest;
    if (manifest.format !== MANIFEST_FORMAT || !Array.isArray(manifest.segments) || !Array.isArray(manifest.journals) || manifest.journals.length === 0) {
      throw new Error(`${file} is not a ledger manifest of format ${MANIFEST_FORMAT}`);
    }
    return { manifest, identity: identityOf(stats), stats: { ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs } };
  } finally {
    await handle.close();
  }
}

/**
 * Replaces the manifest atomically: complete and durable under a temporary name first. Processes
 * notice a new manifest by its identity, and timestamps are coarse (a clock tick): should the new
 * one look exactly like the one it replaces (same reused inode, size and tick), it is written again.
 */
export async function writeManifest(dir: string, manifest: Manifest, io: LedgerIo): Promise<void> {
  const file = path.join(dir, MANIFEST_FILE);
  const before = await io.stat(file);
  for (let tries = 0; ; tries++) {
    const temp = path.join(dir, `${MANIFEST_FILE}.tmp`);
    const handle = await fs.open(temp, 'w', 0o600);
    try {
      await io.write(handle, temp, Buffer.from(`${JSON.stringify(manifest, null, 1)}\n`), 0);
      await handle.sync();
    } finally {
      await handle.close();
    }
    await fs.rename(temp, file);
    await syncDir(dir);
    const after = await io.stat(file);
    if (!before || !after || identityOf(before) !== identityOf(after) || tries >= 5) return;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}
