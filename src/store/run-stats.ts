import type { Redis } from 'ioredis';
import type { RowResult, RowStatus } from '../report/row-result.ts';
import { RUN_TTL_SECONDS, type RunKeys } from './keys.ts';
import { TurnBatcher } from './turn-batcher.ts';

/**
 * What `idsync status` and the dashboard show of a run beyond its counts: retries, 429 throttles,
 * error classes with one example row each, and a timeline of rows done per minute. Bounded
 * whatever the run's length: at most MAX_ERROR_CLASSES classes (one example each, its error
 * already cut to a few hundred characters) and TIMELINE_MINUTES buckets of four numbers.
 *
 * Advisory only: nothing decides anything on these numbers, so they are written after the fact,
 * batched per turn of the event loop (one Redis call for all jobs that finished in that turn),
 * and a failed write is dropped rather than failing a job.
 */

/** Minutes of the timeline kept: a day, one bucket a minute. */
export const TIMELINE_MINUTES = 24 * 60;
/** Error classes counted at most; later ones are counted as E_OTHER (the codes are a short fixed list, so this is a safety net). */
export const MAX_ERROR_CLASSES = 32;
const OTHER = 'E_OTHER';

/** The row of an error class's example, as the report would show it (no payload, no secrets: the error text is scrubbed and cut). */
export type ErrorExample = Pick<RowResult, 'row' | 'status' | 'action' | 'error' | 'errorCode' | 'httpStatus' | 'personId' | 'faceId' | 'detectionId' | 'documentId' | 'file' | 'output' | 'attempts' | 'finishedAt'>;

export interface ErrorClass {
  code: string;
  /** Rows that failed for good with it. */
  failed: number;
  /** Rows rejected with it (never tried). */
  rejected: number;
  /** Attempts that failed with it and were tried again. */
  retried: number;
  example?: ErrorExample;
}

export interface RunStatsView {
  /** Start of the invocation these numbers are about (epoch ms). */
  since?: number;
  retries: number;
  throttles: number;
  /** Most rows first, then most retries. */
  classes: ErrorClass[];
}

/** One minute of the timeline. */
export interface MinuteCounts {
  /** Epoch minutes (ms / 60000). */
  minute: number;
  /** Rows finished succeeded or skipped by a job. */
  done: number;
  failed: number;
  retries: number;
  throttles: number;
}

export type StatsEvent = { type: 'result'; result: RowResult } | { type: 'retry'; code: string; at: number } | { type: 'throttle'; at: number };

/**
 * KEYS stats, timeline. ARGV[1] a JSON object: ttl (s), keep (minutes), max (classes), minutes
 * {minute: [done, failed, retries, throttles]}, classes [{code, f: failed, j: rejected, r: retried, x: example JSON}].
 */
const NOTE = `
local d = cjson.decode(ARGV[1])
local latest
for minute, add in pairs(d.minutes) do
  local raw = redis.call('hget', KEYS[2], minute)
  local v = {0, 0, 0, 0}
  if raw then
    local i = 1
    for n in string.gmatch(raw, '%d+') do v[i] = tonumber(n); i = i + 1 end
  end
  for i = 1, 4 do v[i] = v[i] + add[i] end
  redis.call('hset', KEYS[2], minute, table.concat(v, ' '))
  if not latest or tonumber(minute) > latest then latest = tonumber(minute) end
end
-- More than a day of minutes (a new minute came): forget those older than a day before the latest.
if latest and redis.call('hlen', KEYS[2]) > d.keep then
  for _, f in ipairs(redis.call('hkeys', KEYS[2])) do
    if tonumber(f) <= latest - d.keep then redis.call('hdel', KEYS[2], f) end
  end
end
for _, c in ipairs(d.classes) do
  local code = c.code
  if redis.call('hexists', KEYS[1], 'f:' .. code) == 0 then
    if tonumber(redis.call('hget', KEYS[1], 'classes') or '0') >= d.max then code = '${OTHER}'
    else redis.call('hincrby', KEYS[1], 'classes', 1) end
    redis.call('hsetnx', KEYS[1], 'f:' .. code, 0)
  end
  if c.f > 0 then redis.call('hincrby', KEYS[1], 'f:' .. code, c.f) end
  if c.j > 0 then redis.call('hincrby', KEYS[1], 'j:' .. code, c.j) end
  if c.r > 0 then redis.call('hincrby', KEYS[1], 'r:' .. code, c.r) end
  if c.x ~= '' then redis.call('hsetnx', KEYS[1], 'x:' .. code, c.x) end
end
if d.retries > 0 then redis.call('hincrby', KEYS[1], 'retries', d.retries) end
if d.throttles > 0 then redis.call('hincrby', KEYS[1], 'throttles', d.throttles) end
redis.call('expire', KEYS[1], d.ttl)
redis.call('expire', KEYS[2], d.ttl)
return 'ok'`;

