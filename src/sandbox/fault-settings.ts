/** Fault injection settings; the same names in the programmatic API, PUT /_admin/faults and (kebab-cased) the CLI. */
export interface FaultSettings {
  /** PRNG seed: the same seed and request order give the same faults. */
  seed?: number;
  /** added to every request before it is handled */
  latencyMs?: number;
  /** share (0..1) of requests answered 500, 502 or 503 */
  failRate?: number;
  /** share of requests answered 429 with Retry-After */
  throttleRate?: number;
  /** Retry-After of those 429s (default 1) */
  retryAfterSeconds?: number;
  /** share of requests whose connection is destroyed before any response (nothing is stored) */
  resetRate?: number;
  /** share of uploads that are stored but whose connection is then destroyed instead of answered */
  lostResponseRate?: number;
  /** share of responses whose body trickles out (headers at once, then the body in pieces) */
  slowBodyRate?: number;
  /** pause between the pieces of a slow body (default 200 ms) */
  slowBodyDelayMs?: number;
  /** revoke every outstanding token this often (by the injected clock) */
  revokeEverySeconds?: number;
  /**
   * share of photo answers (enrollment, detection) sent as 200 with something else: in turn an
   * HTML login page, a JSON error, an empty body (what a proxy or a broken server sends)
   */
  badPhotoRate?: number;
  /** most requests handled at once; the next one is answered 503 at once (after `latencyMs`), handling nothing */
  capacity?: number;
  /** requests handled at once before latency grows with load (default: half of `capacity`, or 0 without one) */
  capacityKnee?: number;
  /** added to a request for each request handled at once above the knee, itself included */
  capacityLatencyMsPerRequest?: number;
}

export const FAULT_KEYS = [
  'seed',
  'latencyMs',
  'failRate',
  'throttleRate',
  'retryAfterSeconds',
  'resetRate',
  'lostResponseRate',
  'slowBodyRate',
  'slowBodyDelayMs',
  'revokeEverySeconds',
  'badPhotoRate',
  'capacity',
  'capacityKnee',
  'capacityLatencyMsPerRequest',
] as const satisfies ReadonlyArray<keyof FaultSettings>;

const RATES = new Set<string>(['failRate', 'throttleRate', 'resetRate', 'lostResponseRate', 'slowBodyRate', 'badPhotoRate']);
/** Counts of requests: whole numbers (capacity 0 would refuse everything; leave it out for no limit). */
const COUNTS: Record<string, number> = { capacity: 1, capacityKnee: 0 };

/** Checks settings from JSON or flags; returns a message per problem (empty when fine). */
export function faultSettingsProblems(input: unknown): string[] {
  if (input === null || typeof input !== 'object' || Array.isArray(input)) return ['fault settings must be a JSON object'];
  const problems: string[] = [];
  for (const [key, value] of Object.entries(input)) {
    if (!(FAULT_KEYS as readonly string[]).includes(key)) {
      problems.push(`unknown fault setting ${key} (known: ${FAULT_KEYS.join(', ')})`);
      continue;
    }
    if (value === undefined || value === null) continue;
    if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) problems.push(`${key} must be a number >= 0`);
    else if (RATES.has(key) && value > 1) problems.push(`${key} is a share of requests: 0..1`);
    else if (key in COUNTS && (!Number.isInteger(value) || value < COUNTS[key]!)) problems.push(`${key} must be a whole number >= ${COUNTS[key]}${key === 'capacity' ? ' (leave it out for no limit)' : ''}`);
  }
  return problems;
}
