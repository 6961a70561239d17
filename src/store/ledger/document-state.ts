import { createHash } from 'node:crypto';

export type LedgerState = 'started' | 'stored';

/** What the ledger knows of one document. */
export interface DocState {
  state: LedgerState;
  sha256?: string;
  /** The attempt of the start that made it 'started'. */
  attempt?: string;
}

/** One recorded step of a document, as a journal line holds it. */
export interface DocOp {
  op: 'start' | 'stored' | 'abort';
  sha256?: string | undefined;
  /** On a start: the attempt writing it. On an abort: the start it cancels (none: any start). */
  attempt?: string | undefined;
}

/**
 * Attempts longer than a segment record holds are kept as a digest: lookup() then returns this
 * form, which equals no caller's attempt (the caller sees another's start and asks the API: the
 * safe side), while an abort naming the long attempt still matches it.
 */
const DIGEST_PREFIX = 'sha256:';

export function textDigest(attempt: string): Buffer {
  return createHash('sha256').update(attempt).digest().subarray(0, 16);
}

export function digestForm(digest: Buffer): string {
  return `${DIGEST_PREFIX}${digest.toString('hex')}`;
}

function attemptMatches(recorded: string | undefined, named: string): boolean {
  if (recorded === named) return true;
  return recorded !== undefined && recorded.startsWith(DIGEST_PREFIX) && recorded === digestForm(textDigest(named));
}

/**
 * The live rule, applied by a Ledger to its own steps when taken and to other processes' steps
 * when read: a later start replaces an earlier one, so another process's start read after ours
 * hides ours (that is what makes ours doubtful to us).
 */
export function applyLive(current: DocState | undefined, op: DocOp): DocState | undefined {
  switch (op.op) {
    case 'start':
      if (current?.state === 'stored') return current;
      return { state: 'started', ...(op.sha256 !== undefined ? { sha256: op.sha256 } : {}), ...(op.attempt ? { attempt: op.attempt } : {}) };
    case 'stored': {
      const sha256 = op.sha256 ?? current?.sha256;
      return { state: 'stored', ...(sha256 !== undefined ? { sha256 } : {}) };
    }
    case 'abort':
      // Only the start it names: another attempt's start, written since, keeps its doubt.
      if (current?.state === 'started' && (op.attempt === undefined || attemptMatches(current.attempt, op.attempt))) return undefined;
      return current;
    default:
      return current;
  }
}

/**
 * The rule a compaction folds the journal with. It knows only the order of the file, not which
 * process will look next: when one start follows another of a different attempt, the record keeps
 * no attempt at all, so neither owner mistakes the other's start for its own (each then asks the
 * API before sending: one request, never a second upload), and no later abort naming one attempt
 * clears the doubt of the other.
 */
export function applyCompacting(current: DocState | undefined, op: DocOp): DocState | undefined {
  if (op.op === 'start' && current?.state === 'started' && (current.attempt === undefined || op.attempt === undefined || !attemptMatches(current.attempt, op.attempt))) {
    return { state: 'started', ...(op.sha256 !== undefined ? { sha256: op.sha256 } : {}) };
  }
  return applyLive(current, op);
}

export function sameState(a: DocState | undefined, b: DocState | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.state === b.state && a.sha256 === b.sha256 && a.attempt === b.attempt;
}
