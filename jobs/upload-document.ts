import path from 'node:path';
import type { Job } from 'bullmq';
import { classify } from '../src/api/classify.ts';
import { hashFile } from '../src/state/file-hash.ts';
import { ledgerKey } from '../src/state/ledger.ts';
import { derivePublicId } from '../src/state/public-id.ts';
import { DocumentBusy, type JobContext, type JobOutcome, type UploadJobData } from './job-types.ts';

/**
 * Uploads one document exactly once. What it already knows costs nothing: a document this
 * Redis or this machine's ledger records as stored is skipped without a request. Only where
 * there is doubt (an earlier attempt may have reached the server, a crash left a `start`
 * without `stored`, or --check-existing) does it ask the API before sending.
 */
export async function uploadDocument(job: Job<UploadJobData>, ctx: JobContext, signal?: AbortSignal): Promise<JobOutcome> {
  const { item } = job.data;
  const { sha256, bytes } = await hashFile(item.file);
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

  if (await ctx.stored.get(docKey)) return { ...base, status: 'skipped', action: 'already-stored' };
  const release = await ctx.locks.acquire(docKey);
  if (!release) throw new DocumentBusy();
  try {
    if (await ctx.stored.get(docKey)) return { ...base, status: 'skipped', action: 'already-stored' };
    const known = await ctx.ledger.state(item.personId, publicId);
    if (known === 'stored') {
      await ctx.stored.add(docKey, sha256);
      return { ...base, status: 'skipped', action: 'in-ledger' };
    }
    const ourDoubt = job.data.ambiguous === true || job.stalledCounter > 0;
    const doubt = ourDoubt || known === 'started' || job.data.checkExisting;
    if (doubt && (await ctx.client.documentExists(item.personId, publicId, signal))) {
      await ctx.ledger.stored(item.personId, publicId, sha256, bytes);
      await ctx.stored.add(docKey, sha256);
      // Our own earlier attempt stored it: this run did the work. Otherwise it was there before.
      return ourDoubt ? { ...base, action: 'uploaded-confirmed' } : { ...base, status: 'skipped', action: 'exists-on-server' };
    }

    await ctx.ledger.start(item.personId, publicId, sha256);
    try {
      await ctx.client.uploadDocument(
        {
          personId: item.personId,
          name: item.name,
          ...(item.description ? { description: item.description } : {}),
          publicId,
          filePath: item.file,
          fileName: path.basename(item.file),
        },
        signal,
      );
    } catch (err) {
      if (classify(err).ambiguous) {
        // The server may hold it now: the next attempt must ask before sending again.
        await job.updateData({ ...job.data, ambiguous: true });
      } else {
        await ctx.ledger.abort(item.personId, publicId);
      }
      throw err;
    }
    await ctx.ledger.stored(item.personId, publicId, sha256, bytes);
    await ctx.stored.add(docKey, sha256);
    return base;
  } finally {
    await release();
  }
}
