import { createHash } from 'node:crypto';
import path from 'node:path';
import { UnsafePathError } from '../../errors.ts';
import type { FileRef, FolderPlace } from '../../folder-handle.ts';
import type { Logger } from '../../log.ts';
import { isGone } from '../../outputs/no-clobber-move.ts';
import type { IngestRecord } from '../../report/ingest-log.ts';
import type { RowResult } from '../../report/row-result.ts';
import { defaultDocumentName, parseSidecar, placeOfDrop, type SidecarFields } from '../../sources/drop-convention.ts';
import type { ReadyFile } from '../../sources/folder-watcher.ts';
import { derivePublicId } from '../../sources/public-id.ts';
import type { UploadPayload } from '../../../jobs/upload.ts';

export const SIDECAR_MAX_BYTES = 64 * 1024;
const RESULT_BATCH = 500;

/**
 * A watch run is "this folder, against this API": the same command after a restart is the
 * same run, so its rows (and the results of jobs finished before a crash) are found again.
 * Not per day: a file in flight at midnight must keep its row across a restart.
 */
export function watchRunId(api: string, dir: string): string {
  return `watch-${api}-${createHash('sha256').update(dir).digest('hex').slice(0, 8)}`;
}

/**
 * The row of a dropped file: one per person, document id and content, so the same file seen
 * again after a restart, or a second copy of it, never becomes a second job while the first is
 * queued, and two files naming one publicId (sidecars) with different content never share one
 * (the second then fails as a conflict instead of being moved aside as if it had been uploaded).
 * 52 bits of a hash, so it stays a safe integer.
 */
export function watchRow(runId: string, personId: string, publicId: string, sha256: string): number {
  return parseInt(createHash('sha256').update(`${runId}-${personId}-${publicId}-${sha256.slice(0, 16)}`).digest('hex').slice(0, 13), 16);
}

/** What the ingest needs of the world: files, the run's queue and results, the ingest log. Injected, so the ingest's decisions are tested without either. */
export interface IngestPorts {
  /**
   * A sidecar's size and text (ENOENT when it went away). Like hash, read only through a link-free
   * path in the folder that was seen (UnsafePathError otherwise).
   */
  readSidecar(sidecar: FileRef): Promise<{ size: number; text: string }>;
  /** sha256 and size of the file `ref` names, only if it is still the file and folder that were seen (UnsafePathError otherwise). */
  hash(ref: FileRef): Promise<{ sha256: string; bytes: number }>;
  /** The row's results so far (several rows at once). */
  results(rows: number[]): Promise<Array<RowResult | undefined>>;
  /** Forgets a row's result once its files are moved (Redis must not grow over the days). */
  forget(result: RowResult): Promise<void>;
  /** Queues the upload of a row (a job already there for the row adds nothing). */
  queueUpload(row: number, payload: UploadPayload): Promise<void>;
  /**
   * Moves a file (and its sidecar, named in the same folder, and a note beside it) into a folder
   * under a free name; the new path. Never through a link, and only the file that was seen
   * (UnsafePathError otherwise: the file stays).
   */
  moveInto(file: FileRef, dest: FolderPlace, extra: { sidecar?: string; note?: string }): Promise<string>;
  /** Deletes a file (the one seen) and its sidecar (a name in the same folder). */
  remove(file: FileRef, sidecar?: string): Promise<void>;
  /** Appends a line to the daily ingest log. */
  record(line: Omit<IngestRecord, 'time'>): Promise<void>;
  /** Tells the folder watcher a file has been dealt with (it may be taken again if it reappears). */
  release(file: string): void;
  now(): number;
  log: Logger;
}

export interface IngestOptions {
  /** The watched folder (a real path). */
  dir: string;
  /** Where done files go: `<dir>/.processed` is `{ root: dir, levels: ['.processed'] }`. */
  processed: FolderPlace;
  failed: FolderPlace;
  deleteProcessed: boolean;
  checkExisting: boolean;
  runId: string;
  /** Rows finished before this time were done before this start: reported skipped. */
  startedAt: number;
}

