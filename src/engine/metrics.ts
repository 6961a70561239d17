import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { ApiClient, ResponseEvent } from '../api/client.ts';
import type { RowResult, StoredRowStatus } from '../report/row-result.ts';
import { CONTROL_QUEUE } from '../store/keys.ts';
import { VERSION } from '../version.ts';
import type { ProcessorObserver } from './processor.ts';

/** What the metrics read of this process's workers at each scrape. */
export interface PoolView {
  served(): string[];
  active(): number;
}

/** A run's rows as Redis holds them (every worker of the run sees the same). */
export interface RunView {
  counts(): Promise<Partial<Record<StoredRowStatus, number>>>;
  total(): Promise<number | undefined>;
  queueCounts(): Promise<{ waiting: number; active: number; delayed: number }>;
}

/** A scrape does not wait longer than this for Redis: a metric that cannot be read is left out. */
const SCRAPE_REDIS_MS = 2_000;
const REQUEST_BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];
const FSYNC_BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1];
const STATUSES: readonly StoredRowStatus[] = ['succeeded', 'skipped', 'failed', 'rejected'];

/**
 * This process's Prometheus metrics (`--metrics-listen`), in a registry of its own (prom-client's
 * global one would be shared by every Session of a test process). Fed by the API client's
 * onResponse, the processor's observer and the ledger's fsync; what lives in Redis or in other
 * objects (run counts, queues, logins) is read at each scrape.
 */
export class ProcessMetrics implements ProcessorObserver {
  readonly registry = new Registry();
  readonly #rows: Counter<'kind' | 'status' | 'error_class'>;
  readonly #bytes: Counter<'direction'>;
  readonly #requestSeconds: Histogram<'endpoint' | 'status_class'>;
  readonly #responses: Counter<'endpoint' | 'status'>;
  readonly #retries: Counter<'error_class'>;
  readonly #throttlePauses: Counter;
  readonly #fsyncSeconds: Histogram;
  #client: ApiClient | undefined;
  #pool: PoolView | undefined;
  readonly #runs = new Map<string, RunView>();
  #runView: ((runId: string) => RunView) | undefined;
  #stopThrottleWatch: (() => void) | undefined;

