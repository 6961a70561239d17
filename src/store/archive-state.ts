import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { FileError } from '../errors.ts';
import { writeTemp } from '../outputs/archive-files.ts';
import { RUN_TTL_SECONDS, type ArchiveKeys, type RunKeys } from './keys.ts';

/** Where the archive folder keeps its own copy of the watermarks. */
export const WATERMARK_FILE = '.idsync-archive.json';

export interface PersonMark {
  /** Start of this person's very first window (so a failed first run is retried from there, not from a later start). */
  startMs?: number;
  /** Inclusive end of the last window that succeeded completely. */
  watermarkMs?: number;
}

interface WatermarkFile {
  version: 1;
  persons: Record<string, PersonMark & { watermark?: string }>;
}

/** Sets the field to the larger of its value and ARGV[2]: a watermark never moves back, whoever writes last. */
const MAX_SCRIPT = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if (not cur) or tonumber(cur) < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return 1
end
return 0`;

/** In-process queue per file: concurrent jobs of one worker must not interleave their rewrites. */
const fileChains = new Map<string, Promise<unknown>>();

function later(a: number | undefined, b: number | undefined): number | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return Math.max(a, b);
}

/**
 * Per-person detection watermarks, in Redis AND in `<out>/.idsync-archive.json`. The folder's
 * record decides whether a window was archived (a wiped folder gets its history again; a folder
 * moved to another machine or Redis goes on from its own record); when both know a person, the
 * later watermark wins. The file is rewritten atomically (temp +
 * rename), merging with what it held, so it only ever moves forward too.
 */
export class WatermarkStore {
  readonly #redis: Redis;
  readonly #marksKey: string;
  readonly #startsKey: string;
  readonly #file: string;

  constructor(redis: Redis, keys: ArchiveKeys, outDir: string) {
    this.#redis = redis;
    this.#marksKey = keys.watermarks;
    this.#startsKey = keys.starts;
    this.#file = path.join(outDir, WATERMARK_FILE);
  }

  async get(personId: string): Promise<PersonMark> {
    const [[, mark], [, start]] = (await this.#redis.multi().hget(this.#marksKey, personId).hget(this.#startsKey, personId).exec()) as [[null, string | null], [null, string | null]];
    const fromFile = (await this.#readFile()).persons[personId];
    const out: PersonMark = {};
    // A watermark counts only while the archive folder still holds what it stands for: Redis's
    // alone would skip the history of a folder that was wiped or replaced, so the folder's own
    // record must know the person too (a folder moved to another Redis still has it).
    const watermarkMs = fromFile?.watermarkMs !== undefined ? later(mark !== null ? Number(mark) : undefined, fromFile.watermarkMs) : undefined;
    if (watermarkMs !== undefined) out.watermarkMs = watermarkMs;
    // The first start is write-once: the earliest known one wins.
    const starts = [start !== null ? Number(start) : undefined, fromFile?.startMs].filter((v): v is number => v !== undefined);
    if (starts.length > 0) out.startMs = Math.min(...starts);
    return out;
  }

  /** Remembers where a person's first window began, unless that is known already (or `replace`: an explicit --since). */
  async recordStart(personId: string, startMs: number, replace = false): Promise<void> {
    if (replace) await this.#redis.hset(this.#startsKey, personId, String(startMs));
    else await this.#redis.hsetnx(this.#startsKey, personId, String(startMs));
    await this.#updateFile(personId, (m) => ({ ...m, startMs: replace || m.startMs === undefined ? startMs : m.startMs }));
  }

  /** Moves the watermark forward to `ms` (never back). Call only when the whole window up to `ms` succeeded. */
  async advance(personId: string, ms: number): Promise<void> {
    await this.#redis.eval(MAX_SCRIPT, 1, this.#marksKey, personId, String(ms));
    await this.#updateFile(personId, (m) => ({ ...m, watermarkMs: later(m.watermarkMs, ms)! }));
  }

  async #readFile(): Promise<WatermarkFile> {
    let text: string;
    try {
      text = await readFile(this.#file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { version: 1, persons: {} };
      throw new FileError(`cannot read ${this.#file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, this.#file, { cause: err });
    }
    try {
      const data = JSON.parse(text) as Partial<WatermarkFile>;
      return { version: 1, persons: data && typeof data.persons === 'object' && data.persons ? data.persons : {} };
    } catch (err) {
      // Written only by rename, so a broken file was edited by hand: do not overwrite it blindly.
      throw new FileError(`${this.#file} is not valid JSON (edited by hand?); fix or remove it, Redis still holds the watermarks`, this.#file, { cause: err });
    }
  }

  #updateFile(personId: string, change: (mark: PersonMark) => PersonMark): Promise<void> {
    const previous = fileChains.get(this.#file) ?? Promise.resolve();
    const next = previous.catch(() => undefined).then(async () => {
      const data = await this.#readFile();
      const mark = change(data.persons[personId] ?? {});
      data.persons[personId] = { ...mark, ...(mark.watermarkMs !== undefined ? { watermark: new Date(mark.watermarkMs).toISOString() } : {}) };
      await writeAtomically(this.#file, `${JSON.stringify(data, null, 2)}\n`);
    });
    fileChains.set(this.#file, next);
    void next.finally(() => {
      if (fileChains.get(this.#file) === next) fileChains.delete(this.#file);
    }).catch(() => undefined);
    return next;
  }
}

async function writeAtomically(file: string, text: string): Promise<void> {
  let temp: string | undefined;
  try {
    await mkdir(path.dirname(file), { recursive: true });
    temp = await writeTemp(file, Buffer.from(text));
    await rename(temp, file);
  } catch (err) {
    if (temp) await rm(temp, { force: true }).catch(() => undefined);
    const cause = err instanceof FileError && err.cause !== undefined ? err.cause : err;
    throw new FileError(`cannot write ${file}: ${(cause as NodeJS.ErrnoException).code ?? String(cause)}`, file, { cause });
  }
}

/** Tick history kept per archive (the newest first), for operators and tests. */
const TICK_HISTORY = 1000;
const PLAN_BATCH = 500;

/** Notes a scheduled tick's run id in the archive's history. */
export async function noteTick(redis: Redis, keys: ArchiveKeys, runId: string): Promise<void> {
  await redis.multi().lpush(keys.ticks, runId).ltrim(keys.ticks, 0, TICK_HISTORY - 1).exec();
}

/** Keeps an archive run's lines for whoever writes its report (a scheduled run's report job may run anywhere). */
export async function savePlan(redis: Redis, keys: RunKeys, lines: unknown[]): Promise<void> {
  await redis.del(keys.plan);
  for (let i = 0; i < lines.length; i += PLAN_BATCH) await redis.rpush(keys.plan, ...lines.slice(i, i + PLAN_BATCH).map((l) => JSON.stringify(l)));
  await redis.expire(keys.plan, RUN_TTL_SECONDS);
}

export async function loadPlan<T>(redis: Redis, keys: RunKeys): Promise<T[] | undefined> {
  if (!(await redis.exists(keys.plan))) return undefined;
  return (await redis.lrange(keys.plan, 0, -1)).map((l) => JSON.parse(l) as T);
}
