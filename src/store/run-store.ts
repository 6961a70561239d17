import type { Redis } from 'ioredis';
import { emptyCounts, type RowResult, type StatusCounts, type StoredRowStatus } from '../report/row-result.ts';
import { RUN_TTL_SECONDS, type ApiKeys, type RunKeys } from './keys.ts';
import { rowCommands, scriptAnswer, STATUS_CODE } from './row-scripts.ts';
import { RunStats } from './run-stats.ts';
import { TurnBatcher } from './turn-batcher.ts';

/** Where a run is in its life (`idsync runs`). */
export type RunState = 'running' | 'stopped' | 'done' | 'cancelled';

export interface RunOwner {
  host: string;
  pid: number;
  /** Last heartbeat, epoch ms. */
  at: number;
}

/** A run's owner renews its heartbeat every few seconds while it runs; one older than this has died. */
export const OWNER_STALE_MS = 60_000;

/** Whether the process that owns a running run is alive, as far as its heartbeat tells. */
export function ownerAlive(meta: Pick<RunMeta, 'owner'>, now: number): boolean {
  return meta.owner !== undefined && now - meta.owner.at < OWNER_STALE_MS;
}

export interface RunMeta {
  runId: string;
  command: string;
  apiUrl: string;
  /** What the run works from: the manifest, the watched folder, the archive's faces file. */
  input: string;
  inputSha256?: string;
  createdAt: number;
  /** Start of the latest invocation. */
  startedAt?: number;
  endedAt?: number;
  /** Rows of the run, once known. */
  total?: number;
  state: RunState;
  /** Set when a fatal error (credentials refused, certificate) stopped the run. */
  fatal?: string;
  fatalCode?: string;
  /** Rows are 1..total (a manifest); watch runs name rows by hashes and are not dense. */
  dense: boolean;
  owner?: RunOwner;
  reportDir?: string;
  /** Rows of this invocation that the API refused (401/403): see stopIfRefused. Reset by saveMeta. */
  refusedRows?: number;
}

/** A document to record as stored together with a row's result (see DocumentClaim.commit). */
export interface StoredCommit {
  bucketKey: string;
  field: Buffer;
  value: Buffer;
  lockKey: string;
  token: string;
}

/** Results recorded together at most (one Redis call). */
export const RESULTS_PER_CALL = 64;
/** Rows of a dense run above this have no status bits (a bit field holds 2^32 bits; see row-scripts.ts). */
const MAX_DENSE_ROW = 1_000_000_000;
const NUMERIC = new Set(['createdAt', 'startedAt', 'endedAt', 'total', 'refusedRows']);

function metaFromHash(raw: Record<string, string>): RunMeta | undefined {
  if (!raw.runId) return undefined;
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) {
    if (NUMERIC.has(k)) meta[k] = Number(v);
    else if (k === 'dense') meta[k] = v === '1';
    else if (k === 'owner') meta[k] = JSON.parse(v) as RunOwner;
    else meta[k] = v;
  }
  return meta as unknown as RunMeta;
}

function metaToHash(meta: Partial<RunMeta>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(meta)) {
    if (v === undefined) continue;
    if (k === 'dense') out[k] = v ? '1' : '0';
    else if (k === 'owner') out[k] = JSON.stringify(v);
    else out[k] = String(v);
  }
  return out;
}

/**
 * A run's state in Redis: its metadata and each row's result. This, not BullMQ's job list, is
 * what waiting, resuming and the report read: a job is removed once done. A result stays as JSON
 * until the report has written it; then only its status stays (3 bits per row), which is all a
 * rerun needs to skip the row: a million-row run keeps well under a megabyte.
 */
export class RunStore {
  readonly runId: string;
  readonly keys: RunKeys;
  /** Retries, throttles, error classes and the timeline (`idsync status`); every recorded result is noted there. */
  readonly stats: RunStats;
  readonly #redis: Redis;
  readonly #api: ApiKeys;

  constructor(redis: Redis, api: ApiKeys, runId: string) {
    this.#redis = redis;
    this.#api = api;
    this.runId = runId;
    this.keys = api.run(runId);
    this.stats = new RunStats(redis, this.keys);
  }