  constructor(options: { concurrency: number }) {
    const registers = [this.registry];
    this.#rows = new Counter({ name: 'idsync_rows_total', help: 'Rows this process finished, by job kind, status and error class (empty when none)', labelNames: ['kind', 'status', 'error_class'], registers });
    this.#bytes = new Counter({ name: 'idsync_bytes_total', help: 'Bytes of rows this process finished: sent (uploads) or received (downloads)', labelNames: ['direction'], registers });
    this.#requestSeconds = new Histogram({
      name: 'idsync_api_request_duration_seconds',
      help: 'API requests until their answer (or failure), by endpoint template and status class (2xx, 4xx, 5xx, error)',
      labelNames: ['endpoint', 'status_class'],
      buckets: REQUEST_BUCKETS,
      registers,
    });
    this.#responses = new Counter({ name: 'idsync_api_responses_total', help: 'API answers by endpoint template and status code (error: no answer)', labelNames: ['endpoint', 'status'], registers });
    this.#retries = new Counter({ name: 'idsync_retries_total', help: 'Job attempts that failed and will be tried again, by error class', labelNames: ['error_class'], registers });
    this.#throttlePauses = new Counter({ name: 'idsync_throttle_pauses_total', help: 'Pauses of new requests because the API asked to slow down (429 / Retry-After)', registers });
    this.#fsyncSeconds = new Histogram({ name: 'idsync_ledger_fsync_seconds', help: "The ledger's group-commit fsyncs", buckets: FSYNC_BUCKETS, registers });

    const self = this;
    new Gauge({ name: 'idsync_build_info', help: "idsync's version", labelNames: ['version', 'node'], registers }).set({ version: VERSION, node: process.versions.node }, 1);
    new Gauge({ name: 'idsync_process_start_time_seconds', help: 'When this process started (Unix seconds)', registers }).set(Math.round(Date.now() / 1000 - process.uptime()));
    new Gauge({
      name: 'idsync_process_resident_memory_bytes',
      help: 'Resident memory of this process',
      registers,
      collect() {
        this.set(process.memoryUsage.rss());
      },
    });
    new Gauge({ name: 'idsync_concurrency', help: 'Requests this process keeps in flight at most (--concurrency)', registers }).set(options.concurrency);
    new Gauge({
      name: 'idsync_jobs_active',
      help: 'Jobs running in this process now',
      registers,
      collect() {
        this.set(self.#pool?.active() ?? 0);
      },
    });
    const fromClient = (name: string, help: string, read: (s: ReturnType<ApiClient['stats']>) => number) =>
      new Counter({
        name,
        help,
        registers,
        collect() {
          const client = self.#client;
          if (!client) return;
          // Kept by the client; a counter set to its value at each scrape (it only grows).
          this.reset();
          this.inc(read(client.stats()));
        },
      });
    fromClient('idsync_logins_total', 'Logins with the password (the first one included)', (s) => s.logins);
    fromClient('idsync_token_renewals_total', 'Tokens exchanged for fresh ones (renewToken)', (s) => s.renewals);
    fromClient('idsync_token_refreshes_on_401_total', 'Token refreshes after the API answered 401', (s) => s.refreshesOn401);
    new Gauge({
      name: 'idsync_queue_jobs',
      help: 'Jobs in the queues of the runs this process serves or waits for, by state',
      labelNames: ['run_id', 'state'],
      registers,
      async collect() {
        this.reset();
        await Promise.all(
          [...self.#watched()].map(async ([runId, run]) => {
            const counts = await withinScrape(run.queueCounts());
            if (!counts) return;
            for (const state of ['waiting', 'active', 'delayed'] as const) this.set({ run_id: runId, state }, counts[state]);
          }),
        );
      },
    });
    new Gauge({
      name: 'idsync_run_rows',
      help: 'Rows of the runs this process serves or waits for that have a result, by status (all workers of a run together)',
      labelNames: ['run_id', 'status'],
      registers,
      async collect() {
        this.reset();
        await Promise.all(
          [...self.#watched()].map(async ([runId, run]) => {
            const counts = await withinScrape(run.counts());
            if (!counts) return;
            for (const status of STATUSES) this.set({ run_id: runId, status }, counts[status] ?? 0);
          }),
        );
      },
    });
    new Gauge({
      name: 'idsync_run_rows_expected',
      help: 'Rows of the runs this process serves or waits for, once known',
      labelNames: ['run_id'],
      registers,
      async collect() {
        this.reset();
        await Promise.all(
          [...self.#watched()].map(async ([runId, run]) => {
            const total = await withinScrape(run.total());
            if (total !== undefined) this.set({ run_id: runId }, total);
          }),
        );
      },
    });
  }

  get contentType(): string {
    return this.registry.contentType;
  }

  /** The Prometheus text of every metric. */
  text(): Promise<string> {
    return this.registry.metrics();
  }

  /** The API client: its logins and renewals, and its pauses when the API asks to slow down. */
  watchClient(client: ApiClient): void {
    this.#client = client;
    this.#stopThrottleWatch?.();
    this.#stopThrottleWatch = client.pace.onThrottle(() => this.#throttlePauses.inc());
  }

  /** This process's workers: their jobs in flight, and the runs they serve. */
  watchPool(pool: PoolView): void {
    this.#pool = pool;
  }

  /** How to look at a run in Redis (set once Redis is open). */
  lookAtRuns(view: (runId: string) => RunView): void {
    this.#runView = view;
  }

  /** A run this process waits for without serving it (`--workers 0`), shown like a served one. */
  followRun(runId: string): void {
    const view = this.#runView?.(runId);
    if (view) this.#runs.set(runId, view);
  }

  /** The client's onResponse. */
  request(e: ResponseEvent): void {
    const statusClass = e.status === undefined ? 'error' : `${Math.floor(e.status / 100)}xx`;
    this.#requestSeconds.observe({ endpoint: e.endpoint, status_class: statusClass }, e.ms / 1000);
    this.#responses.inc({ endpoint: e.endpoint, status: e.status === undefined ? 'error' : String(e.status) });
  }

  rowFinished(result: RowResult, kind: string): void {
    this.#rows.inc({ kind, status: result.status, error_class: result.errorCode ?? '' });
    if (result.status === 'succeeded' && result.bytes) this.#bytes.inc({ direction: kind === 'upload' ? 'sent' : 'received' }, result.bytes);
  }

  retried(errorClass: string): void {
    this.#retries.inc({ error_class: errorClass });
  }

  /** One fsync of the ledger took `ms`. */
  fsync(ms: number): void {
    this.#fsyncSeconds.observe(ms / 1000);
  }

  close(): void {
    this.#stopThrottleWatch?.();
    this.#stopThrottleWatch = undefined;
  }

  /** The runs served by this process's workers and those it follows. */
  *#watched(): Iterable<[string, RunView]> {
    const seen = new Set<string>();
    for (const [runId, view] of this.#runs) {
      seen.add(runId);
      yield [runId, view];
    }
    const view = this.#runView;
    if (!view) return;
    for (const name of this.#pool?.served() ?? []) {
      if (name === CONTROL_QUEUE || seen.has(name)) continue;
      yield [name, view(name)];
    }
  }
}

/** A Redis read for a scrape, given up (undefined) after SCRAPE_REDIS_MS or on an error. */
async function withinScrape<T>(work: Promise<T>): Promise<T | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => {
    timer = setTimeout(() => resolve(undefined), SCRAPE_REDIS_MS);
  });
  try {
    return await Promise.race([work.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}
