import { createHash } from 'node:crypto';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { Ingest, watchRow, type IngestPorts } from '../../src/commands/watch/ingest.ts';
import { UnsafePathError } from '../../src/errors.ts';
import { placePath, type FileRef } from '../../src/folder-handle.ts';
import { silentLogger } from '../../src/log.ts';
import type { IngestRecord } from '../../src/report/ingest-log.ts';
import type { RowResult } from '../../src/report/row-result.ts';
import type { ReadyFile } from '../../src/sources/folder-watcher.ts';
import { derivePublicId } from '../../src/sources/public-id.ts';
import type { UploadPayload } from '../../jobs/upload.ts';

const DIR = '/drop';
const PERSON = '6fa459ea-ee8a-4ca4-894e-db77e160355e';
const DOC = '16fd2706-8baf-433b-82eb-8c7fada847da';
const RUN = 'watch-test-run';
const T0 = Date.UTC(2026, 10, 29, 12);

/** The path a FileRef names (the in-memory world keys files by path). */
const pathOf = (ref: FileRef) => path.join(placePath(ref), ref.name);

/** The world of one ingest, in memory: files with their text, the queue, the results, the moves. */
function world(files: Record<string, string>) {
  const contents = new Map(Object.entries(files));
  const results = new Map<number, RowResult>();
  const queued: Array<{ row: number; payload: UploadPayload }> = [];
  const moves: Array<{ file: string; destDir: string; note?: unknown }> = [];
  const removed: string[] = [];
  const forgotten: number[] = [];
  const released: string[] = [];
  const records: Array<Omit<IngestRecord, 'time'>> = [];
  const failMoves = new Set<string>();
  /** Files whose folder was swapped for a link after they settled: the ports refuse them as the real ones do. */
  const swapped = new Set<string>();
  const refuse = (ref: FileRef) => {
    if (swapped.has(pathOf(ref))) throw new UnsafePathError(`${ref.levels.join('/')} in ${ref.root} is a symbolic link; idsync never follows links there`, pathOf(ref));
  };
  const sha = (text: string) => createHash('sha256').update(text).digest('hex');
  const ports: IngestPorts = {
    async readSidecar(ref) {
      refuse(ref);
      const text = contents.get(pathOf(ref));
      if (text === undefined) throw Object.assign(new Error('gone'), { code: 'ENOENT' });
      return { size: Buffer.byteLength(text), text };
    },
    async hash(ref) {
      refuse(ref);
      const text = contents.get(pathOf(ref));
      if (text === undefined) throw Object.assign(new Error('gone'), { code: 'ENOENT' });
      return { sha256: sha(text), bytes: Buffer.byteLength(text) };
    },
    async results(rows) {
      return rows.map((r) => results.get(r));
    },
    async forget(result) {
      forgotten.push(result.row);
      results.delete(result.row);
    },
    async queueUpload(row, payload) {
      queued.push({ row, payload });
    },
    async moveInto(ref, dest, extra) {
      const file = pathOf(ref);
      refuse(ref);
      if (failMoves.has(file)) throw Object.assign(new Error('read-only file system'), { code: 'EROFS' });
      const destDir = placePath(dest);
      moves.push({ file, destDir, ...(extra.note ? { note: JSON.parse(extra.note) as unknown } : {}) });
      contents.delete(file);
      if (extra.sidecar) contents.delete(path.join(path.dirname(file), extra.sidecar));
      return `${destDir}/${ref.name}`;
    },
    async remove(ref) {
      refuse(ref);
      removed.push(pathOf(ref));
      contents.delete(pathOf(ref));
    },
    async record(line) {
      records.push(line);
    },
    release(file) {
      released.push(file);
    },
    now: () => T0,
    log: silentLogger(),
  };
  const ready = (rel: string, extra: Partial<ReadyFile> = {}): ReadyFile => ({
    path: `${DIR}/${rel}`,
    relPath: rel,
    size: Buffer.byteLength(contents.get(`${DIR}/${rel}`) ?? ''),
    mtimeMs: T0,
    id: `1:${rel}`,
    folderId: `1:${path.dirname(rel)}`,
    ...extra,
  });
  const ingest = (options: { deleteProcessed?: boolean; startedAt?: number } = {}) =>
    new Ingest(ports, {
      dir: DIR,
      processed: { root: DIR, levels: ['.processed'] },
      failed: { root: DIR, levels: ['.failed'] },
      deleteProcessed: options.deleteProcessed ?? false,
      checkExisting: false,
      runId: RUN,
      startedAt: options.startedAt ?? T0,
    });
  const succeed = (row: number, extra: Partial<RowResult> = {}) =>
    results.set(row, { row, status: 'succeeded', action: 'uploaded', documentId: 'doc-1', finishedAt: T0 + 1, ...extra });
  return { contents, results, queued, moves, removed, forgotten, released, records, failMoves, swapped, ports, ready, ingest, succeed, sha };
}

