import { randomBytes } from 'node:crypto';
import type { Redis } from 'ioredis';
import type { Logger } from '../log.ts';
import { apisKey, ApiKeys, apiKey } from './keys.ts';
import { RunStore, type RunMeta } from './run-store.ts';
import { StoredDocuments } from './stored-documents.ts';

/** Runs of one API listed at most (newest first). */
const RUNS_LISTED = 1000;

/** A process serving the API notes itself every ~10 s (WorkerPool); one silent this long is gone. */
export const WORKER_STALE_MS = 60_000;

/** What a process serving this API says of itself (its heartbeat). */
export interface WorkerInfo {
  /** The queues it serves: run ids, and `control`. */
  queues: string[];
  /** Jobs it finished. */
  processed: number;
  /** Last heartbeat, epoch ms. */
  at: number;
  /** The command it runs (`worker`, `import` …). */
  command?: string;
  startedAt?: number;
}

/**
 * Everything idsync keeps in Redis for one API: its runs, its stored documents, its settings.
 * Commands, the engine and job kinds reach Redis state through this object only (and BullMQ
 * through its `queuePrefix`).
 */
export class ApiStore {
  readonly keys: ApiKeys;
  readonly apiUrl: string;
  readonly documents: StoredDocuments;
  readonly redis: Redis;
  readonly #runs = new Map<string, RunStore>();

  constructor(redis: Redis, options: { apiUrl: string; root: string; lockTtlMs?: number; replicas?: number; log?: Logger }) {
    this.redis = redis;
    this.apiUrl = options.apiUrl;
    this.keys = new ApiKeys(options.root, apiKey(options.apiUrl));
    this.documents = new StoredDocuments(redis, this.keys, options.lockTtlMs, options.replicas ?? 0, options.log ? { log: options.log } : {});
  }

  /** BullMQ's prefix for this API's queues. */
  get queuePrefix(): string {
    return this.keys.queuePrefix;
  }

  run(runId: string): RunStore {
    let store = this.#runs.get(runId);
    if (!store) {
      store = new RunStore(this.redis, this.keys, runId);
      // Runs pass; a long-lived worker must not keep a store per run it ever served.
      if (this.#runs.size > 1000) this.#runs.clear();
      this.#runs.set(runId, store);
    }
    return store;
  }

  /**
   * Notes the API in the Redis-wide list, so `idsync runs` finds it without its settings.
   * Resolves to false when this Redis had never served the API (a new Redis, or a new prefix).
   */
  async register(): Promise<boolean> {
    return (await this.redis.hsetnx(apisKey(this.keys.root), this.keys.api, this.apiUrl)) === 0;
  }

  /**
   * The id of this Redis's state for the API, made on first use (SET NX, so concurrent first
   * uses agree). It never expires: it lives exactly as long as the stored-documents set it vouches for.
   */
  async epoch(): Promise<string> {
    const made = randomBytes(12).toString('base64url');
    const [, got] = (await this.redis.multi().set(this.keys.epoch, made, 'NX').get(this.keys.epoch).exec()) ?? [];
    const value = got?.[1];
    if (got?.[0] || typeof value !== 'string') throw got?.[0] ?? new Error('Redis did not answer GET of the state epoch');
    return value;
  }

  /** This API's runs, newest first, with their meta (runs whose meta expired are dropped from the list). */
  async listRuns(limit = RUNS_LISTED): Promise<RunMeta[]> {
    const ids = await this.redis.zrevrange(this.keys.runs, 0, limit - 1);
    const metas = await Promise.all(ids.map((id) => this.run(id).getMeta()));
    const gone = ids.filter((_, i) => metas[i] === undefined);
    if (gone.length > 0) await this.redis.zrem(this.keys.runs, ...gone);
    return metas.filter((m): m is RunMeta => m !== undefined);
  }

  /** A process serving this API says it is alive (`idsync status` lists them). */
  async noteWorker(id: string, info: WorkerInfo): Promise<void> {
    await this.redis.hset(this.keys.workers, id, JSON.stringify(info));
  }

  async forgetWorker(id: string): Promise<void> {
    await this.redis.hdel(this.keys.workers, id);
  }

  /** The processes serving this API, with their last heartbeat (stale ones are dropped). */
  async workers(now: number, staleMs = WORKER_STALE_MS): Promise<Array<WorkerInfo & { id: string }>> {
    const raw = await this.redis.hgetall(this.keys.workers);
    const out: Array<WorkerInfo & { id: string }> = [];
    const stale: string[] = [];
    for (const [id, text] of Object.entries(raw)) {
      try {
        const info = JSON.parse(text) as WorkerInfo;
        if (now - info.at > staleMs) stale.push(id);
        else out.push({ id, ...info });
      } catch {
        stale.push(id);
      }
    }
    if (stale.length > 0) await this.redis.hdel(this.keys.workers, ...stale);
    return out;
  }

  /** The most requests per second across all workers of this API, when a command set one. */
  async rateLimit(): Promise<number | undefined> {
    const raw = await this.redis.hget(this.keys.limits, 'rate');
    const n = raw === null ? Number.NaN : Number(raw);
    return Number.isFinite(n) && n > 0 ? n : undefined;
  }

  async setRateLimit(rate: number | undefined): Promise<void> {
    if (rate === undefined) await this.redis.hdel(this.keys.limits, 'rate');
    else await this.redis.hset(this.keys.limits, 'rate', String(rate));
  }
}

/** Every API this Redis has served: api key → URL. */
export async function knownApis(redis: Redis, root: string): Promise<Record<string, string>> {
  return redis.hgetall(apisKey(root));
}