  async getMeta(): Promise<RunMeta | undefined> {
    return metaFromHash(await this.#redis.hgetall(this.keys.meta));
  }

  /** Writes the whole meta (fields it lacks are removed), lists the run, and keeps its keys alive. */
  async saveMeta(meta: RunMeta): Promise<void> {
    const tx = this.#redis.multi().del(this.keys.meta).hset(this.keys.meta, metaToHash(meta)).zadd(this.#api.runs, String(meta.startedAt ?? meta.createdAt), this.runId);
    this.#expireAll(tx);
    await tx.exec().then(throwOnExecError);
  }

  /** Changes some fields (`undefined` removes one) and keeps the keys alive. */
  async updateMeta(patch: Partial<RunMeta>): Promise<void> {
    const tx = this.#redis.multi();
    const set = metaToHash(patch);
    if (Object.keys(set).length > 0) tx.hset(this.keys.meta, set);
    const removed = Object.entries(patch).filter(([, v]) => v === undefined).map(([k]) => k);
    if (removed.length > 0) tx.hdel(this.keys.meta, ...removed);
    this.#expireAll(tx);
    await tx.exec().then(throwOnExecError);
  }

  #expireAll(tx: ReturnType<Redis['multi']>): void {
    for (const key of Object.values(this.keys)) tx.expire(key, RUN_TTL_SECONDS);
  }

  /** The first fatal error wins; jobs of the run refuse to start from then on. */
  async setFatal(message: string, code: string): Promise<void> {
    if (await this.#redis.hsetnx(this.keys.meta, 'fatal', message)) await this.#redis.hset(this.keys.meta, 'fatalCode', code);
  }

  /** Counts a row the API refused (401/403); returns how many were, and how many rows succeeded or were skipped. */
  async noteRefusedRow(): Promise<{ refused: number; worked: number }> {
    const replies = await this.#redis.multi().hincrby(this.keys.meta, 'refusedRows', 1).hmget(this.keys.counts, 'succeeded', 'skipped').exec();
    throwOnExecError(replies);
    const refused = Number(replies![0]![1]);
    const [succeeded, skipped] = replies![1]![1] as Array<string | null>;
    return { refused, worked: Number(succeeded ?? 0) + Number(skipped ?? 0) };
  }

  /**
   * Records a row's final result; the per-status counts move with it in the same step. With
   * `commit`, the row's document is recorded as stored and its lock released in that step too.
   * Results recorded by concurrent jobs in the same turn of the event loop go to Redis together
   * (TurnBatcher); if the call fails, each of them fails.
   */
  record(result: RowResult, commit?: StoredCommit): Promise<void> {
    return this.#results.call({ result, commit });
  }

  readonly #results = new TurnBatcher<{ result: RowResult; commit?: StoredCommit | undefined }, void>((batch) => this.#record(batch), RESULTS_PER_CALL);

  /** Records results at once (rows an enqueue pass rejects, say); fails if any of them failed. */
  async recordAll(results: RowResult[]): Promise<void> {
    for (let i = 0; i < results.length; i += RESULTS_PER_CALL) {
      const answers = await this.#record(results.slice(i, i + RESULTS_PER_CALL).map((result) => ({ result })));
      const failed = answers.find((a) => a instanceof Error);
      if (failed) throw failed;
    }
  }

  async #record(entries: Array<{ result: RowResult; commit?: StoredCommit | undefined }>): Promise<Array<undefined | Error>> {
    const k = this.keys;
    const keys = [k.results, k.counts, k.status, k.meta];
    const args: Array<string | Buffer> = [];
    for (const { result, commit } of entries) {
      keys.push(commit?.bucketKey ?? k.results, commit?.lockKey ?? k.results);
      args.push(String(result.row), JSON.stringify(result), result.status, String(STATUS_CODE[result.status]), commit?.field ?? '', commit?.value ?? '', commit?.token ?? '');
    }
    const answers = (await rowCommands(this.#redis).idsyncRecord(keys.length, ...keys, ...args)).map((a) => {
      const answer = scriptAnswer(a);
      return answer instanceof Error ? answer : undefined;
    });
    this.stats.noteResults(entries.filter((_, i) => answers[i] === undefined).map((e) => e.result));
    return answers;
  }

