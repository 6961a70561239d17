import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { segmentName } from './compactor.ts';
import { ledgerKey } from './document-key.ts';
import { Journal, parseLine, readLines } from './journal.ts';
import { syncDir, type LedgerIo } from './ledger-io.ts';
import { MANIFEST_FORMAT, writeManifest, type Manifest } from './manifest.ts';
import { SegmentReader, SegmentWriter, type SegmentInfo } from './segment-file.ts';
import { foldIntoSegment, StepsByDocument } from './segment-fold.ts';
import { mergeSegments, mergeStart } from './segment-merge.ts';

/** Documents folded per segment while converting: bounds the memory of a migration. */
export const MIGRATION_CHUNK_DOCUMENTS = 100_000;

/** Suffixes of a format-1 ledger file (`<stateDir>/ledger/<api key>.jsonl`) while and after it is converted. */
export const MIGRATING = '.migrating';
export const MIGRATED = '.migrated';

/**
 * Converts a format-1 ledger (one JSON-lines file holding the whole history) into segments,
 * streamed: a chunk of documents at a time is folded onto the segments made so far, exactly as
 * a compaction folds a journal. The file is first renamed `.migrating` (a crash restarts from
 * it), and once the new manifest is in place renamed `.migrated`, kept for the operator to
 * inspect or delete. Runs under the compaction lock, before any manifest exists.
 */
export async function migrateV1(options: {
  v1File: string;
  dir: string;
  apiUrl: string;
  io: LedgerIo;
  log?: Logger | undefined;
  now: () => number;
  chunkDocuments?: number;
  /** Called often: keeps the lock fresh (a long conversion must not look stale). */
  onProgress?: () => Promise<void>;
}): Promise<Manifest> {
  const { v1File, dir, io, log } = options;
  const source = `${v1File}${MIGRATING}`;
  try {
    await fs.rename(v1File, source);
  } catch (err) {
    // Already renamed by a migration that crashed: start again from it.
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  const chunk = options.chunkDocuments ?? MIGRATION_CHUNK_DOCUMENTS;
  let segments: SegmentInfo[] = [];
  const readers = new Map<string, SegmentReader>();
  const reader = async (file: string) => {
    let r = readers.get(file);
    if (!r) readers.set(file, (r = await SegmentReader.open(path.join(dir, file), io)));
    return r;
  };
  let next = 1;
  let documents = 0;
  let lines = 0;
  let damaged = 0;
  const handle = await fs.open(source, 'r');
  try {
    const fold = async (steps: StepsByDocument) => {
      const onProgress = options.onProgress;
      const result = await foldIntoSegment({ dir, name: segmentName(next++), steps, segments: await Promise.all(segments.map((s) => reader(s.file))), io, ...(onProgress ? { onProgress } : {}) });
      documents += result.documentsDelta;
      if (result.segment) segments.push(result.segment);
      for (let start = mergeStart(segments.map((s) => s.records)); start !== undefined; start = mergeStart(segments.map((s) => s.records))) {
        const inputs = segments.slice(start);
        const writer = await SegmentWriter.create(dir, segmentName(next++), inputs.reduce((n, s) => n + s.records, 0), io.threadPool());
        const merged = await mergeSegments({ inputs: await Promise.all(inputs.map((s) => reader(s.file))), writer, bottom: start === 0, io: io.threadPool(), ...(onProgress ? { onProgress } : {}) });
        segments = [...segments.slice(0, start), merged];
        for (const s of inputs) {
          await readers.get(s.file)?.close();
          readers.delete(s.file);
          await fs.rm(path.join(dir, s.file), { force: true });
        }
      }
    };
    let steps = new StepsByDocument();
    let position = 0;
    const size = (await handle.stat()).size;
    while (position < size) {
      let full = false;
      position = await readLines(io, handle, position, size, (text) => {
        if (!text) return true;
        lines++;
        const line = parseLine(text);
        if (!line) {
          damaged++;
          return true;
        }
        if ((line.op === 'start' || line.op === 'stored' || line.op === 'abort') && line.personId && line.publicId) {
          steps.add(ledgerKey(line.personId, line.publicId), { op: line.op, sha256: line.sha256, attempt: line.attempt });
          if (steps.size >= chunk) full = true;
        }
        return !full;
      });
      if (!full) break; // the end, or a torn last line
      await fold(steps);
      steps = new StepsByDocument();
    }
    if (steps.size > 0) await fold(steps);
  } finally {
    await handle.close();
    for (const r of readers.values()) await r.close();
  }
  await syncDir(dir);
  await Journal.create(dir, 1, options.apiUrl, options.now(), io);
  const manifest: Manifest = {
    format: MANIFEST_FORMAT,
    apiUrl: options.apiUrl,
    version: 1,
    segments,
    journals: [1],
    documents,
    nextSegment: next,
    migratedFrom: path.basename(v1File),
  };
  await writeManifest(dir, manifest, io);
  await finishMigration(v1File);
  if (damaged > 0) log?.warn({ file: v1File, damaged }, 'skipped damaged ledger lines while converting');
  log?.info({ from: v1File, lines, documents, segments: segments.length }, 'ledger converted to the segment format');
  return manifest;
}

/** The last step, also taken at open when a migration crashed right after installing its manifest. */
export async function finishMigration(v1File: string): Promise<void> {
  try {
    await fs.rename(`${v1File}${MIGRATING}`, `${v1File}${MIGRATED}`);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}
