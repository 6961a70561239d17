import type { Redis } from 'ioredis';
import type { RowResult } from '../report/row-result.ts';
import { QUEUE_PREFIX } from './queue-names.ts';

export interface RunMeta {
  runId: string;
  command: string;
  apiUrl: string;
  manifest: string;
  manifestSha256: string;
  createdAt: number;
  /** Rows the manifest holds, once the enqueue pass has finished. */
  total?: number;
  /** Set when a fatal error (credentials refused, certificate) stopped the run. */
  fatal?: string;
  fatalCode?: string;
}

/** Runs are kept this long after their last activity, so a rerun weeks later still resumes. */
const RUN_TTL_SECONDS = 30 * 24 * 3600;

/**
 * A run's state in Redis: its metadata and one final result per manifest row. This, not the
 * BullMQ job list, is what waiting, resuming and the report read: jobs are removed once done.
 */
export class RunStore {
  readonly runId: string;
  readonly #redis: Redis;
  readonly #metaKey: string;
  readonly #resultsKey: string;

  constructor(redis: Redis, runId: string) {
    this.#redis = redis;
    this.runId = runId;
    this.#metaKey = `${QUEUE_PREFIX}:run:${runId}:meta`;
    this.#resultsKey = `${QUEUE_PREFIX}:run:${runId}:results`;
  }

  async getMeta(): Promise<RunMeta | undefined> {
    const raw = await this.#redis.get(this.#metaKey);
    return raw ? (JSON.parse(raw) as RunMeta) : undefined;
  }

  async saveMeta(meta: RunMeta): Promise<void> {
    await this.#redis.set(this.#metaKey, JSON.stringify(meta), 'EX', RUN_TTL_SECONDS);
    await this.#redis.expire(this.#resultsKey, RUN_TTL_SECONDS);
  }

  async setFatal(message: string, code: string): Promise<void> {
    const meta = await this.getMeta();
    if (meta && !meta.fatal) await this.saveMeta({ ...meta, fatal: message, fatalCode: code });
  }

  async setResult(result: RowResult): Promise<void> {
    await this.#redis.hset(this.#resultsKey, String(result.row), JSON.stringify(result));
  }

  async setResults(results: RowResult[]): Promise<void> {
    if (results.length === 0) return;
    const args: string[] = [];
    for (const r of results) args.push(String(r.row), JSON.stringify(r));
    await this.#redis.hset(this.#resultsKey, ...args);
  }

  async getResult(row: number): Promise<RowResult | undefined> {
    const raw = await this.#redis.hget(this.#resultsKey, String(row));
    return raw ? (JSON.parse(raw) as RowResult) : undefined;
  }

  /** What a job needs before it starts, in one round trip: the row's result so far and whether the run stopped. */
  async jobStart(row: number): Promise<{ prior: RowResult | undefined; fatal: string | undefined }> {
    const replies = await this.#redis.pipeline().hget(this.#resultsKey, String(row)).get(this.#metaKey).exec();
    if (!replies) throw new Error('Redis pipeline was aborted');
    for (const [err] of replies) if (err) throw err;
    const [rawResult, rawMeta] = [replies[0]![1] as string | null, replies[1]![1] as string | null];
    return {
      prior: rawResult ? (JSON.parse(rawResult) as RowResult) : undefined,
      fatal: rawMeta ? (JSON.parse(rawMeta) as RunMeta).fatal : undefined,
    };
  }

  async getResults(rows: number[]): Promise<Array<RowResult | undefined>> {
    if (rows.length === 0) return [];
    const raw = await this.#redis.hmget(this.#resultsKey, ...rows.map(String));
    return raw.map((r) => (r ? (JSON.parse(r) as RowResult) : undefined));
  }

  async deleteResults(rows: number[]): Promise<void> {
    if (rows.length > 0) await this.#redis.hdel(this.#resultsKey, ...rows.map(String));
  }

  async countResults(): Promise<number> {
    return this.#redis.hlen(this.#resultsKey);
  }

  /** Counts per status, read in pages so a million-row run does not load at once. */
  async countByStatus(): Promise<Record<string, number>> {
    const counts: Record<string, number> = {};
    let cursor = '0';
    do {
      const [next, flat] = await this.#redis.hscan(this.#resultsKey, cursor, 'COUNT', 1000);
      cursor = next;
      for (let i = 1; i < flat.length; i += 2) {
        const status = (JSON.parse(flat[i]!) as RowResult).status;
        counts[status] = (counts[status] ?? 0) + 1;
      }
    } while (cursor !== '0');
    return counts;
  }
}
