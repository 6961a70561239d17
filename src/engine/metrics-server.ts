import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { ConfigError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { ProcessMetrics } from './metrics.ts';

export interface HealthCheck {
  ok: boolean;
  detail: string;
}

/** /healthz: the process is up; each check says whether what it needs works. */
export type HealthChecks = Record<string, HealthCheck>;

export interface MetricsServerOptions {
  host: string;
  port: number;
  metrics: ProcessMetrics;
  /** The checks of /healthz (Redis reachable, login valid): all ok → 200, else 503. */
  health(): Promise<HealthChecks>;
  /** /readyz: ready once the session is open and its workers serve. */
  ready(): HealthCheck;
  log: Logger;
}

const LOOPBACK = /^(127\.\d+\.\d+\.\d+|::1|localhost)$/i;

/**
 * `--metrics-listen HOST:PORT`: Prometheus text at /metrics, /healthz and /readyz as JSON (200 or
 * 503), nothing else. Loopback by default; another address is allowed (the metrics hold counts,
 * run ids and host names, no personal data and no secret) and said in the log.
 */
export class MetricsServer {
  readonly #server: Server;
  readonly #o: MetricsServerOptions;

  private constructor(server: Server, options: MetricsServerOptions) {
    this.#server = server;
    this.#o = options;
  }

  static async start(options: MetricsServerOptions): Promise<MetricsServer> {
    const server = createServer();
    const self = new MetricsServer(server, options);
    server.on('request', (req, res) => void self.#handle(req, res));
    // Scrapers keep connections open; they must not keep the process alive at its end.
    server.keepAliveTimeout = 5_000;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(options.port, options.host, () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((err: NodeJS.ErrnoException) => {
      throw new ConfigError(`--metrics-listen ${options.host}:${options.port}: cannot listen (${err.code ?? err.message}); give a free HOST:PORT, or :0 for any free port`, '--metrics-listen');
    });
    server.unref();
    const where = { metrics: `${self.url}/metrics`, healthz: `${self.url}/healthz`, readyz: `${self.url}/readyz` };
    if (LOOPBACK.test(options.host)) options.log.info(where, `metrics at ${where.metrics}`);
    else options.log.warn(where, `metrics at ${where.metrics}, reachable from other machines (${options.host} is not a loopback address): they show counts, run ids and host names, no personal data or secrets`);
    return self;
  }

  /** Base URL, e.g. http://127.0.0.1:9464 (the port the system chose for port 0). */
  get url(): string {
    const a = this.#server.address() as AddressInfo;
    const host = a.family === 'IPv6' ? `[${a.address}]` : a.address;
    return `http://${host}:${a.port}`;
  }

  async close(): Promise<void> {
    await new Promise<void>((resolve) => {
      this.#server.close(() => resolve());
      this.#server.closeAllConnections();
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    try {
      const path = (req.url ?? '/').split('?')[0];
      if (req.method !== 'GET' && req.method !== 'HEAD') return send(res, 405, 'text/plain; charset=utf-8', 'only GET and HEAD\n', { allow: 'GET, HEAD' });
      if (path === '/metrics') return send(res, 200, this.#o.metrics.contentType, await this.#o.metrics.text());
      if (path === '/healthz') {
        const checks: HealthChecks = { up: { ok: true, detail: `pid ${process.pid}` }, ...(await this.#o.health()) };
        const ok = Object.values(checks).every((c) => c.ok);
        return sendJson(res, ok ? 200 : 503, { status: ok ? 'ok' : 'failing', checks });
      }
      if (path === '/readyz') {
        const ready = this.#o.ready();
        return sendJson(res, ready.ok ? 200 : 503, { ready: ready.ok, detail: ready.detail });
      }
      return send(res, 404, 'text/plain; charset=utf-8', 'not found: /metrics, /healthz or /readyz\n');
    } catch (err) {
      this.#o.log.debug({ err, url: req.url }, 'metrics: cannot answer');
      if (!res.headersSent) send(res, 500, 'text/plain; charset=utf-8', 'cannot answer; see the log at debug level\n');
      else res.destroy();
    }
  }
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  send(res, status, 'application/json; charset=utf-8', `${JSON.stringify(body)}\n`);
}

function send(res: ServerResponse, status: number, type: string, body: string, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(body), 'cache-control': 'no-store', ...headers });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}
