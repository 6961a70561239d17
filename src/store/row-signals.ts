import type { RowResult } from '../report/row-result.ts';

/**
 * What the store tells a job about its row, thrown so that the job ends at once and the engine's
 * processor turns each into what steers BullMQ (see src/engine/processor.ts).
 */

/** The row already has a settled result (a job run again after a crash): return it as it is. */
export class RowAlreadyDone extends Error {
  readonly prior: RowResult;
  constructor(prior: RowResult) {
    super(`row ${prior.row} is already done`);
    this.prior = prior;
  }
}

/** The run stopped on a fatal error: the job must not start. */
export class RunStopped extends Error {
  readonly fatal: string;
  constructor(fatal: string) {
    super(`run stopped: ${fatal}`);
    this.fatal = fatal;
  }
}

/** Another job works on the same document right now: wait and try again (no attempt spent). */
export class DocumentBusy extends Error {
  readonly retryInMs: number;
  constructor(retryInMs = 1000) {
    super('the same document is being uploaded by another job');
    this.retryInMs = retryInMs;
  }
}

/**
 * The document's claim did not reach the Redis replicas (a failover under way?): nothing was sent;
 * wait and try again, like a busy document (no attempt spent).
 */
export class AwaitingReplica extends DocumentBusy {
  constructor(retryInMs = 1000) {
    super(retryInMs);
    this.message = 'waiting for the Redis replicas to confirm the claim before sending';
  }
}

/** Throws RowAlreadyDone or RunStopped for what RunStore.jobStart found, if anything. */
export function throwIfRowSettled(start: { prior?: RowResult; fatal?: string }): void {
  if (start.prior) throw new RowAlreadyDone(start.prior);
  if (start.fatal !== undefined) throw new RunStopped(start.fatal);
}
