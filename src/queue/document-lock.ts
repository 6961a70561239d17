import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { QUEUE_PREFIX } from './queue-names.ts';
import { scriptAnswer, TurnBatcher } from './turn-batcher.ts';
import type { RowResult } from '../report/row-result.ts';

/** Claims sent together at most (one Redis call). */
export const CLAIMS_PER_CALL = 64;

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
/**
 * Claims documents, several at once (see TurnBatcher). Per claim, KEYS: stored hash, lock, and
 * (optional) the run's results hash and meta; ARGV: its number of keys (2 or 4), docKey, token,
 * ttl, row. One round trip instead of check, lock, check again; with the run's keys it also
 * answers what a job asks first (a final result for its row already? the run stopped?). Returns
 * one state per claim; of two claims of one document in a batch, the second finds it busy.
 */
const CLAIM = `local function claim(k, nkeys, docKey, token, ttl, row)
  local state
  if nkeys == 4 then
    local prior = redis.call('hget', KEYS[k + 2], row)
    if prior then
      -- Only a readable, final result ends the job; a failed or rejected row is tried again.
      local ok, r = pcall(cjson.decode, prior)
      if ok and type(r) == 'table' and r.status ~= 'failed' and r.status ~= 'rejected' then state = 'prior:' .. prior end
    end
    if not state then
      local meta = redis.call('get', KEYS[k + 3])
      if meta then
        local ok, m = pcall(cjson.decode, meta)
        if ok and type(m) == 'table' and type(m.fatal) == 'string' then state = 'fatal:' .. m.fatal end
      end
    end
  end
  if not state then
    local sha = redis.call('hget', KEYS[k], docKey)
    if sha then state = 'stored:' .. sha
    elseif redis.call('set', KEYS[k + 1], token, 'PX', ttl, 'NX') then state = 'claimed'
    else state = 'busy' end
  end
  return state
end
-- Each claim on its own: one that fails (out of memory, say) answers 'error:…' and the others stand.
local out = {}
local k, a = 1, 1
while a <= #ARGV do
  local nkeys = tonumber(ARGV[a])
  local ok, state = pcall(claim, k, nkeys, ARGV[a + 1], ARGV[a + 2], ARGV[a + 3], ARGV[a + 4])
  if ok then out[#out + 1] = state else out[#out + 1] = 'error:' .. tostring(state) end
  k = k + nkeys
  a = a + 5
end
return out`;
/** KEYS: stored hash, lock. ARGV: docKey, sha256, token. Records the document as stored, then releases the lock. */
const STORED_AND_RELEASE = `redis.call('hset', KEYS[1], ARGV[1], ARGV[2])
if redis.call('get', KEYS[2]) == ARGV[3] then redis.call('del', KEYS[2]) end
return 1`;
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * One upload of a given document at a time, across every worker sharing this Redis: two
 * manifest rows naming the same file for the same person must not race each other into two
 * stored copies. The lock lives only as long as the job lock (renewed while its holder works),
 * so a crashed holder blocks the document for seconds, not for the rest of the run.
 */
/** The scripts as ioredis commands: sent by SHA (EVALSHA), not as text on every call. */
interface LockCommands {
  idsyncDocClaim(numberOfKeys: number, ...keysAndArgs: string[]): Promise<string[]>;
  idsyncDocRelease(lock: string, token: string): Promise<number>;
  idsyncDocStoredAndRelease(stored: string, lock: string, docKey: string, sha256: string, token: string): Promise<number>;
  idsyncDocExtend(lock: string, token: string, ttlMs: string): Promise<number>;
}

/**
 * Defines the scripts on a connection (once). Called by RedisHandle.connect for every connection
 * before its first command: with auto-pipelining, a pipeline made before a defineCommand lacks
 * the command, and ioredis then fails every call in it and never answers some (ioredis #1931).
 */
export function lockCommands(redis: Redis): LockCommands {
  const r = redis as Redis & Partial<LockCommands>;
  if (!r.idsyncDocClaim) {
    redis.defineCommand('idsyncDocClaim', { lua: CLAIM }); // keys given per call
    redis.defineCommand('idsyncDocRelease', { numberOfKeys: 1, lua: RELEASE });
    redis.defineCommand('idsyncDocStoredAndRelease', { numberOfKeys: 2, lua: STORED_AND_RELEASE });
    redis.defineCommand('idsyncDocExtend', { numberOfKeys: 1, lua: EXTEND });
  }
  return r as Redis & LockCommands;
}

export class DocumentLocks {
  readonly #redis: LockCommands;
  readonly #api: string;
  readonly #ttlMs: number;

  constructor(redis: Redis, api: string, ttlMs = 30_000) {
    this.#redis = lockCommands(redis);
    this.#api = api;
    this.#ttlMs = ttlMs;
  }