interface StatsCommands {
  idsyncNoteStats(stats: string, timeline: string, data: string): Promise<string>;
}

/** Defines the script on a connection (RedisHandle.connect does it before the first command: see rowCommands). */
export function statsCommands(redis: Redis): Redis & StatsCommands {
  const r = redis as Redis & Partial<StatsCommands>;
  if (!r.idsyncNoteStats) redis.defineCommand('idsyncNoteStats', { numberOfKeys: 2, lua: NOTE });
  return r as Redis & StatsCommands;
}

const isBad = (status: RowStatus) => status === 'failed' || status === 'rejected';

function example(r: RowResult): ErrorExample {
  const { row, status, action, error, errorCode, httpStatus, personId, faceId, detectionId, documentId, file, output, attempts, finishedAt } = r;
  const out: Record<string, unknown> = { row, status, action, error, errorCode, httpStatus, personId, faceId, detectionId, documentId, file, output, attempts, finishedAt };
  for (const k of Object.keys(out)) if (out[k] === undefined) delete out[k];
  return out as unknown as ErrorExample;
}

/** Folds a batch of events into the increments the script applies (one call, whatever the batch). */
export function foldEvents(events: StatsEvent[]): { minutes: Record<string, number[]>; classes: Array<{ code: string; f: number; j: number; r: number; x: string }>; retries: number; throttles: number } {
  const minutes: Record<string, number[]> = {};
  const classes = new Map<string, { code: string; f: number; j: number; r: number; x: string }>();
  let retries = 0;
  let throttles = 0;
  const bump = (at: number | undefined, slot: number) => {
    if (at === undefined || !Number.isFinite(at)) return;
    const m = String(Math.floor(at / 60_000));
    (minutes[m] ??= [0, 0, 0, 0])[slot]! += 1;
  };
  const cls = (code: string) => {
    let c = classes.get(code);
    if (!c) classes.set(code, (c = { code, f: 0, j: 0, r: 0, x: '' }));
    return c;
  };
  for (const e of events) {
    if (e.type === 'retry') {
      retries++;
      cls(e.code).r++;
      bump(e.at, 2);
    } else if (e.type === 'throttle') {
      throttles++;
      bump(e.at, 3);
    } else {
      const r = e.result;
      // A rejected row was never tried: it is no work done per minute, only an error class.
      if (r.status !== 'rejected') bump(r.finishedAt, r.status === 'failed' ? 1 : 0);
      if (isBad(r.status)) {
        const c = cls(r.errorCode ?? 'E_UNKNOWN');
        if (r.status === 'failed') c.f++;
        else c.j++;
        if (c.x === '') c.x = JSON.stringify(example(r));
      }
    }
  }
  return { minutes, classes: [...classes.values()], retries, throttles };
}

/** The stats of one run (see the file comment). */
export class RunStats {
  readonly #redis: Redis;
  readonly #keys: RunKeys;
  readonly #batch: TurnBatcher<StatsEvent, void>;