describe('Ingest: the states of a dropped file, without a file system or Redis', () => {
  it('sets aside what breaks the convention, with the reason, and never queues it', async () => {
    const w = world({ [`${DIR}/stray.pdf`]: 'x', [`${DIR}/not-a-guid/a.pdf`]: 'x', [`${DIR}/${PERSON}/empty.pdf`]: '', [`${DIR}/${PERSON}/a/b.pdf`]: 'x' });
    const ingest = w.ingest();
    await ingest.take(w.ready('stray.pdf'));
    await ingest.take(w.ready('not-a-guid/a.pdf'));
    await ingest.take(w.ready(`${PERSON}/empty.pdf`));
    await ingest.take(w.ready(`${PERSON}/a/b.pdf`));
    await ingest.take({ ...w.ready(`${PERSON}/c.pdf`), size: 3, sidecarProblem: 'sidecar is a symbolic link' });
    expect(w.queued).toEqual([]);
    expect(ingest.counts).toMatchObject({ seen: 5, rejected: 5 });
    expect(w.records.map((r) => [r.file, r.status, r.action])).toEqual([
      ['stray.pdf', 'rejected', 'set-aside'],
      ['not-a-guid/a.pdf', 'rejected', 'set-aside'],
      [`${PERSON}/empty.pdf`, 'rejected', 'set-aside'],
      [`${PERSON}/a/b.pdf`, 'rejected', 'set-aside'],
      [`${PERSON}/c.pdf`, 'rejected', 'set-aside'],
    ]);
    expect(w.records.map((r) => r.error)).toEqual([
      expect.stringContaining('not inside a person folder'),
      expect.stringContaining('not a person id'),
      'empty file (0 bytes)',
      expect.stringContaining('nested folder'),
      'sidecar is a symbolic link',
    ]);
    // Each set aside under the failed folder, keeping its relative folder, with a note.
    expect(w.moves.map((m) => m.destDir)).toEqual([`${DIR}/.failed`, `${DIR}/.failed/not-a-guid`, `${DIR}/.failed/${PERSON}`, `${DIR}/.failed/${PERSON}/a`, `${DIR}/.failed/${PERSON}`]);
    expect(w.moves[0]!.note).toMatchObject({ status: 'rejected', file: 'stray.pdf', time: new Date(T0).toISOString() });
  });

  it('queues a file once, under the row its person, publicId and content give, with the sidecar\'s fields', async () => {
    const w = world({ [`${DIR}/${PERSON}/card.pdf`]: 'scan', [`${DIR}/${PERSON}/card.pdf.json`]: JSON.stringify({ name: 'ID card', publicId: DOC }) });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/card.pdf`, { sidecar: `${DIR}/${PERSON}/card.pdf.json` }));
    expect(w.queued).toHaveLength(1);
    expect(w.queued[0]!.row).toBe(watchRow(RUN, PERSON, DOC, w.sha('scan')));
    expect(w.queued[0]!.payload).toEqual({
      item: { personId: PERSON, file: `${DIR}/${PERSON}/card.pdf`, name: 'ID card', publicId: DOC },
      checkExisting: false,
      // What the job may read: this file, in this folder, with this content, never through a link.
      drop: { root: DIR, levels: [PERSON], name: 'card.pdf', id: `1:${PERSON}/card.pdf`, folderId: `1:${PERSON}`, sha256: w.sha('scan') },
    });
    expect(ingest.waitingFiles()).toBe(1);
    // No result yet: nothing moves.
    await ingest.poll();
    expect(w.moves).toEqual([]);
    expect(w.records).toEqual([]);
  });

  it('a second copy of the same content joins the first upload and both move when it ends', async () => {
    const w = world({ [`${DIR}/${PERSON}/a.png`]: 'same', [`${DIR}/${PERSON}/b.png`]: 'same' });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/a.png`));
    await ingest.take(w.ready(`${PERSON}/b.png`));
    expect(w.queued).toHaveLength(1);
    expect(ingest.waitingFiles()).toBe(2);
    w.succeed(w.queued[0]!.row);
    await ingest.poll();
    expect(w.moves.map((m) => [m.file, m.destDir])).toEqual([
      [`${DIR}/${PERSON}/a.png`, `${DIR}/.processed/${PERSON}`],
      [`${DIR}/${PERSON}/b.png`, `${DIR}/.processed/${PERSON}`],
    ]);
    expect(w.records.map((r) => [r.status, r.action, r.movedTo])).toEqual([
      ['succeeded', 'uploaded', `.processed/${PERSON}/a.png`],
      ['succeeded', 'uploaded', `.processed/${PERSON}/b.png`],
    ]);
    expect(ingest.counts).toMatchObject({ seen: 2, uploaded: 2 });
    // Moved, the row is forgotten (Redis must not grow over the days) and the watcher may take the name again.
    expect(w.forgotten).toEqual([w.queued[0]!.row]);
    expect(w.released).toEqual([`${DIR}/${PERSON}/a.png`, `${DIR}/${PERSON}/b.png`]);
    expect(ingest.waitingFiles()).toBe(0);
  });

  it('a failed upload goes to the failed folder with a note carrying the reason', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'bad' });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/x.pdf`));
    w.results.set(w.queued[0]!.row, { row: w.queued[0]!.row, status: 'failed', action: 'upload', error: '413 too large', errorCode: 'E_TOO_LARGE', httpStatus: 413, attempts: 1, finishedAt: T0 + 5 });
    await ingest.poll();
    expect(w.moves[0]).toMatchObject({ destDir: `${DIR}/.failed/${PERSON}`, note: { reason: '413 too large', errorCode: 'E_TOO_LARGE', httpStatus: 413, personId: PERSON, file: `${PERSON}/x.pdf` } });
    expect(w.records[0]).toMatchObject({ status: 'failed', error: '413 too large', httpStatus: 413 });
    expect(ingest.counts.failed).toBe(1);
  });

  it('with deleteProcessed, a done file is removed instead of moved', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'ok' });
    const ingest = w.ingest({ deleteProcessed: true });
    await ingest.take(w.ready(`${PERSON}/x.pdf`));
    w.succeed(w.queued[0]!.row);
    await ingest.poll();
    expect(w.removed).toEqual([`${DIR}/${PERSON}/x.pdf`]);
    expect(w.moves).toEqual([]);
    expect(w.records[0]).toMatchObject({ status: 'succeeded', movedTo: '' });
  });

  it('a file whose row finished before this start is only moved: nothing is queued, it is reported skipped', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'sent' });
    const row = watchRow(RUN, PERSON, derivePublicId(PERSON, w.sha('sent')), w.sha('sent'));
    w.succeed(row, { finishedAt: T0 - 60_000 });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/x.pdf`));
    expect(w.queued).toEqual([]);
    expect(w.records[0]).toMatchObject({ status: 'skipped', action: 'done-earlier (uploaded)', movedTo: `.processed/${PERSON}/x.pdf` });
    expect(ingest.counts.skipped).toBe(1);
  });

  it('a move that fails leaves the file and keeps its result, so the next start only moves it', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'kept' });
    w.failMoves.add(`${DIR}/${PERSON}/x.pdf`);
    const first = w.ingest();
    await first.take(w.ready(`${PERSON}/x.pdf`));
    const row = w.queued[0]!.row;
    w.succeed(row);
    await first.poll();
    expect(w.records[0]).toMatchObject({ status: 'succeeded', movedTo: '' });
    expect(w.forgotten).toEqual([]);
    expect(w.results.has(row)).toBe(true);

    // The next start: the same file, its result found, nothing queued, moved now.
    w.failMoves.clear();
    const second = w.ingest({ startedAt: T0 + 10 });
    await second.take(w.ready(`${PERSON}/x.pdf`));
    expect(w.queued).toHaveLength(1);
    expect(w.records[1]).toMatchObject({ status: 'skipped', action: 'done-earlier (uploaded)', movedTo: `.processed/${PERSON}/x.pdf` });
    expect(w.forgotten).toEqual([row]);
  });

  it('a sidecar gone after settling, or a file that cannot be read, is released to be looked at again', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'x' });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/x.pdf`, { sidecar: `${DIR}/${PERSON}/x.pdf.json` }));
    await ingest.take({ ...w.ready(`${PERSON}/gone.pdf`), size: 4 });
    expect(w.released).toEqual([`${DIR}/${PERSON}/x.pdf`, `${DIR}/${PERSON}/gone.pdf`]);
    expect(w.queued).toEqual([]);
    expect(w.records).toEqual([]);
  });

  it('a bad sidecar sets the file aside with the sidecar\'s problem', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'x', [`${DIR}/${PERSON}/x.pdf.json`]: '{"colour":"blue"}' });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/x.pdf`, { sidecar: `${DIR}/${PERSON}/x.pdf.json` }));
    expect(w.queued).toEqual([]);
    expect(w.records[0]).toMatchObject({ status: 'rejected', action: 'set-aside', error: expect.stringContaining('colour') });
  });

  it('a file whose folder was swapped for a link is left alone: reported, never read, queued or moved', async () => {
    const w = world({ [`${DIR}/${PERSON}/id_rsa`]: 'decoy', [`${DIR}/${PERSON}/b.pdf`]: 'b', [`${DIR}/${PERSON}/c.pdf`]: 'c', [`${DIR}/${PERSON}/c.pdf.json`]: '{}' });
    const ingest = w.ingest();
    // Seen by the settler with its folder already a link.
    await ingest.take({ ...w.ready(`${PERSON}/id_rsa`), unsafe: `its folder ${PERSON} was replaced by a symbolic link; nothing is read through it` });
    // Swapped between settling and reading (the ports open it without following links and refuse).
    w.swapped.add(`${DIR}/${PERSON}/b.pdf`);
    await ingest.take(w.ready(`${PERSON}/b.pdf`));
    w.swapped.add(`${DIR}/${PERSON}/c.pdf.json`);
    await ingest.take(w.ready(`${PERSON}/c.pdf`, { sidecar: `${DIR}/${PERSON}/c.pdf.json` }));
    expect(w.queued).toEqual([]);
    expect(w.moves).toEqual([]);
    expect(w.records.map((r) => [r.file, r.status, r.action, r.movedTo])).toEqual([
      [`${PERSON}/id_rsa`, 'rejected', 'left', ''],
      [`${PERSON}/b.pdf`, 'rejected', 'left', ''],
      [`${PERSON}/c.pdf`, 'rejected', 'left', ''],
    ]);
    expect(w.records.map((r) => r.error)).toEqual([expect.stringContaining('replaced by a symbolic link'), expect.stringContaining('symbolic link'), expect.stringMatching(/^sidecar: .*symbolic link/)]);
    expect(ingest.counts).toMatchObject({ seen: 3, rejected: 3 });
    expect(w.released).toEqual([`${DIR}/${PERSON}/id_rsa`, `${DIR}/${PERSON}/b.pdf`, `${DIR}/${PERSON}/c.pdf`]);
  });

  it('a file swapped after its upload is not moved: the line says why and the row is forgotten', async () => {
    const w = world({ [`${DIR}/${PERSON}/x.pdf`]: 'sent', [`${DIR}/stray.pdf`]: 's' });
    const ingest = w.ingest();
    await ingest.take(w.ready(`${PERSON}/x.pdf`));
    const row = w.queued[0]!.row;
    w.succeed(row);
    w.swapped.add(`${DIR}/${PERSON}/x.pdf`);
    await ingest.poll();
    expect(w.moves).toEqual([]);
    expect(w.records[0]).toMatchObject({ status: 'succeeded', movedTo: '', error: expect.stringMatching(/^not moved: .*symbolic link/) });
    expect(w.forgotten).toEqual([row]);
    // A set-aside refused the same way is reported as left, not as set aside.
    w.swapped.add(`${DIR}/stray.pdf`);
    await ingest.take(w.ready('stray.pdf'));
    expect(w.records[1]).toMatchObject({ file: 'stray.pdf', status: 'rejected', action: 'left', movedTo: '', error: expect.stringMatching(/not inside a person folder.*; not set aside: .*symbolic link/) });
  });

  it('a queue that refuses the job lets the next copy queue it again', async () => {
    const w = world({ [`${DIR}/${PERSON}/a.png`]: 'same', [`${DIR}/${PERSON}/b.png`]: 'same' });
    const queueUpload = w.ports.queueUpload;
    let refuse = true;
    w.ports.queueUpload = async (row, payload) => {
      if (refuse) throw new Error('Redis is down');
      await queueUpload(row, payload);
    };
    const ingest = w.ingest();
    await expect(ingest.take(w.ready(`${PERSON}/a.png`))).rejects.toThrow('Redis is down');
    expect(ingest.waitingFiles()).toBe(0);
    refuse = false;
    await ingest.take(w.ready(`${PERSON}/b.png`));
    expect(w.queued).toHaveLength(1);
  });
});
