import { promises as fs } from 'node:fs';
import path from 'node:path';
import type { Logger } from '../../log.ts';
import { CompactionLock, LOCK_FILE } from './compaction-lock.ts';
import { ledgerKey } from './document-key.ts';
import { Journal, journalGen, journalName, parseLine, readLines } from './journal.ts';
import { syncDir, type LedgerIo } from './ledger-io.ts';
import { MANIFEST_FILE, readManifest, writeManifest, type Manifest } from './manifest.ts';
import { SegmentReader, SegmentWriter } from './segment-file.ts';
import { foldIntoSegment, StepsByDocument } from './segment-fold.ts';
import { mergeSegments, mergeStart } from './segment-merge.ts';

/** Points of a compaction a test can stop at as if the process were killed there. */
export type CompactionStep = 'rotated' | 'sealed' | 'segment-written' | 'installed' | 'merged';

export interface CompactionOptions {
  dir: string;
  apiUrl: string;
  io: LedgerIo;
  log?: Logger | undefined;
  now: () => number;
  /** Start a new journal only when the current one holds more than this (0: whenever it holds any step). */
  rotateAbove: number;
  signal?: AbortSignal;
  /** Test hook: throwing from it abandons the compaction as kill -9 would (files and lock left as they are). */
  step?: ((step: CompactionStep) => void | Promise<void>) | undefined;
}

export type CompactionOutcome = 'compacted' | 'busy';

/** Thrown through when the test hook stops a compaction: nothing may be cleaned up after it. */
class Killed extends Error {}

export function segmentName(n: number): string {
  return `seg-${String(n).padStart(8, '0')}.seg`;
}

/**
 * One compaction, under the lock (returns 'busy' when another process holds it):
 *
 *  1. rotate: when the current journal is over the bound, create the next one (durable), then
 *     name it in the manifest; appends go there from each process's next write on.
 *  2. seal every older journal (a seal line at its end, once) and fold its lines, up to the seal,
 *     into one new segment (complete and fsynced before it is named).
 *  3. install: a manifest naming the new segment and only the current journal; only then are the
 *     folded journals deleted.
 *  4. merge the newest segments while the policy asks (each merge installed the same way).
 *
 * A crash anywhere leaves either the old manifest (and orphan files, removed by the next holder)
 * or the new one: nothing recorded is lost, nothing is counted twice.
 */
export async function compact(options: CompactionOptions): Promise<CompactionOutcome> {
  const { dir, io } = options;
  const lock = await CompactionLock.acquire(dir, io);
  if (!lock) return 'busy';
  let killed = false;
  const readers = new Map<string, SegmentReader>();
  let writer: SegmentWriter | undefined;
  const step = async (name: CompactionStep) => {
    try {
      await options.step?.(name);
    } catch (err) {
      throw new Killed(`compaction stopped at ${name}`, { cause: err });
    }
  };
  const progress = async () => {
    options.signal?.throwIfAborted();
    await lock.refresh();
  };
  const open = async (file: string) => {
    let reader = readers.get(file);
    if (!reader) readers.set(file, (reader = await SegmentReader.open(path.join(dir, file), io)));
    return reader;
  };
  const install = async (manifest: Manifest) => {
    await lock.assertHeld();
    await writeManifest(dir, manifest, io);
  };
  try {
    const loaded = await readManifest(dir);
    if (!loaded) throw new Error(`no ledger manifest in ${dir}`);
    let m = loaded.manifest;
    await removeOrphans(dir, m);

    const current = m.journals.at(-1)!;
    if (await holdsMoreThan(path.join(dir, journalName(current)), options.rotateAbove, io)) {
      const next = current + 1;
      await Journal.create(dir, next, options.apiUrl, options.now(), io);
      m = { ...m, version: m.version + 1, journals: [...m.journals, next] };
      await install(m);
      await step('rotated');
    }

    if (m.journals.length > 1) {
      const folded = m.journals.slice(0, -1);
      const steps = new StepsByDocument();
      for (const gen of folded) await readUpToSeal(dir, gen, m.journals.at(-1)!, steps, options);
      await step('sealed');
      const segments = await Promise.all(m.segments.map((s) => open(s.file)));
      const name = segmentName(m.nextSegment);
      const { segment, documentsDelta } = await foldIntoSegment({ dir, name, steps, segments, io, ...(options.signal ? { signal: options.signal } : {}), onProgress: progress });
      if (segment) {
        await syncDir(dir);
        await step('segment-written');
      }
      m = {
        ...m,
        version: m.version + 1,
        segments: segment ? [...m.segments, segment] : m.segments,
        journals: [m.journals.at(-1)!],
        documents: m.documents + documentsDelta,
        nextSegment: m.nextSegment + 1,
      };
      await install(m);
      await step('installed');
      for (const gen of folded) await fs.rm(path.join(dir, journalName(gen)), { force: true });
      options.log?.info({ dir, folded: steps.size, segments: m.segments.length, documents: m.documents }, 'ledger journal folded into a segment');
    }

    for (let start = mergeStart(m.segments.map((s) => s.records)); start !== undefined; start = mergeStart(m.segments.map((s) => s.records))) {
      const inputs = m.segments.slice(start);
      const name = segmentName(m.nextSegment);
      writer = await SegmentWriter.create(dir, name, inputs.reduce((n, s) => n + s.records, 0), io.threadPool());
      const merged = await mergeSegments({
        inputs: await Promise.all(inputs.map((s) => open(s.file))),
        writer,
        bottom: start === 0,
        io: io.threadPool(),
        ...(options.signal ? { signal: options.signal } : {}),
        onProgress: progress,
      });
      writer = undefined;
      await syncDir(dir);
      await step('merged');
      m = { ...m, version: m.version + 1, segments: [...m.segments.slice(0, start), merged], nextSegment: m.nextSegment + 1 };
      await install(m);
      for (const s of inputs) {
        await readers.get(s.file)?.close();
        readers.delete(s.file);
        await fs.rm(path.join(dir, s.file), { force: true });
      }
    }
    return 'compacted';
  } catch (err) {
    if (err instanceof Killed) {
      killed = true;
    } else {
      await writer?.abandon();
    }
    throw err;
  } finally {
    for (const reader of readers.values()) await reader.close().catch(() => undefined);
    if (!killed) await lock.release();
  }
}