  /**
   * Before an invocation queues rows: which are settled (done by an earlier invocation), new, or
   * to be done again (their failed or rejected result is forgotten here; with recheckSettled, a
   * settled one's too).
   */
  async prepareRows(rows: number[], options: { recheckSettled?: boolean } = {}): Promise<Array<'settled' | 'new' | 'redo'>> {
    if (rows.length === 0) return [];
    const k = this.keys;
    return (await rowCommands(this.#redis).idsyncPrepare(4, k.results, k.counts, k.status, k.meta, options.recheckSettled ? '1' : '0', ...rows.map(String))) as Array<'settled' | 'new' | 'redo'>;
  }

  /**
   * What a job asks before it starts: a settled result of its row (return it), or a stopped run.
   * Jobs starting in the same turn of the event loop ask together (one script call, TurnBatcher).
   */
  async jobStart(row: number): Promise<{ prior?: RowResult; fatal?: string }> {
    return parseRowAnswer(row, await this.#starts.call(row));
  }

  readonly #starts = new TurnBatcher<number, string>((rows) => {
    const k = this.keys;
    return rowCommands(this.#redis).idsyncJobStart(k.results, k.status, k.meta, ...rows.map(String));
  }, RESULTS_PER_CALL);

  /**
   * The rows' results: as recorded, or for a retired row what its status bits say. Read-only
   * commands only (BITFIELD_RO; no script, no MULTI: Redis refuses both once it is out of memory,
   * and the report of a run that stopped for that must still be read). The status bits are read
   * before the results, in one pipeline: a row recorded in between then shows its JSON, and a row
   * retired in between still has its bits, so no row ever looks retired before it was.
   */
  async getResults(rows: number[]): Promise<Array<RowResult | undefined>> {
    if (rows.length === 0) return [];
    const k = this.keys;
    const dense = rows.filter((r) => r < MAX_DENSE_ROW);
    const p = this.#redis.pipeline();
    if (dense.length > 0) p.call('BITFIELD_RO', k.status, ...dense.flatMap((r) => ['GET', 'u3', `#${r}`]));
    p.hget(k.meta, 'dense').hmget(k.results, ...rows.map(String));
    const replies = await p.exec();
    if (!replies) throw new Error('Redis pipeline was aborted');
    for (const [err] of replies) if (err) throw err;
    const codes = new Map<number, number>();
    if (dense.length > 0) (replies[0]![1] as number[]).forEach((code, i) => codes.set(dense[i]!, code));
    const offset = dense.length > 0 ? 1 : 0;
    const isDense = replies[offset]![1] === '1';
    const raw = replies[offset + 1]![1] as Array<string | null>;
    return rows.map((row, i) => {
      const json = raw[i];
      if (json) return JSON.parse(json) as RowResult;
      const status = isDense ? statusOfCode(codes.get(row) ?? 0) : undefined;
      return status ? { row, status, action: 'done-earlier' } : undefined;
    });
  }

  /** Drops the JSON of rows the report has written (dense runs keep their status bits). */
  async retire(rows: number[]): Promise<void> {
    for (let i = 0; i < rows.length; i += 1000) await this.#redis.hdel(this.keys.results, ...rows.slice(i, i + 1000).map(String));
  }

  /** Forgets a row's result altogether (watch: its file has been moved aside). */
  async forget(result: RowResult): Promise<void> {
    const tx = this.#redis.multi().hdel(this.keys.results, String(result.row)).hincrby(this.keys.counts, result.status, -1);
    await tx.exec().then(throwOnExecError);
  }

  /** Results recorded so far, per status (one small hash). */
  async counts(): Promise<StatusCounts> {
    const raw = await this.#redis.hgetall(this.keys.counts);
    const out = emptyCounts();
    for (const [k, v] of Object.entries(raw)) if (k in STATUS_CODE) out[k as StoredRowStatus] = Number(v);
    return out;
  }

  /**
   * Export: each output belongs to the first row that names it, so two rows never write one file
   * (see OUTPUTS). Returns, for each claim that another row holds, that row's number.
   */
  async claimOutputs(claims: Array<{ row: number; output: string; stemOnly: boolean }>): Promise<Map<number, number>> {
    const taken = new Map<number, number>();
    if (claims.length === 0) return taken;
    const owners = await rowCommands(this.#redis).idsyncOutputs(this.keys.outputs, ...claims.flatMap((c) => [String(c.row), c.output, c.stemOnly ? '1' : '0']));
    claims.forEach((c, i) => {
      const owner = Number(owners[i]);
      if (owner !== c.row) taken.set(c.row, owner);
    });
    return taken;
  }
}

export function statusOfCode(code: number): StoredRowStatus | undefined {
  return (Object.keys(STATUS_CODE) as StoredRowStatus[]).find((s) => STATUS_CODE[s] === code);
}

/** Reads a JOB_START or CLAIM answer about the row: its settled result, or the run's fatal error. */
export function parseRowAnswer(row: number, answer: string): { prior?: RowResult; fatal?: string } {
  if (answer.startsWith('prior:')) return { prior: JSON.parse(answer.slice('prior:'.length)) as RowResult };
  if (answer.startsWith('priorcode:')) return { prior: { row, status: statusOfCode(Number(answer.slice('priorcode:'.length))) ?? 'succeeded', action: 'done-earlier' } };
  if (answer.startsWith('fatal:')) return { fatal: answer.slice('fatal:'.length) };
  return {};
}

function throwOnExecError(replies: Array<[Error | null, unknown]> | null): void {
  if (!replies) throw new Error('Redis transaction was aborted');
  for (const [err] of replies) if (err) throw err;
}
