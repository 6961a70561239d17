import type { Redis } from 'ioredis';
import type { RowResult } from '../report/row-result.ts';
import type { Queue } from 'bullmq';
import { jobIdFor, QUEUE_PREFIX } from './queue-names.ts';
import type { StoredCommit } from './document-lock.ts';
import { scriptAnswer, TurnBatcher } from './turn-batcher.ts';

/**
 * Records rows' final results, several at once. KEYS: results, counts, then per result the stored
 * documents hash and the document lock (both unused by a result without a document to commit).
 * ARGV per result: row, result JSON, status, docKey ('' when none), sha256, lock token. A row
 * whose upload finished is recorded as stored, its lock released and its result recorded in one
 * step.
 */
const RESULTS = `local function record(i, a)
  if ARGV[a + 4] ~= '' then
    redis.call('hset', KEYS[3 + i * 2], ARGV[a + 4], ARGV[a + 5])
    if redis.call('get', KEYS[4 + i * 2]) == ARGV[a + 6] then redis.call('del', KEYS[4 + i * 2]) end
  end
  redis.call('hset', KEYS[1], ARGV[a + 1], ARGV[a + 2])
  redis.call('hincrby', KEYS[2], ARGV[a + 3], 1)
  return 'ok'
end
-- Each result on its own: one that fails (out of memory, say) answers 'error:…' and the others stand.
local out = {}
for i = 0, (#ARGV) / 6 - 1 do
  local ok, err = pcall(record, i, i * 6)
  if ok then out[#out + 1] = 'ok' else out[#out + 1] = 'error:' .. tostring(err) end
end
return out`;

interface RunStoreCommands {
  idsyncResults(numberOfKeys: number, ...keysAndArgs: string[]): Promise<string[]>;
}

/** The script as an ioredis command (sent by SHA), defined once per connection (see lockCommands). */
export function runStoreCommands(redis: Redis): RunStoreCommands {
  const r = redis as Redis & Partial<RunStoreCommands>;
  if (!r.idsyncResults) redis.defineCommand('idsyncResults', { lua: RESULTS });
  return r as Redis & RunStoreCommands;
}