  constructor(redis: Redis, keys: RunKeys) {
    this.#redis = redis;
    this.#keys = keys;
    this.#batch = new TurnBatcher<StatsEvent, void>(async (events) => {
      await this.#write(events);
      return events.map(() => undefined);
    }, 256);
  }

  /** Notes what happened; never fails and never waits for Redis (see the file comment). */
  note(event: StatsEvent): void {
    this.#batch.call(event).catch(() => undefined);
  }

  noteResults(results: RowResult[]): void {
    for (const result of results) this.note({ type: 'result', result });
  }

  noteRetry(code: string, at: number): void {
    this.note({ type: 'retry', code, at });
  }

  noteThrottle(at: number): void {
    this.note({ type: 'throttle', at });
  }

  async #write(events: StatsEvent[]): Promise<void> {
    const fold = foldEvents(events);
    const data = JSON.stringify({ ttl: RUN_TTL_SECONDS, keep: TIMELINE_MINUTES, max: MAX_ERROR_CLASSES, ...fold });
    await statsCommands(this.#redis).idsyncNoteStats(this.#keys.stats, this.#keys.timeline, data);
  }

  /** A new invocation starts counting retries, throttles and error classes afresh (the timeline goes on). */
  async reset(since: number): Promise<void> {
    await this.#redis.multi().del(this.#keys.stats).hset(this.#keys.stats, 'since', String(since)).expire(this.#keys.stats, RUN_TTL_SECONDS).exec();
  }

  async read(): Promise<RunStatsView> {
    const raw = await this.#redis.hgetall(this.#keys.stats);
    const classes = new Map<string, ErrorClass>();
    const cls = (code: string) => {
      let c = classes.get(code);
      if (!c) classes.set(code, (c = { code, failed: 0, rejected: 0, retried: 0 }));
      return c;
    };
    for (const [field, value] of Object.entries(raw)) {
      const m = /^([fjrx]):(.+)$/.exec(field);
      if (!m) continue;
      const c = cls(m[2]!);
      if (m[1] === 'f') c.failed = Number(value);
      else if (m[1] === 'j') c.rejected = Number(value);
      else if (m[1] === 'r') c.retried = Number(value);
      else {
        try {
          c.example = JSON.parse(value) as ErrorExample;
        } catch {
          // an unreadable example is left out
        }
      }
    }
    const sorted = [...classes.values()].sort((a, b) => b.failed + b.rejected - (a.failed + a.rejected) || b.retried - a.retried || a.code.localeCompare(b.code));
    return {
      ...(raw.since ? { since: Number(raw.since) } : {}),
      retries: Number(raw.retries ?? 0),
      throttles: Number(raw.throttles ?? 0),
      classes: sorted,
    };
  }

  /** The timeline, oldest minute first; only minutes at or after `fromMinute` when given (HMGET of a few minutes, or the whole day). */
  async timeline(fromMinute?: number, toMinute?: number): Promise<MinuteCounts[]> {
    let entries: Array<[string, string | null]>;
    if (fromMinute !== undefined && toMinute !== undefined && toMinute - fromMinute < 120) {
      const fields: string[] = [];
      for (let m = fromMinute; m <= toMinute; m++) fields.push(String(m));
      const values = await this.#redis.hmget(this.#keys.timeline, ...fields);
      entries = fields.map((f, i) => [f, values[i] ?? null]);
    } else {
      entries = Object.entries(await this.#redis.hgetall(this.#keys.timeline));
    }
    const out: MinuteCounts[] = [];
    for (const [field, value] of entries) {
      if (value === null) continue;
      const minute = Number(field);
      if (fromMinute !== undefined && minute < fromMinute) continue;
      if (toMinute !== undefined && minute > toMinute) continue;
      const [done = 0, failed = 0, retries = 0, throttles = 0] = value.split(' ').map(Number);
      out.push({ minute, done, failed, retries, throttles });
    }
    return out.sort((a, b) => a.minute - b.minute);
  }
}
