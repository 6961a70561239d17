export interface SandboxStats {
  requests: number;
  byRoute: Record<string, number>;
  logins: number;
  renewals: number;
  /** count per HTTP status sent, plus "reset" for connections destroyed by a fault */
  status: Record<string, number>;
  inFlight: number;
  maxInFlight: number;
  /** documents stored */
  uploads: number;
  /** upload requests received (stored, refused or failed) */
  uploadRequests: number;
  /** requests answered 503 by the capacity model (`capacity`), also counted in status["503"] */
  overCapacity: number;
  /** most requests handled at once by the capacity model (refused ones hold no place), since the last reset */
  maxHandling: number;
  /** requests started per second of the injected clock, the last 120 seconds, oldest first */
  requestsPerSecond: Array<{ second: number; count: number }>;
}

const WINDOW_SECONDS = 120;

/** Counters behind GET /_admin/stats. /_admin requests themselves are not counted. */
export class StatsCollector {
  private s = fresh();
  private readonly perSecond = new Map<number, number>();

  /** `maxHandling` reads the capacity model's count (capacity-gate.ts), which resets with these counters. */
  constructor(
    private readonly now: () => number,
    private readonly maxHandling: () => number = () => 0,
  ) {}

  started(route: string): void {
    this.s.requests++;
    this.s.byRoute[route] = (this.s.byRoute[route] ?? 0) + 1;
    this.s.inFlight++;
    if (this.s.inFlight > this.s.maxInFlight) this.s.maxInFlight = this.s.inFlight;
    const second = Math.floor(this.now() / 1000);
    this.perSecond.set(second, (this.perSecond.get(second) ?? 0) + 1);
    if (this.perSecond.size > WINDOW_SECONDS * 2) this.prune(second);
  }

  finished(status: number | 'reset'): void {
    this.s.inFlight = Math.max(0, this.s.inFlight - 1);
    const key = String(status);
    this.s.status[key] = (this.s.status[key] ?? 0) + 1;
  }

  count(what: 'logins' | 'renewals' | 'uploads' | 'uploadRequests' | 'overCapacity'): void {
    this.s[what]++;
  }

  snapshot(): SandboxStats {
    const nowSecond = Math.floor(this.now() / 1000);
    this.prune(nowSecond);
    const requestsPerSecond = [...this.perSecond.entries()].sort((a, b) => a[0] - b[0]).map(([second, count]) => ({ second, count }));
    return { ...this.s, byRoute: { ...this.s.byRoute }, status: { ...this.s.status }, maxHandling: this.maxHandling(), requestsPerSecond };
  }

  reset(): void {
    const inFlight = this.s.inFlight;
    this.s = fresh();
    this.s.inFlight = inFlight;
    this.perSecond.clear();
  }

  private prune(nowSecond: number): void {
    for (const second of this.perSecond.keys()) if (second <= nowSecond - WINDOW_SECONDS) this.perSecond.delete(second);
  }
}

function fresh(): Omit<SandboxStats, 'requestsPerSecond' | 'maxHandling'> {
  return { requests: 0, byRoute: {}, logins: 0, renewals: 0, status: {}, inFlight: 0, maxInFlight: 0, uploads: 0, uploadRequests: 0, overCapacity: 0 };
}
