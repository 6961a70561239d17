import { createHash } from 'node:crypto';

/** Redis key prefix of every BullMQ structure idsync creates. */
export const QUEUE_PREFIX = 'idsync';

/** A short stable key for one API (base URL), used in queue names, locks and ledger files. */
export function apiKey(apiUrl: string): string {
  return createHash('sha256').update(apiUrl).digest('hex').slice(0, 12);
}

/**
 * One queue per API: `idsync worker` processes pointed at the same API and Redis share its jobs,
 * and workers for another API never take them. (BullMQ forbids ':' in names.)
 */
export function queueNameFor(apiUrl: string): string {
  return `jobs-${apiKey(apiUrl)}`;
}

/** Job ids are stable per run and row, so enqueueing the same manifest twice adds nothing twice. */
export function jobIdFor(runId: string, row: number): string {
  return `${runId}-${row}`;
}