export interface WatchCounts {
  seen: number;
  uploaded: number;
  skipped: number;
  failed: number;
  rejected: number;
}

/** A file handed to the queue, waiting for its row's final result. */
interface Waiting {
  file: string;
  ref: FileRef;
  relPath: string;
  /** The sidecar's name, in the file's folder. */
  sidecar?: string;
  personId: string;
  sha256: string;
  bytes: number;
}

/**
 * The ingest of a watched folder. Each settled file goes through explicit states:
 *
 *   take(file)  → set aside (not in a person folder, empty, bad sidecar: moved to the failed
 *                 folder with a note, never sent)
 *               → left alone (reached through a link, or not the file or folder that settled:
 *                 never read, sent or moved; reported)
 *               → waiting (its upload queued, or joined to a copy's upload already queued)
 *               → finished at once (a result from before a restart: only the move was missing)
 *   poll()      → waiting files whose row has a result are finished: moved to the processed
 *                 folder (or deleted), or to the failed folder with a note; logged either way.
 */
export class Ingest {
  readonly counts: WatchCounts = { seen: 0, uploaded: 0, skipped: 0, failed: 0, rejected: 0 };
  readonly #p: IngestPorts;
  readonly #o: IngestOptions;
  readonly #waiting = new Map<number, Waiting[]>();

  constructor(ports: IngestPorts, options: IngestOptions) {
    this.#p = ports;
    this.#o = options;
  }

  /** Files queued and not finished yet. */
  waitingFiles(): number {
    let n = 0;
    for (const w of this.#waiting.values()) n += w.length;
    return n;
  }

  #rel(file: string): string {
    return path.relative(this.#o.dir, file).split(path.sep).join('/');
  }

  /** Where a settled file lies below the watched folder, and what it and its folder must still be. */
  #refOf(file: ReadyFile): FileRef {
    const levels = file.relPath.split('/').slice(0, -1);
    return { root: this.#o.dir, levels, name: path.basename(file.relPath), id: file.id, folderId: file.folderId };
  }

  #under(place: FolderPlace, ...levels: string[]): FolderPlace {
    return { root: place.root, levels: [...place.levels, ...levels] };
  }

