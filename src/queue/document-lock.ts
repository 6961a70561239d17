import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { QUEUE_PREFIX } from './queue-names.ts';

const RELEASE = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end`;
const EXTEND = `if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('pexpire', KEYS[1], ARGV[2]) else return 0 end`;

/**
 * One upload of a given document at a time, across every worker sharing this Redis: two
 * manifest rows naming the same file for the same person must not race each other into two
 * stored copies. The lock lives only as long as the job lock (renewed while its holder works),
 * so a crashed holder blocks the document for seconds, not for the rest of the run.
 */
export class DocumentLocks {
  readonly #redis: Redis;
  readonly #api: string;
  readonly #ttlMs: number;

  constructor(redis: Redis, api: string, ttlMs = 30_000) {
    this.#redis = redis;
    this.#api = api;
    this.#ttlMs = ttlMs;
  }

  #key(docKey: string): string {
    return `${QUEUE_PREFIX}:lock:${this.#api}:${docKey}`;
  }

  /** Returns a release function, or undefined when another job holds the document. */
  async acquire(docKey: string): Promise<(() => Promise<void>) | undefined> {
    const token = randomUUID();
    const key = this.#key(docKey);
    const ok = await this.#redis.set(key, token, 'PX', this.#ttlMs, 'NX');
    if (ok !== 'OK') return undefined;
    const renew = setInterval(() => {
      this.#redis.eval(EXTEND, 1, key, token, String(this.#ttlMs)).catch(() => {});
    }, Math.max(250, Math.floor(this.#ttlMs / 3)));
    renew.unref();
    return async () => {
      clearInterval(renew);
      await this.#redis.eval(RELEASE, 1, key, token);
    };
  }
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
  async get(docKey: string): Promise<string | undefined> {
    return (await this.#redis.hget(this.#key, docKey)) ?? undefined;
  }
  async add(docKey: string, sha256: string): Promise<void> {
    await this.#redis.hset(this.#key, docKey, sha256);
  }
}