  /** Claims made in the same turn of the event loop go to Redis together. */
  readonly #claims = new TurnBatcher<{ keys: string[]; docKey: string; token: string; row: string }, string>((batch) => {
    const keys: string[] = [];
    const args: string[] = [];
    for (const c of batch) {
      keys.push(...c.keys);
      args.push(String(c.keys.length), c.docKey, c.token, String(this.#ttlMs), c.row);
    }
    return this.#redis.idsyncDocClaim(keys.length, ...keys, ...args).then((states) => states.map(scriptAnswer));
  }, CLAIMS_PER_CALL);

  #key(docKey: string): string {
    return `${QUEUE_PREFIX}:lock:${this.#api}:${docKey}`;
  }

  /**
   * Atomically: 'stored' when `stored` already records the document, else takes its lock
   * ('claimed', with the lock's handle) or finds another job holding it ('busy'). Being atomic,
   * a claim never misses a colleague's "stored" written just before it released the lock.
   */
  async claim(
    docKey: string,
    stored: StoredDocuments,
    /** Called when a renewal finds the lock gone or cannot reach Redis: stop working on the document. */
    onLost?: () => void,
    /** The job's row: answer first whether it already has a final result or its run stopped. */
    row?: RowCheck,
  ): Promise<ClaimResult> {
    const token = randomUUID();
    const key = this.#key(docKey);
    const state = await this.#claims.call({ keys: row ? [stored.key, key, row.resultsKey, row.metaKey] : [stored.key, key], docKey, token, row: row ? String(row.row) : '' });
    if (state.startsWith('prior:')) return { state: 'prior', prior: JSON.parse(state.slice('prior:'.length)) as RowResult };
    if (state.startsWith('fatal:')) return { state: 'fatal', fatal: state.slice('fatal:'.length) };
    if (state.startsWith('stored:')) return { state: 'stored', sha256: state.slice('stored:'.length) };
    if (state !== 'claimed') return { state: 'busy' };
    const renew = setInterval(() => {
      this.#redis.idsyncDocExtend(key, token, String(this.#ttlMs)).then(
        (extended) => {
          if (extended !== 1) onLost?.();
        },
        () => onLost?.(),
      );
    }, Math.max(250, Math.floor(this.#ttlMs / 3)));
    renew.unref();
    let done = false;
    const redis = this.#redis;
    let deferred = false;
    return {
      state: 'claimed',
      lock: {
        deferStored(sha256: string): DeferredStored {
          deferred = true;
          return {
            commit: { storedKey: stored.key, docKey, sha256, lockKey: key, token },
            settled() {
              done = true;
              clearInterval(renew);
            },
            async fallback() {
              if (done) return;
              done = true;
              clearInterval(renew);
              await redis.idsyncDocStoredAndRelease(stored.key, key, docKey, sha256, token);
            },
          };
        },
        async release() {
          if (done || deferred) return;
          done = true;
          clearInterval(renew);
          await redis.idsyncDocRelease(key, token);
        },
      },
    };
  }

}

export interface RowCheck {
  resultsKey: string;
  metaKey: string;
  row: number;
}

export type ClaimResult =
  | { state: 'stored'; sha256: string }
  | { state: 'busy' }
  | { state: 'claimed'; lock: ClaimedDocument }
  /** The row already has a final result (not failed or rejected): nothing to do. */
  | { state: 'prior'; prior: RowResult }
  /** The run stopped on a fatal error. */
  | { state: 'fatal'; fatal: string };

/** A document lock held by this job. */
export interface ClaimedDocument {
  /** Releases the lock (does nothing once deferStored was called). */
  release(): Promise<void>;
  /**
   * Records the document as stored (for every worker) and releases the lock, left to the step
   * that records the row's result (RunStore.setResult with `commit`), so both happen in one Redis
   * call. The lock stays held and renewed until then.
   */
  deferStored(sha256: string): DeferredStored;
}

/** What RunStore.setResult needs to record a document as stored and release its lock. */
export interface StoredCommit {
  storedKey: string;
  docKey: string;
  sha256: string;
  lockKey: string;
  token: string;
}

export interface DeferredStored {
  commit: StoredCommit;
  /** The commit went through: stop renewing the lock. */
  settled(): void;
  /** The commit failed: record and release on their own (best effort; Redis may be down). */
  fallback(): Promise<void>;
}

/**
 * Documents stored through this Redis, by any worker on any machine: the shared counterpart of
 * each machine's ledger, so a worker never re-sends what a colleague already stored.
 */
export class StoredDocuments {
  readonly #redis: Redis;
  readonly #key: string;
  constructor(redis: Redis, api: string) {
    this.#redis = redis;
    this.#key = `${QUEUE_PREFIX}:stored:${api}`;
  }
  /** The Redis hash holding them (for scripts that check or write it atomically with a lock). */
  get key(): string {
    return this.#key;
  }
  async get(docKey: string): Promise<string | undefined> {
    return (await this.#redis.hget(this.#key, docKey)) ?? undefined;
  }
}
