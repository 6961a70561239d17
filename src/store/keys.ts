import { createHash } from 'node:crypto';

/**
 * Every Redis key idsync writes, and how long each lives: the one place that knows the layout
 * (docs/redis-layout.md describes it for operators).
 *
 * All keys of one API carry the same hash tag, `{<api>}`: on a Redis Cluster they then live in
 * one slot, which idsync's scripts need (a document's claim reads the run's results and writes
 * the document's lock and stored entry in one step) and BullMQ needs (a queue's keys together).
 * The price is that one API's state sits on one shard; one shard serves far more than the
 * API's own rate.
 */

/** Root of every key (setting `--redis-prefix`, env IDSYNC_REDIS_PREFIX): several deployments can share one Redis. */
export const DEFAULT_KEY_ROOT = 'idsync';

/** A run's state is kept this long after its last activity, so a rerun weeks later still resumes. */
export const RUN_TTL_SECONDS = 30 * 24 * 3600;

/** The queue that carries what is not a run's row: archive schedules' ticks and report waits. */
export const CONTROL_QUEUE = 'control';

/** A short stable key for one API (its base URL). */
export function apiKey(apiUrl: string): string {
  return createHash('sha256').update(apiUrl).digest('hex').slice(0, 12);
}

/** A row's job id inside its run's queue. BullMQ refuses ids that are plain integers. */
export function rowJobId(row: number): string {
  return `r${row}`;
}

/** The row a job id names (rowJobId's inverse), or undefined for a job that is not a row's. */
export function rowOfJobId(jobId: string | undefined): number | undefined {
  const m = /^r(\d+)$/.exec(jobId ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * A run's queue is named after the run (BullMQ forbids ':' in names): a run's jobs are taken
 * only by workers serving that run, never by another command's workers.
 */
export function runQueueName(runId: string): string {
  if (!/^[A-Za-z0-9_.-]+$/.test(runId)) throw new Error(`invalid run id ${JSON.stringify(runId)}`);
  return runId;
}

export interface RunKeys {
  /** JSON: what the run is, its state, its owner (RunMeta). */
  meta: string;
  /** Hash row → result JSON, for rows not written into the report yet (then retired). */
  results: string;
  /** Bit field, 3 bits per row (dense rows only): what stays of a result once retired (its status code). */
  status: string;
  /** Hash status → number of rows. */
  counts: string;
  /** Hash output path → row (export: two rows never write one file). */
  outputs: string;
  /** List of an archive run's lines (faces, then persons). */
  plan: string;
  /** Hash: retries, throttles and error classes (count and one example row each) of the latest invocation (RunStats). */
  stats: string;
  /** Hash minute (epoch minutes) → rows done, failed, retries, throttles in that minute; the last 24 h (RunStats). */
  timeline: string;
}

export interface ArchiveKeys {
  /** Hash personId → inclusive end of the last fully archived window (epoch ms). */
  watermarks: string;
  /** Hash personId → start of that person's very first window. */
  starts: string;
  /** List of the run ids of scheduled ticks, newest first. */
  ticks: string;
}

/** Buckets of the stored-documents set: 2^17, so 10 million documents stay ~76 per bucket (compact listpack hashes). */
export const STORED_BUCKET_BITS = 17;

/** The keys of one API under one root. */
export class ApiKeys {
  readonly root: string;
  readonly api: string;
  /** `<root>:{<api>}`: the start of every key, and BullMQ's prefix. */
  readonly tag: string;

  constructor(root: string, api: string) {
    if (!/^[A-Za-z0-9_.-]+$/.test(root)) throw new Error(`invalid key prefix ${JSON.stringify(root)}`);
    this.root = root;
    this.api = api;
    this.tag = `${root}:{${api}}`;
  }

  /** BullMQ's prefix for this API's queues (its keys are `<prefix>:<queue>:…`). */
  get queuePrefix(): string {
    return this.tag;
  }

  run(runId: string): RunKeys {
    const base = `${this.tag}:run:${runId}`;
    return { meta: `${base}:meta`, results: `${base}:results`, status: `${base}:status`, counts: `${base}:counts`, outputs: `${base}:outputs`, plan: `${base}:plan`, stats: `${base}:stats`, timeline: `${base}:timeline` };
  }

  /** Sorted set of this API's runs, scored by their last start (epoch ms). */
  get runs(): string {
    return `${this.tag}:runs`;
  }

  /** The stored-documents bucket of a document id (see StoredDocuments). */
  storedBucket(bucket: number): string {
    return `${this.tag}:stored:${bucket.toString(16).padStart(5, '0')}`;
  }

  /** The short-lived lock of one document while one job works on it. */
  lock(docIdHex: string): string {
    return `${this.tag}:lock:${docIdHex}`;
  }

  /**
   * A random id made when this Redis first holds state for the API: a state dir that saw another
   * id (or one no longer there) knows the Redis state it relied on is gone (StateEpoch).
   */
  get epoch(): string {
    return `${this.tag}:epoch`;
  }

  /** Hash: settings kept for the API across commands (the global rate limit). */
  get limits(): string {
    return `${this.tag}:limits`;
  }

  /** Hash worker id (host:pid) → JSON heartbeat of the processes serving this API. */
  get workers(): string {
    return `${this.tag}:workers`;
  }

  archive(archiveKey: string): ArchiveKeys {
    const base = `${this.tag}:archive:${archiveKey}`;
    return { watermarks: `${base}:watermarks`, starts: `${base}:starts`, ticks: `${base}:ticks` };
  }
}

/** Hash api key → API URL of every API this Redis has served: how `idsync runs` finds them all. */
export function apisKey(root: string): string {
  return `${root}:apis`;
}
