import { randomUUID } from 'node:crypto';
import path from 'node:path';
import type { Job } from 'bullmq';
import { DocumentConflictError, FileError } from '../src/errors.ts';
import { mayHaveBeenProcessed } from '../src/api/classify.ts';
import { SmallFileReader } from '../src/state/small-file.ts';
import { ledgerKey } from '../src/state/ledger.ts';
import { derivePublicId } from '../src/state/public-id.ts';
import { mediaTypeOfFile } from '../src/sources/media-type.ts';
import { DocumentBusy, RowAlreadyDone, RunStopped, throwIfRowSettled, type AfterJob, type JobContext, type JobOutcome, type UploadJobData } from './job-types.ts';

/** One per process: it remembers which folders are local and whether reads have been slow. */
const files = new SmallFileReader();

/**
 * Uploads one document exactly once. What it already knows costs nothing: a document this
 * Redis or this machine's ledger records as stored is skipped without a request. Only where
 * there is doubt (an earlier attempt may have reached the server, a crash left a `start`
 * without `stored`, or --check-existing) does it ask the API before sending.
 */
export async function uploadDocument(job: Job<UploadJobData>, ctx: JobContext, signal: AbortSignal | undefined, after: AfterJob): Promise<JobOutcome> {
  const { item } = job.data;
  const run = ctx.run(job.data.runId);
  let file: Awaited<ReturnType<SmallFileReader['read']>>;
  try {
    file = await files.read(item.file);
  } catch (err) {
    // What a job asks first (a final result for its row already, or a stopped run) wins over a
    // file that has gone since: the claim below, which asks it otherwise, is not reached.
    throwIfRowSettled(await run.jobStart(job.data.row));
    throw err;
  }
  const { sha256, bytes, data } = file;
  const publicId = item.publicId ?? derivePublicId(item.personId, sha256);
  const docKey = ledgerKey(item.personId, publicId);
  const base: JobOutcome = {
    status: 'succeeded',
    action: 'uploaded',
    personId: item.personId,
    documentId: publicId,
    file: item.file,
    bytes,
    sha256,
  };

  // When nothing on this machine knows the document and the job has no doubt of its own, its
  // ledger `start` is made durable while the claim below is on its way to Redis (the fsync and
  // the round trip overlap: ~2.5 ms less per document under load). A claim that does not grant
  // the document takes that start back (an abort naming this attempt, so nobody else's start).
  const attempt = randomUUID();
  const noDoubt = job.data.ambiguous !== true && job.stalledCounter === 0 && !job.data.checkExisting;
  const early = noDoubt ? await ctx.ledger.startIfUnknown(item.personId, publicId, sha256, attempt) : undefined;
  early?.durable.catch(() => undefined); // awaited before the upload
  const takeBack = async () => {
    if (early) await ctx.ledger.abort(item.personId, publicId, attempt).catch(() => undefined);
  };

  // If this job loses the document's lock (Redis unreachable longer than the lock lives), another
  // worker may take the document over: stop sending rather than race it.
  const lockLost = new AbortController();
  // The claim also answers the job's first questions (see process-job.ts): one round trip for both.
  let claim: Awaited<ReturnType<typeof ctx.locks.claim>>;
  try {
    claim = await ctx.locks.claim(docKey, ctx.stored, () => lockLost.abort(new Error('lost the lock on this document')), {
      resultsKey: run.resultsKey,
      metaKey: run.metaKey,
      row: job.data.row,
    });
  } catch (err) {
    await takeBack();
    throw err;
  }
  if (claim.state !== 'claimed') await takeBack();
  if (claim.state === 'prior') throw new RowAlreadyDone(claim.prior);
  if (claim.state === 'fatal') throw new RunStopped(claim.fatal);
  if (claim.state === 'stored') {
    // Same publicId, other content (a manifest reusing an id): never "skip" what was not stored.
    if (claim.sha256 && claim.sha256 !== sha256) throw new DocumentConflictError(publicId, claim.sha256, sha256);
    return { ...base, status: 'skipped', action: 'already-stored' };
  }
  if (claim.state === 'busy') throw new DocumentBusy();
  const { lock } = claim;
  // From here the upload stops when either the job's own signal (shutdown, lost job lock) or the
  // document lock's fires; linked by hand (AbortSignal.any cost measurable CPU per job on Node 20).
  const jobSignal = signal;
  const stopWithJob = () => lockLost.abort(jobSignal!.reason);
  if (jobSignal?.aborted) stopWithJob();
  else jobSignal?.addEventListener('abort', stopWithJob, { once: true });
  signal = lockLost.signal;
  try {
    // Looked at again now that the document is ours: another process on this machine may have
    // written meanwhile (its start, read after ours, replaces ours). Our own start is no doubt.
    const entry = await ctx.ledger.lookup(item.personId, publicId);
    const ours = early !== undefined && entry?.state === 'started' && entry.attempt === attempt;
    const known = ours ? undefined : entry?.state;
    if (entry?.sha256 && entry.sha256 !== sha256) throw new DocumentConflictError(publicId, entry.sha256, sha256);
    if (known === 'stored') {
      after.stored = lock.deferStored(sha256);
      return { ...base, status: 'skipped', action: 'in-ledger' };
    }
    const ourDoubt = job.data.ambiguous === true || job.stalledCounter > 0;
    const doubt = ourDoubt || known === 'started' || job.data.checkExisting;
    if (doubt && (await ctx.client.documentExists(item.personId, publicId, signal))) {
      await ctx.ledger.stored(item.personId, publicId, sha256, bytes);
      after.stored = lock.deferStored(sha256);
      // Our own earlier attempt stored it: this run did the work. Otherwise it was there before.
      return ourDoubt ? { ...base, action: 'uploaded-confirmed' } : { ...base, status: 'skipped', action: 'exists-on-server' };
    }

    if (ours) await early.durable;
    else await ctx.ledger.start(item.personId, publicId, sha256, attempt);
    try {
      await ctx.client.uploadDocument(
        {
          personId: item.personId,
          name: item.name,
          ...(item.description ? { description: item.description } : {}),
          publicId,
          filePath: item.file,
          ...(data ? { data } : {}),
          fileName: path.basename(item.file),
          contentType: await mediaTypeOfFile(item.file, data),
          expect: { sha256, bytes },
        },
        signal,
      );
    } catch (err) {
      if (mayHaveBeenProcessed(err)) {
        // The server may hold it now: the next attempt must ask before sending again.
        await job.updateData({ ...job.data, ambiguous: true });
      } else {
        await ctx.ledger.abort(item.personId, publicId, attempt);
      }
      throw err;
    }
    await ctx.ledger.stored(item.personId, publicId, sha256, bytes);
    // Recorded as stored (and the lock released) together with the row's result: one Redis call.
    after.stored = lock.deferStored(sha256);
    return base;
  } finally {
    jobSignal?.removeEventListener('abort', stopWithJob);
    await lock.release();
  }
}
