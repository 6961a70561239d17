import type { Job } from 'bullmq';
import { classify } from '../api/classify.ts';
import { retryDelay } from '../pacing/backoff.ts';
import type { JobEnvelope } from './job-signing.ts';

/**
 * A retry budget: time, not a count, ends the tries of a job whose failures pass (5xx, network,
 * timeouts, 429: what classify() calls retry and retry-after). A scanner inbox must ride out an API
 * outage of hours (issue #17): five attempts in a few seconds put every file dropped meanwhile into
 * .failed for good. Permanent and fatal failures still end a job at once. `idsync watch` queues its
 * jobs on a budget; import, export and archive count attempts (`--attempts`) as before.
 */
export interface RetryBudget {
  /** How long after its first failure a job goes on trying. */
  budgetMs: number;
  /** The longest wait between two tries (BullMQ's backoff `delay`, read by jobRetryDelay). */
  maxDelayMs: number;
}

/**
 * BullMQ's attempts for a job on a budget: high enough never to be the limit (six hours of tries
 * at a 50 ms cap are ~430,000), yet finite, so a job whose budget hint were lost still ends.
 */
export const BUDGET_ATTEMPTS = 1_000_000;

/** The envelope hint and BullMQ options of a job queued on a budget. */
export function budgetedJob(budget: RetryBudget): { hint: Pick<JobEnvelope, 'b'>; opts: { attempts: number; backoff: { type: 'idsync'; delay: number } } } {
  return { hint: { b: budget.budgetMs }, opts: { attempts: BUDGET_ATTEMPTS, backoff: { type: 'idsync', delay: budget.maxDelayMs } } };
}

/**
 * Whether a job that failed for a passing reason has had its tries: on a budget, when the budget
 * has gone by since its first such failure (remembered on the job at that failure); otherwise when
 * this was its last attempt (the enqueuing command's --attempts, or the worker's own setting).
 */
export async function triesSpent(job: Job<JobEnvelope>, attempt: number, fallbackAttempts: number, now: number): Promise<boolean> {
  const budget = job.data.b;
  if (budget === undefined) return attempt >= (job.opts.attempts ?? fallbackAttempts);
  if (job.data.f === undefined) {
    // Not remembered (Redis failing too)? The next failure tries again; the budget starts later, never early.
    await job.updateData({ ...job.data, f: now }).catch(() => undefined);
    return budget <= 0;
  }
  return now - job.data.f >= budget;
}

/**
 * The wait before a job's next try (BullMQ's backoffStrategy): retryDelay of the failure's class,
 * capped by the job's backoff `delay` when it has one (a job on a budget), else by the default cap.
 * 0 means "do not retry".
 */
export function jobRetryDelay(attemptsMade: number, err: unknown, backoff: { delay?: number } | undefined, random: () => number): number {
  const capMs = backoff?.delay;
  return retryDelay(attemptsMade, classify(err), random, capMs !== undefined && capMs > 0 ? { capMs } : {});
}
