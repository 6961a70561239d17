import { createHmac, hkdfSync, timingSafeEqual } from 'node:crypto';
import type { Secret } from '../config/secret.ts';

/**
 * Jobs carry a MAC of their payload, made with a key that only processes configured for the API
 * can derive (HKDF of the API password, bound to the API's URL). A worker refuses a job whose MAC
 * does not match before it reads or writes anything: write access to Redis alone (a local user
 * who learnt its password, a shared Redis) must not let anyone make idsync upload a file of their
 * choosing or write one where they like. The MAC covers the queue (run) and the job id, so a
 * signed payload cannot be replayed under another row or run.
 *
 * What is not covered, on purpose: the hints a job keeps about itself between attempts (in doubt,
 * throttles, its retry budget and first failure). Forging those can only cost an extra existence
 * check or skip one, or make a job try longer or shorter (as BullMQ's own `attempts` could), the
 * same as deleting idsync's keys in Redis would.
 */
export class JobSigner {
  readonly #key: Buffer;

  constructor(password: Secret, apiUrl: string) {
    this.#key = Buffer.from(hkdfSync('sha256', password.reveal(), `idsync jobs\n${apiUrl}`, 'idsync job mac v2', 32));
  }

  sign(queue: string, jobId: string, kind: string, payload: unknown): string {
    return createHmac('sha256', this.#key).update(`${queue}\n${jobId}\n${kind}\n${JSON.stringify(payload)}`).digest('base64url').slice(0, 32);
  }

  verify(queue: string, jobId: string, kind: string, payload: unknown, mac: unknown): boolean {
    if (typeof mac !== 'string' || mac.length !== 32) return false;
    const expected = Buffer.from(this.sign(queue, jobId, kind, payload));
    const given = Buffer.from(mac);
    return given.length === expected.length && timingSafeEqual(given, expected);
  }
}

/** A job's data in Redis: its signed payload, and the unsigned hints it keeps between attempts. */
export interface JobEnvelope<P = unknown> {
  /** The payload (what the kind works on). */
  p: P;
  /** MAC of the payload (JobSigner). */
  m: string;
  /** An earlier attempt may have reached the server: ask before sending. */
  d?: boolean;
  /** How often the API throttled this job (429): those tries do not count as attempts. */
  t?: number;
  /** Retry budget, ms: passing failures end the job only once this long has gone since `f` (src/engine/retry-budget.ts). */
  b?: number;
  /** When the job first failed for a passing reason (epoch ms): where its retry budget starts. */
  f?: number;
}
