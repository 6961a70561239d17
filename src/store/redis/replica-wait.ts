import type { Redis } from 'ioredis';
import type { Logger } from '../../log.ts';

/** How long a WAIT gives the replicas: one that has not answered by then is down or cut off, not slow. */
export const REPLICA_WAIT_MS = 1_000;

/**
 * How long claims stay refused while replicas do not confirm them, before idsync counts again
 * which replicas are there. It must outlast a deposed master's life: Sentinel converts an old
 * master it can reach into a replica 8 to ~18 s after the switch (11-12 s measured with Redis
 * 7.0), and only then are its clients disconnected and sent to the new master.
 */
export const REPLICA_GRACE_MS = 30_000;

/** How often the replicas are counted again (one may have joined, or left for good). */
export const REPLICA_RECOUNT_MS = 60_000;

/** A replica whose last acknowledgement is older than this is not counted (Redis's min-replicas-max-lag default). */
export const REPLICA_MAX_LAG_SECONDS = 10;

export interface ReplicaWaitOptions {
  now?: () => number;
  log?: Logger;
  timeoutMs?: number;
  graceMs?: number;
  recountMs?: number;
}

/**
 * Whether what one connection wrote has reached the replicas that a failover could promote.
 * idsync's doubt marks (an upload may reach the server) must be on them before anything is sent:
 * a failover that loses a mark lets another worker send the document again.
 *
 * The trap: Sentinel's failover promotes the replica at once, but the old master goes on
 * accepting writes (from every client still connected to it) until Sentinel converts it into a
 * replica, seconds later, and that throws them all away. Its WAIT finds no replica meanwhile (the
 * promoted one left), so a claim that went on after a WAIT that timed out put its doubt mark
 * where nothing kept it: `SENTINEL FAILOVER` in the middle of a 600-document import by two
 * workers with their own state dirs stored 33 documents twice (242 without any WAIT). So a
 * shortfall refuses the claim (the job waits and tries again, no attempt spent) for up to
 * REPLICA_GRACE_MS; only then are the replicas counted again, so that a master that really lost
 * its replica (killed, never back) is served without waiting for it.
 */
export class ReplicaWait {
  readonly #redis: Redis;
  readonly #now: () => number;
  readonly #log: Logger | undefined;
  readonly #timeoutMs: number;
  readonly #graceMs: number;
  readonly #recountMs: number;
  #expected: number;
  #countedAt: number;
  #shortSince: number | undefined;

  constructor(redis: Redis, expected: number, options: ReplicaWaitOptions = {}) {
    this.#redis = redis;
    this.#expected = expected;
    this.#now = options.now ?? Date.now;
    this.#log = options.log;
    this.#timeoutMs = options.timeoutMs ?? REPLICA_WAIT_MS;
    this.#graceMs = options.graceMs ?? REPLICA_GRACE_MS;
    this.#recountMs = options.recountMs ?? REPLICA_RECOUNT_MS;
    this.#countedAt = this.#now();
  }

  /** Replicas each claim waits for now. */
  get expected(): number {
    return this.#expected;
  }

  /**
   * After writes on the connection: true once every counted replica has them (or there is none
   * to wait for), false while they have not and the grace is not over.
   */
  async confirm(): Promise<boolean> {
    if (this.#now() - this.#countedAt >= this.#recountMs && this.#shortSince === undefined) await this.#recount();
    if (this.#expected === 0) return true;
    const acked = await this.#redis.wait(this.#expected, this.#timeoutMs);
    if (acked >= this.#expected) {
      if (this.#shortSince !== undefined) this.#log?.info({ replicas: acked }, 'Redis replicas confirm writes again: uploads go on');
      this.#shortSince = undefined;
      return true;
    }
    const now = this.#now();
    if (this.#shortSince === undefined) {
      this.#shortSince = now;
      this.#log?.warn(
        { replicas: this.#expected, confirmed: acked },
        `Redis replicas did not confirm idsync's writes within ${this.#timeoutMs} ms (a failover under way, or a replica down): uploads wait for them, up to ${Math.round(this.#graceMs / 1000)} s`,
      );
      return false;
    }
    if (now - this.#shortSince < this.#graceMs) return false;
    const before = this.#expected;
    await this.#recount();
    if (acked >= this.#expected) {
      this.#shortSince = undefined;
      this.#log?.warn(
        { before, now: this.#expected },
        this.#expected === 0
          ? 'no Redis replica answers any more: uploads go on without waiting for one (until one is back, a failover could lose the marks that stop a second upload)'
          : `Redis has ${this.#expected} replica(s) answering now (was ${before}): uploads wait for those`,
      );
      return true;
    }
    this.#shortSince = now;
    return false;
  }

  /** Replicas online whose last acknowledgement is recent (INFO replication of the master). */
  async #recount(): Promise<void> {
    this.#countedAt = this.#now();
    try {
      this.#expected = countReplicas(await this.#redis.info('replication'));
    } catch (err) {
      this.#log?.debug({ err }, 'cannot count the Redis replicas (INFO refused?); keeping the count');
    }
  }
}

/** Replicas in INFO replication that are online and acknowledged within REPLICA_MAX_LAG_SECONDS. */
export function countReplicas(info: string): number {
  let n = 0;
  for (const m of info.matchAll(/^slave\d+:(.*)$/gm)) {
    const fields = new Map(m[1]!.split(',').map((kv) => kv.split('=', 2) as [string, string]));
    if (fields.get('state') === 'online' && Number(fields.get('lag') ?? Infinity) <= REPLICA_MAX_LAG_SECONDS) n++;
  }
  return n;
}
