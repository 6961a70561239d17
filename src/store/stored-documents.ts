import { createHash, randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { RowResult } from '../report/row-result.ts';
import { STORED_BUCKET_BITS, type ApiKeys } from './keys.ts';
import { parseRowAnswer, type RunStore, type StoredCommit } from './run-store.ts';
import type { Logger } from '../log.ts';
import { ReplicaWait, type ReplicaWaitOptions } from './redis/replica-wait.ts';
import { rowCommands, scriptAnswer } from './row-scripts.ts';
import { TurnBatcher } from './turn-batcher.ts';

/** Claims sent together at most (one Redis call). */
export const CLAIMS_PER_CALL = 64;

/** Where a document sits in the stored set: its bucket, its field there, and a hex id for its lock. */
export interface DocumentId {
  bucket: number;
  field: Buffer;
  hex: string;
}

/**
 * 81 bits of the sha256 of personId/publicId: 17 pick the bucket, 64 are the field. Two of ten
 * million documents share an id with a chance of ~4e-11 (and would then be taken for one).
 */
export function documentId(personId: string, publicId: string): DocumentId {
  const h = createHash('sha256').update(`${personId.toLowerCase()}/${publicId.toLowerCase()}`).digest();
  const bucket = ((h[0]! << 16) | (h[1]! << 8) | h[2]!) >>> (24 - STORED_BUCKET_BITS);
  return { bucket, field: h.subarray(3, 11), hex: h.subarray(0, 16).toString('hex') };
}

/** `s` (stored) or `d` (doubt) and the first 8 bytes of the content's sha256: 9 bytes per document. */
function storedValue(state: 's' | 'd', sha256: string): Buffer {
  return Buffer.concat([Buffer.from(state), Buffer.from(sha256.slice(0, 16), 'hex')]);
}

/** The first 16 hex digits of a sha256: what the stored set keeps of a document's content. */
export function contentPrefix(sha256: string): string {
  return sha256.slice(0, 16).toLowerCase();
}

export type ClaimResult =
  /** The row already has a settled result: nothing to do. */
  | { state: 'prior'; prior: RowResult }
  /** The run stopped on a fatal error. */
  | { state: 'fatal'; fatal: string }
  /** Stored already (by any worker of this Redis), with content whose sha256 starts with `contentPrefix`. */
  | { state: 'stored'; contentPrefix: string }
  /** Another job holds the document right now. */
  | { state: 'busy' }
  /**
   * The claim did not reach the Redis replicas (a failover under way?): it was given back, and
   * nothing may be sent before a later claim reaches them (see ReplicaWait).
   */
  | { state: 'unreplicated' }
  /**
   * The document's lock is ours, and it is marked in doubt in Redis from now on. `earlierDoubt`:
   * an earlier attempt (any worker, any machine) may have sent it, with content of this prefix.
   */
  | { state: 'claimed'; claim: DocumentClaim; earlierDoubt?: string };

/**
 * The documents stored through this Redis, by any worker on any machine: the shared counterpart
 * of each machine's ledger, so that no worker re-sends what a colleague stored, and, with its
 * doubt marks, so that any worker asks the API before sending what an attempt elsewhere may have
 * sent. Kept as 9 bytes per document in 2^17 bucket hashes (compact listpacks up to ~12 million
 * documents with Redis's default hash-max-listpack-entries of 128): about 30 bytes of Redis per
 * document, with no expiry, since forgetting would be the one way to upload twice.
 */
export class StoredDocuments {
  readonly #redis: Redis;
  readonly #keys: ApiKeys;
  readonly #ttlMs: number;
  readonly #replicas: ReplicaWait;

  /** `replicas`: how many the master has (each claim waits for them), with the ReplicaWait options. */
  constructor(redis: Redis, keys: ApiKeys, lockTtlMs = 30_000, replicas = 0, options: ReplicaWaitOptions & { log?: Logger } = {}) {
    this.#redis = redis;
    this.#keys = keys;
    this.#ttlMs = lockTtlMs;
    this.#replicas = new ReplicaWait(redis, replicas, options);
  }

  /** What this Redis knows of a document (for verify and status pages). */
  async lookup(personId: string, publicId: string): Promise<{ state: 'stored' | 'doubt'; contentPrefix: string } | undefined> {
    const id = documentId(personId, publicId);
    const raw = await this.#redis.hgetBuffer(this.#keys.storedBucket(id.bucket), id.field);
    if (!raw || raw.length < 1) return undefined;
    return { state: raw[0] === 0x73 ? 'stored' : 'doubt', contentPrefix: raw.subarray(1).toString('hex') };
  }

  /** Records a document as stored without a claim (the API confirmed it exists with this content). */
  async markStored(personId: string, publicId: string, sha256: string): Promise<void> {
    const id = documentId(personId, publicId);
    await this.#redis.hset(this.#keys.storedBucket(id.bucket), id.field, storedValue('s', sha256));
  }

  readonly #claims = new TurnBatcher<{ keys: string[]; args: Array<string | Buffer> }, { answer: string; replicated: boolean }>(async (batch) => {
    const keys = batch.flatMap((c) => c.keys);
    const args = batch.flatMap((c) => c.args);
    const answers = await rowCommands(this.#redis).idsyncClaim(keys.length, ...keys, ...args);
    // With replicas, the doubt marks must be on them before anything is sent: a failover that lost
    // them would let another worker send the same document again. One WAIT per batch of claims.
    const replicated = await this.#replicas.confirm();
    return answers.map((a) => {
      const answer = scriptAnswer(a);
      return answer instanceof Error ? answer : { answer, replicated };
    });
  }, CLAIMS_PER_CALL);

  /**
   * In one step, in the order a job asks: is the row settled, did the run stop, is the document
   * stored, is another job on it; else its lock is ours (renewed until committed or given back)
   * and it is marked in doubt. Claims made in the same turn of the event loop share one call.
   */
  async claim(run: RunStore, row: number, doc: { personId: string; publicId: string; sha256: string }, onLost?: () => void): Promise<ClaimResult> {
    const id = documentId(doc.personId, doc.publicId);
    const token = randomUUID();
    const bucketKey = this.#keys.storedBucket(id.bucket);
    const lockKey = this.#keys.lock(id.hex);
    const r = run.keys;
    const { answer, replicated } = await this.#claims.call({
      keys: [r.results, r.meta, r.status, bucketKey, lockKey],
      args: [String(row), id.field, token, String(this.#ttlMs), storedValue('d', doc.sha256)],
    });
    const { prior, fatal } = parseRowAnswer(row, answer);
    if (prior) return { state: 'prior', prior };
    if (fatal !== undefined) return { state: 'fatal', fatal };
    if (answer.startsWith('stored:')) return { state: 'stored', contentPrefix: answer.slice('stored:'.length) };
    if (!answer.startsWith('claimed:')) return { state: 'busy' };
    const earlier = answer.slice('claimed:'.length);
    const claim = new DocumentClaim(this.#redis, { bucketKey, lockKey, field: id.field, token, previous: earlier ? storedValue('d', earlier) : Buffer.alloc(0) }, this.#ttlMs, onLost);
    if (!replicated) {
      await claim.giveBack();
      return { state: 'unreplicated' };
    }
    return { state: 'claimed', claim, ...(earlier ? { earlierDoubt: earlier } : {}) };
  }
}

interface ClaimedAt {
  bucketKey: string;
  lockKey: string;
  field: Buffer;
  token: string;
  /** The value the claim found (an earlier attempt's doubt), or empty. */
  previous: Buffer;
}

/**
 * A document whose lock this job holds. It ends in exactly one of three ways: committed with the
 * row's result (RunStore.record with `commitFor`), marked stored on its own when that failed, or
 * given back (our doubt mark taken back: nothing can have reached the server).
 */
export class DocumentClaim {
  readonly #redis: Redis;
  readonly #at: ClaimedAt;
  readonly #renew: NodeJS.Timeout;
  #ended = false;

  constructor(redis: Redis, at: ClaimedAt, ttlMs: number, onLost?: () => void) {
    this.#redis = redis;
    this.#at = at;
    // Renewed while the job works; a renewal that finds the lock gone (or cannot reach Redis)
    // says so, and the job stops rather than race the worker that may take the document over.
    this.#renew = setInterval(() => {
      rowCommands(redis).idsyncExtend(at.lockKey, at.token, String(ttlMs)).then(
        (extended) => {
          if (extended !== 1) onLost?.();
        },
        () => onLost?.(),
      );
    }, Math.max(250, Math.floor(ttlMs / 3)));
    this.#renew.unref();
  }

  /** What RunStore.record needs to record the document as stored and release its lock with the row's result. */
  commitFor(sha256: string): StoredCommit {
    const { bucketKey, lockKey, field, token } = this.#at;
    return { bucketKey, lockKey, field, token, value: storedValue('s', sha256) };
  }

  /** The commit went through: stop renewing. */
  committed(): void {
    this.#end();
  }

  /** The commit failed: record the document as stored and release the lock on their own. */
  async markStored(sha256: string): Promise<void> {
    if (!this.#end()) return;
    const { bucketKey, lockKey, field, token } = this.#at;
    await rowCommands(this.#redis).idsyncMarkStored(bucketKey, lockKey, field, storedValue('s', sha256), token);
  }

  /** Nothing was (or can have been) sent: take our doubt mark back and release the lock. */
  async giveBack(): Promise<void> {
    if (!this.#end()) return;
    const { bucketKey, lockKey, field, token, previous } = this.#at;
    await rowCommands(this.#redis).idsyncGiveBack(bucketKey, lockKey, field, token, previous);
  }

  /** An attempt may have reached the server: leave the doubt mark, release the lock. */
  async leaveInDoubt(): Promise<void> {
    if (!this.#end()) return;
    await rowCommands(this.#redis).idsyncRelease(this.#at.lockKey, this.#at.token);
  }

  get ended(): boolean {
    return this.#ended;
  }

  #end(): boolean {
    if (this.#ended) return false;
    this.#ended = true;
    clearInterval(this.#renew);
    return true;
  }
}