  /** A settled file: check it against the convention, hash it, queue its upload (or finish it at once). */
  async take(file: ReadyFile): Promise<void> {
    this.counts.seen++;
    if (file.unsafe) return this.#leave(file, file.unsafe);
    const place = placeOfDrop(file.relPath);
    if (!place.ok) return this.#setAside(file, place.reason);
    if (file.size === 0) return this.#setAside(file, 'empty file (0 bytes)', place.personId);
    if (file.sidecarProblem) return this.#setAside(file, file.sidecarProblem, place.personId);
    const ref = this.#refOf(file);
    let fields: SidecarFields = {};
    if (file.sidecar) {
      try {
        const sidecar = await this.#p.readSidecar({ root: ref.root, levels: ref.levels, name: path.basename(file.sidecar), ...(ref.folderId ? { folderId: ref.folderId } : {}) });
        if (sidecar.size > SIDECAR_MAX_BYTES) throw new Error(`sidecar is larger than ${SIDECAR_MAX_BYTES} bytes`);
        fields = parseSidecar(sidecar.text);
      } catch (err) {
        if (err instanceof UnsafePathError) return this.#leave(file, `sidecar: ${err.message}`, place.personId);
        if (isGone(err)) {
          // The sidecar went away after settling: its removal is a change; look again later.
          this.#p.release(file.path);
          return;
        }
        return this.#setAside(file, (err as Error).message, place.personId);
      }
    }
    let hashed: { sha256: string; bytes: number };
    try {
      hashed = await this.#p.hash(ref);
    } catch (err) {
      if (err instanceof UnsafePathError) return this.#leave(file, err.message, place.personId);
      this.#p.log.warn({ err, file: file.relPath }, 'watch: cannot read a settled file; it is looked at again when it changes');
      this.#p.release(file.path);
      return;
    }
    const publicId = fields.publicId ?? derivePublicId(place.personId, hashed.sha256);
    const row = watchRow(this.#o.runId, place.personId, publicId, hashed.sha256);
    const entry: Waiting = { file: file.path, ref, relPath: file.relPath, personId: place.personId, sha256: hashed.sha256, bytes: hashed.bytes, ...(file.sidecar ? { sidecar: path.basename(file.sidecar) } : {}) };
    const already = this.#waiting.get(row);
    if (already) {
      // A second copy of a document already on its way: it shares that upload and its result.
      already.push(entry);
      return;
    }
    this.#waiting.set(row, [entry]);
    try {
      const [prior] = await this.#p.results([row]);
      if (prior) {
        // Finished before a restart, but the move did not happen: move it now, send nothing.
        await this.#finish(row, prior);
        return;
      }
      const payload: UploadPayload = {
        item: {
          personId: place.personId,
          file: entry.file,
          name: fields.name ?? defaultDocumentName(path.basename(file.path)),
          ...(fields.description ? { description: fields.description } : {}),
          ...(fields.publicId ? { publicId: fields.publicId } : {}),
        },
        checkExisting: this.#o.checkExisting,
        // The job reads the file again: only this file, in this folder, with this content.
        drop: { ...ref, sha256: hashed.sha256 },
      };
      await this.#p.queueUpload(row, payload);
      this.#p.log.debug({ file: file.relPath, row }, 'watch: queued');
    } catch (err) {
      // Not queued: forget it here, or later copies would wait on a job that never comes.
      this.#waiting.delete(row);
      throw err;
    }
  }

  /** Finishes every waiting file whose row has a result. */
  async poll(): Promise<void> {
    const rows = [...this.#waiting.keys()];
    for (let i = 0; i < rows.length; i += RESULT_BATCH) {
      const batch = rows.slice(i, i + RESULT_BATCH);
      const results = await this.#p.results(batch);
      for (let j = 0; j < batch.length; j++) {
        const result = results[j];
        if (result && this.#waiting.has(batch[j]!)) await this.#finish(batch[j]!, result);
      }
    }
  }

  /** Moves a file that was never sent to the failed folder, keeping its relative folder, with the reason. */
  async #setAside(file: ReadyFile, reason: string, personId?: string): Promise<void> {
    const ref = this.#refOf(file);
    const dest = this.#under(this.#o.failed, ...ref.levels);
    const note = { reason, status: 'rejected', file: file.relPath, time: new Date(this.#p.now()).toISOString() };
    let movedTo = '';
    try {
      movedTo = await this.#p.moveInto(ref, dest, { ...(file.sidecar ? { sidecar: path.basename(file.sidecar) } : {}), note: `${JSON.stringify(note, null, 2)}\n` });
    } catch (err) {
      if (err instanceof UnsafePathError) return this.#leave(file, `${reason}; not set aside: ${err.message}`, personId);
      this.#p.log.error({ err, file: file.relPath }, 'watch: cannot set a file aside; it stays where it is');
    }
    this.counts.rejected++;
    this.#p.log.warn({ file: file.relPath, reason }, 'watch: file set aside');
    await this.#p.record({ file: file.relPath, ...(personId ? { personId } : {}), status: 'rejected', action: 'set-aside', error: reason, movedTo: movedTo ? this.#rel(movedTo) : '' });
    this.#p.release(file.path);
  }

  /**
   * A file reached through a link, or no longer the file or folder that settled: never read, sent
   * or moved. Reported, and forgotten by the watcher (it is taken again only if it changes).
   */
  async #leave(file: ReadyFile, reason: string, personId?: string): Promise<void> {
    this.counts.rejected++;
    this.#p.log.warn({ file: file.relPath, reason }, 'watch: file left alone (not read, sent or moved)');
    await this.#p.record({ file: file.relPath, ...(personId ? { personId } : {}), status: 'rejected', action: 'left', error: reason, movedTo: '' });
    this.#p.release(file.path);
  }

  /** Moves every file waiting for this row, now that its result is final. */
  async #finish(row: number, result: RowResult): Promise<void> {
    const files = this.#waiting.get(row) ?? [];
    this.#waiting.delete(row);
    let keepResult = false;
    for (const w of files) {
      const ok = result.status === 'succeeded' || result.status === 'skipped';
      const earlier = result.status === 'succeeded' && (result.finishedAt ?? 0) < this.#o.startedAt;
      const status: IngestRecord['status'] = earlier ? 'skipped' : result.status === 'succeeded' || result.status === 'skipped' ? result.status : 'failed';
      if (status === 'succeeded') this.counts.uploaded++;
      else if (status === 'skipped') this.counts.skipped++;
      else this.counts.failed++;
      let movedTo = '';
      let notMoved: string | undefined;
      try {
        if (ok && this.#o.deleteProcessed) {
          await this.#p.remove(w.ref, w.sidecar);
        } else if (ok) {
          movedTo = await this.#p.moveInto(w.ref, this.#under(this.#o.processed, w.personId), w.sidecar ? { sidecar: w.sidecar } : {});
        } else {
          const note = {
            reason: result.error ?? 'failed',
            errorCode: result.errorCode,
            httpStatus: result.httpStatus,
            attempts: result.attempts,
            personId: w.personId,
            documentId: result.documentId,
            sha256: w.sha256,
            file: w.relPath,
            time: new Date(result.finishedAt ?? this.#p.now()).toISOString(),
          };
          movedTo = await this.#p.moveInto(w.ref, this.#under(this.#o.failed, w.personId), { ...(w.sidecar ? { sidecar: w.sidecar } : {}), note: `${JSON.stringify(note, null, 2)}\n` });
        }
      } catch (err) {
        if (isGone(err)) this.#p.log.warn({ file: w.relPath }, 'watch: the file vanished before it could be moved');
        else if (err instanceof UnsafePathError) {
          // Swapped since it was taken: whatever is at its path now is not ours to move.
          notMoved = `not moved: ${err.message}`;
          this.#p.log.warn({ file: w.relPath, reason: err.message }, 'watch: file left alone (not moved)');
        } else {
          // The row's result stays in Redis: the next start finds the file done and only moves it.
          keepResult = true;
          this.#p.log.error({ err, file: w.relPath }, 'watch: cannot move the file; it stays and is looked at again after a restart (nothing is uploaded twice)');
        }
      }
      await this.#p.record({
        file: w.relPath,
        personId: w.personId,
        status,
        action: earlier ? `done-earlier (${result.action})` : result.action,
        ...(result.documentId ? { documentId: result.documentId } : {}),
        sha256: result.sha256 ?? w.sha256,
        bytes: result.bytes ?? w.bytes,
        ...(result.attempts !== undefined ? { attempts: result.attempts } : {}),
        ...(result.httpStatus !== undefined ? { httpStatus: result.httpStatus } : {}),
        ...(result.error || notMoved ? { error: [result.error, notMoved].filter(Boolean).join('; ') } : {}),
        movedTo: movedTo ? this.#rel(movedTo) : '',
      });
      if (status === 'failed') this.#p.log.warn({ file: w.relPath, error: result.error }, 'watch: upload failed for good; file moved to the failed folder');
      else this.#p.log.info({ file: w.relPath, status, documentId: result.documentId }, 'watch: file done');
      this.#p.release(w.file);
    }
    // Once moved, the row is forgotten: its result would only grow Redis over the days.
    if (!keepResult) await this.#p.forget(result);
  }
}