/** Whether a journal holds more than `bytes` and at least one line besides its header. */
async function holdsMoreThan(file: string, bytes: number, io: LedgerIo): Promise<boolean> {
  const handle = await fs.open(file, 'r');
  try {
    const size = await io.size(handle);
    if (size <= bytes) return false;
    const head = Buffer.alloc(Math.min(size, 4096));
    await io.readFully(handle, head, 0, head.length, 0);
    const end = head.indexOf(0x0a);
    return end === -1 || size > end + 1;
  } finally {
    await handle.close();
  }
}

/**
 * Reads a journal being folded up to its seal into `steps`, appending the seal first when it has
 * none (a compaction that crashed before sealing it, or this one). Lines appended meanwhile, before
 * the seal, are read too: the seal is the one cut every process agrees on.
 */
async function readUpToSeal(dir: string, gen: number, next: number, steps: StepsByDocument, options: CompactionOptions): Promise<void> {
  const { io } = options;
  const journal = await Journal.open(dir, gen);
  let damaged = 0;
  try {
    let offset = 0;
    let sealed = false;
    const visit = (text: string): boolean => {
      if (!text) return true;
      const line = parseLine(text);
      if (!line) {
        damaged++;
        return true;
      }
      if (line.op === 'seal') {
        sealed = true;
        return false;
      }
      if ((line.op === 'start' || line.op === 'stored' || line.op === 'abort') && line.personId && line.publicId) {
        steps.add(ledgerKey(line.personId, line.publicId), { op: line.op, sha256: line.sha256, attempt: line.attempt });
      }
      return true;
    };
    for (let appended = false; !sealed; ) {
      offset = await readLines(io, journal.handle, offset, await io.size(journal.handle), visit);
      if (sealed) break;
      if (appended) {
        // Our own seal is in the file but was not read: only a torn line before it can hide it.
        const size = await io.size(journal.handle);
        if (offset >= size) throw new Error(`${journal.file}: the seal just appended cannot be read back`);
        continue;
      }
      // A leading newline ends a torn last line, so the seal stays a line of its own.
      await io.write(journal.handle, journal.file, Buffer.from(`\n${JSON.stringify({ op: 'seal', gen: next, at: options.now() })}\n`));
      await journal.handle.datasync();
      appended = true;
    }
  } finally {
    await journal.close();
  }
  if (damaged > 0) options.log?.warn({ file: journal.file, damaged }, 'skipped damaged ledger lines while folding');
}

/**
 * Removes what a crashed compaction left: temporary files, segments and journals the manifest
 * does not name (folded ones, or made but never installed). Only the lock holder calls it, and
 * nobody opens a file the manifest does not name.
 */
export async function removeOrphans(dir: string, manifest: Manifest | undefined): Promise<void> {
  const segments = new Set(manifest?.segments.map((s) => s.file));
  const journals = new Set(manifest?.journals);
  for (const name of await fs.readdir(dir)) {
    const gen = journalGen(name);
    const orphan =
      name.endsWith('.tmp') ||
      name.endsWith('.stale') ||
      (name.startsWith('seg-') && name.endsWith('.seg') && !segments.has(name)) ||
      (gen !== undefined && !journals.has(gen));
    if (orphan && name !== MANIFEST_FILE && name !== LOCK_FILE) await fs.rm(path.join(dir, name), { force: true });
  }
}
