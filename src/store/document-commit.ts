import { randomUUID } from 'node:crypto';
import { DocumentConflictError, ExistenceCheckError, ResultNotRecordedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { RowResult } from '../report/row-result.ts';
import type { Ledger } from './ledger/ledger.ts';
import { AwaitingReplica, DocumentBusy, RowAlreadyDone, RunStopped } from './row-signals.ts';
import type { RunStore } from './run-store.ts';
import { contentPrefix, type DocumentClaim, type StoredDocuments } from './stored-documents.ts';

/** What the server holds under the document's id, as far as a check can tell. */
export type ServerCopy = 'absent' | 'same' | { otherSha256: string };

export interface UploadOnceOptions {
  run: RunStore;
  documents: StoredDocuments;
  ledger: Ledger;
  row: number;
  doc: { personId: string; publicId: string; sha256: string; bytes: number };
  /** The row's result as far as it is known before the upload (ids, file, sizes). */
  base: Omit<RowResult, 'row' | 'status' | 'action'>;
  attempts: number;
  /** An earlier attempt of this job may have reached the server (ambiguous failure, crash). */
  jobDoubt: boolean;
  /** --check-existing: ask the API even when nothing here is in doubt. */
  checkExisting: boolean;
  /** Asks the API what it holds under the id (only where there is doubt). */
  check(signal: AbortSignal): Promise<ServerCopy>;
  /** Sends the document. */
  send(signal: AbortSignal): Promise<void>;
  /** Whether a failed send may still have reached the server (classify.ts's mayHaveBeenProcessed). */
  mayHaveReachedServer(err: unknown): boolean;
  /** Remembers on the job that its next attempt must ask first. */
  markJobInDoubt(): Promise<void>;
  signal?: AbortSignal;
  now(): number;
  log: Logger;
}

/**
 * The exactly-once upload of one document, in one place. A document is sent only when neither
 * the shared Redis nor this machine's ledger knows it as stored, and, where anything is in doubt
 * (this job's earlier attempt, another worker's or machine's attempt, a ledger `start` without
 * `stored`, --check-existing), only after the API said it does not hold it. Every path ends with
 * the row's result recorded; a successful send also records the document as stored, with the
 * result, in one Redis step.
 *
 *   claim (Redis: row settled? run stopped? stored? busy? else lock + doubt mark)
 *   → ledger: stored here? in doubt here?
 *   → where in doubt: ask the API (same content: done; other content: E_CONFLICT)
 *   → ledger `start` (durable) → send
 *   → ledger `stored` → Redis: stored + row result + lock released (one script)
 *
 * A new document with no doubt has its ledger `start` fsynced while its claim is on the way to
 * Redis (the two overlap: ~2.5 ms less per document under load); a claim that does not grant the
 * document takes that start back (an abort naming this attempt, so nobody else's start).
 */
export async function uploadOnce(o: UploadOnceOptions): Promise<RowResult> {
  const { run, documents, ledger, doc } = o;
  const { personId, publicId, sha256, bytes } = doc;
  const attempt = randomUUID();
  const early = !o.jobDoubt && !o.checkExisting ? await ledger.startIfUnknown(personId, publicId, sha256, attempt) : undefined;
  early?.durable.catch(() => undefined); // awaited before the send
  const takeBackEarly = async () => {
    if (early) await ledger.abort(personId, publicId, attempt).catch(() => undefined);
  };
  const result = (status: RowResult['status'], action: string): RowResult => ({ ...o.base, row: o.row, status, action, attempts: o.attempts, finishedAt: o.now() });

  // If this job loses the document's lock (Redis unreachable longer than the lock lives), another
  // worker may take the document over: stop sending rather than race it.
  const stop = new AbortController();
  let claimed: Awaited<ReturnType<StoredDocuments['claim']>>;
  try {
    claimed = await documents.claim(run, o.row, doc, () => stop.abort(new Error('lost the lock on this document')));
  } catch (err) {
    await takeBackEarly();
    throw err;
  }
  if (claimed.state !== 'claimed' && claimed.state !== 'stored') await takeBackEarly();
  switch (claimed.state) {
    case 'prior':
      throw new RowAlreadyDone(claimed.prior);
    case 'fatal':
      throw new RunStopped(claimed.fatal);
    case 'busy':
      throw new DocumentBusy();
    case 'unreplicated':
      throw new AwaitingReplica();
    case 'stored': {
      // Same publicId, other content (a manifest reusing an id): never "skip" what was not stored.
      if (claimed.contentPrefix !== contentPrefix(sha256)) {
        await takeBackEarly();
        throw new DocumentConflictError(publicId, claimed.contentPrefix, sha256);
      }
      // Stored by another state dir or machine: this ledger learns it too, so a rerun from here
      // after the Redis state is lost still knows it without asking the API.
      await recordStoredInLedger(o);
      return recordPlain(run, result('skipped', 'already-stored'));
    }
    case 'claimed':
      break;
  }
  const { claim } = claimed;
  // The send stops when the job's own signal (shutdown, lost job lock) or the document lock's
  // fires; linked by hand (AbortSignal.any cost measurable CPU per job on Node 20).
  const jobSignal = o.signal;
  const stopWithJob = () => stop.abort(jobSignal!.reason);
  if (jobSignal?.aborted) stopWithJob();
  else jobSignal?.addEventListener('abort', stopWithJob, { once: true });
  const signal = stop.signal;
  try {
    // Looked at again now that the document is ours: another process on this machine may have
    // written meanwhile (its start, read after ours, replaces ours). Our own start is no doubt.
    const entry = await ledger.lookup(personId, publicId);
    const ours = early !== undefined && entry?.state === 'started' && entry.attempt === attempt;
    const known = ours ? undefined : entry?.state;
    if (entry?.sha256 && entry.sha256 !== sha256) throw new DocumentConflictError(publicId, entry.sha256, sha256);
    if (known === 'stored') return await commit(o, claim, result('skipped', 'in-ledger'));

    const doubt = o.jobDoubt || known === 'started' || claimed.earlierDoubt !== undefined || o.checkExisting;
    if (doubt) {
      const copy = await checkServer(o, signal);
      if (copy === 'same') {
        await recordStoredInLedger(o);
        // This job's own earlier attempt stored it: this run did the work. Otherwise it was there before.
        return await commit(o, claim, o.jobDoubt ? result('succeeded', 'uploaded-confirmed') : result('skipped', 'exists-on-server'));
      }
      if (copy !== 'absent') throw new DocumentConflictError(publicId, copy.otherSha256, sha256);
    }

    if (ours) await early.durable;
    else await ledger.start(personId, publicId, sha256, attempt);
    try {
      await o.send(signal);
    } catch (err) {
      if (o.mayHaveReachedServer(err)) {
        // The server may hold it now: whoever comes next (this job, any worker) asks first.
        await o.markJobInDoubt();
        await claim.leaveInDoubt();
      } else {
        await ledger.abort(personId, publicId, attempt);
        await claim.giveBack();
      }
      throw err;
    }
    await recordStoredInLedger(o);
    return await commit(o, claim, result('succeeded', 'uploaded'));
  } finally {
    jobSignal?.removeEventListener('abort', stopWithJob);
    // Ended before anything was sent (a conflict, a failed check, Redis or the disk failing): our
    // doubt mark goes, an earlier attempt's stays.
    if (!claim.ended) await claim.giveBack().catch(() => undefined);
  }
}

/**
 * Asks the API what it holds. A failed check fails this attempt before anything is sent, and says
 * so (ExistenceCheckError): a bare `GET …/data answered 503` as an upload row's error reads like
 * the upload's own failure.
 */
async function checkServer(o: UploadOnceOptions, signal: AbortSignal): Promise<ServerCopy> {
  try {
    return await o.check(signal);
  } catch (err) {
    if (signal.aborted || err instanceof DocumentConflictError) throw err;
    throw new ExistenceCheckError(o.doc.publicId, err);
  }
}

/**
 * The server confirmed the document: the ledger records it, but a ledger that cannot be written
 * (a full disk) must not hide that from the shared Redis, which is recorded next regardless.
 */
async function recordStoredInLedger(o: UploadOnceOptions): Promise<void> {
  const { personId, publicId, sha256, bytes } = o.doc;
  try {
    await o.ledger.stored(personId, publicId, sha256, bytes);
  } catch (err) {
    o.log.warn({ err, personId, publicId }, 'the ledger could not record a stored document (is its disk full?); Redis records it, so no worker sends it again');
  }
}

/** The row's result, the document as stored and its lock released: one Redis step. */
async function commit(o: UploadOnceOptions, claim: DocumentClaim, result: RowResult): Promise<RowResult> {
  try {
    await o.run.record(result, claim.commitFor(o.doc.sha256));
    claim.committed();
    return result;
  } catch (err) {
    // The work is done (maybe even recorded, if only the reply was lost): never "failed". The
    // retry finds the row's result, or the document stored, or asks the API.
    await claim.markStored(o.doc.sha256).catch(() => undefined);
    await o.markJobInDoubt().catch(() => undefined);
    throw new ResultNotRecordedError(err);
  }
}

async function recordPlain(run: RunStore, result: RowResult): Promise<RowResult> {
  try {
    await run.record(result);
    return result;
  } catch (err) {
    throw new ResultNotRecordedError(err);
  }
}