/** Results recorded together at most (one Redis call). */
export const RESULTS_PER_CALL = 64;

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
  readonly #countsKey: string;
  readonly #outputsKey: string;

  constructor(redis: Redis, runId: string) {
    this.#redis = redis;
    this.runId = runId;
    this.#metaKey = `${QUEUE_PREFIX}:run:${runId}:meta`;
    this.#resultsKey = `${QUEUE_PREFIX}:run:${runId}:results`;
    this.#countsKey = `${QUEUE_PREFIX}:run:${runId}:counts`;
    this.#outputsKey = `${QUEUE_PREFIX}:run:${runId}:outputs`;
  }

  /** Keys for scripts that check a row atomically with other work (DocumentLocks.claim). */
  get resultsKey(): string {
    return this.#resultsKey;
  }
  get metaKey(): string {
    return this.#metaKey;
  }

  async getMeta(): Promise<RunMeta | undefined> {
    const raw = await this.#redis.get(this.#metaKey);
    return raw ? (JSON.parse(raw) as RunMeta) : undefined;
  }

  async saveMeta(meta: RunMeta): Promise<void> {
    await this.#redis.set(this.#metaKey, JSON.stringify(meta), 'EX', RUN_TTL_SECONDS);
    await this.#redis.expire(this.#resultsKey, RUN_TTL_SECONDS);
    await this.#redis.expire(this.#countsKey, RUN_TTL_SECONDS);
    await this.#redis.expire(this.#outputsKey, RUN_TTL_SECONDS);
  }

  /**
   * Export: each output path belongs to the first row that names it, so two rows never write
   * one file. Returns, for each claim that another row holds, that row's number.
   */
  async claimOutputs(claims: Array<{ row: number; output: string }>): Promise<Map<number, number>> {
    const taken = new Map<number, number>();
    if (claims.length === 0) return taken;
    const tx = this.#redis.multi();
    for (const c of claims) tx.hsetnx(this.#outputsKey, c.output, String(c.row));
    for (const c of claims) tx.hget(this.#outputsKey, c.output);
    const replies = (await tx.exec()) ?? [];
    claims.forEach((c, i) => {
      const owner = Number(replies[claims.length + i]?.[1]);
      if (owner !== c.row) taken.set(c.row, owner);
    });
    return taken;
  }

  async setFatal(message: string, code: string): Promise<void> {
    const meta = await this.getMeta();
    if (meta && !meta.fatal) await this.saveMeta({ ...meta, fatal: message, fatalCode: code });
  }

  /**
   * Records a row's final result; per-status counts move with it in the same step. With `commit`,
   * the row's document is recorded as stored and its lock released in the same step too.
   *
   * Results recorded by concurrent jobs in the same turn of the event loop go to Redis together,
   * in one call of at most RESULTS_PER_CALL (TurnBatcher); if it fails, each of them fails, and
   * each job handles that as before (ResultNotRecordedError: retried, the upload in doubt).
   */
  setResult(result: RowResult, commit?: StoredCommit): Promise<void> {
    return this.#results.call({ result, commit });
  }

  readonly #results = new TurnBatcher<{ result: RowResult; commit?: StoredCommit | undefined }, void>((batch) => this.#record(batch), RESULTS_PER_CALL);

  /** Records results at once (the rows an enqueue pass rejects, say); fails if any of them failed. */
  async setResults(results: RowResult[]): Promise<void> {
    if (results.length === 0) return;
    const failed = (await this.#record(results.map((result) => ({ result })))).find((a) => a instanceof Error);
    if (failed) throw failed;
  }

  /** One call of the RESULTS script; an Error in the answers for each entry that failed. */
  async #record(entries: Array<{ result: RowResult; commit?: StoredCommit | undefined }>): Promise<Array<undefined | Error>> {
    const keys = [this.#resultsKey, this.#countsKey];
    const args: string[] = [];
    for (const { result, commit } of entries) {
      keys.push(commit?.storedKey ?? this.#resultsKey, commit?.lockKey ?? this.#resultsKey);
      args.push(String(result.row), JSON.stringify(result), result.status, commit?.docKey ?? '', commit?.sha256 ?? '', commit?.token ?? '');
    }
    const answers = await runStoreCommands(this.#redis).idsyncResults(keys.length, ...keys, ...args);
    return answers.map((a) => {
      const answer = scriptAnswer(a);
      return answer instanceof Error ? answer : undefined;
    });
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

  /** Forgets results so their rows are done again; `previous` are those results, for the counts. */
  async deleteResults(previous: RowResult[]): Promise<void> {
    if (previous.length === 0) return;
    const tx = this.#redis.multi();
    tx.hdel(this.#resultsKey, ...previous.map((r) => String(r.row)));
    for (const r of previous) tx.hincrby(this.#countsKey, r.status, -1);
    await tx.exec();
  }

  /** Results recorded so far, per status (cheap: one small hash). */
  async counts(): Promise<Record<string, number>> {
    const raw = await this.#redis.hgetall(this.#countsKey);
    const out: Record<string, number> = {};
    for (const [k, v] of Object.entries(raw)) out[k] = Number(v);
    return out;
  }

  async countResults(): Promise<number> {
    return this.#redis.hlen(this.#resultsKey);
  }

  /**
   * Whether some of `rows` lacks a result yet still has its job in the queue (waiting, delayed,
   * active…). Looks only at this run's own job ids, since other runs and schedules share the
   * queue, and stops at the first job found, so the common case costs a request or two.
   */
  async anyRowQueued(queue: Queue, rows: Iterable<number>): Promise<boolean> {
    const check = async (chunk: number[]) => {
      const results = await this.getResults(chunk);
      for (let i = 0; i < chunk.length; i++) {
        if (!results[i] && (await queue.getJob(jobIdFor(this.runId, chunk[i]!)))) return true;
      }
      return false;
    };
    let chunk: number[] = [];
    for (const row of rows) {
      chunk.push(row);
      if (chunk.length === 1000) {
        if (await check(chunk)) return true;
        chunk = [];
      }
    }
    return chunk.length > 0 && check(chunk);
  }
}
