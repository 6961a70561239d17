import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pipeline } from 'node:stream/promises';
import { createBullBoard } from '@bull-board/api';
import { BullMQAdapter } from '@bull-board/api/bullMQAdapter';
import { ExpressAdapter } from '@bull-board/express';
import type { Logger } from '../../log.ts';
import type { ApiStore } from '../../store/api-store.ts';
import { CONTROL_QUEUE, runQueueName } from '../../store/keys.ts';
import type { Session } from '../../engine/session.ts';
import { listRunMetas, type FoundRun } from '../status/run-lookup.ts';
import { runTimeline, summarizeRun, viewRun } from '../status/run-view.ts';
import { authorized, hostAllowed, type ListenAddress } from './dashboard-access.ts';
import { errorsPage, messagePage, runPage, runsPage } from './dashboard-pages.ts';
import { contentTypeOf, listReportFiles, openReportFile } from './report-files.ts';

/** Runs listed and given a bull-board queue, per API (the latest). */
const RUNS_SHOWN = 100;
/** How long the list of queues bull-board shows is kept before it is read again. */
const QUEUES_FRESH_MS = 5_000;

export interface DashboardOptions {
  session: Session;
  /** The APIs shown (one, or every API this Redis served). */
  stores: () => Promise<ApiStore[]>;
  listen: ListenAddress;
  /** Bearer/basic-auth token; none = loopback only (checked by the caller: checkExposure). */
  token?: string;
  /** bull-board's actions (retry, clean, pause …) allowed; read-only otherwise. */
  allowActions?: boolean;
  log: Logger;
  now?: () => number;
}

export interface Dashboard {
  /** `http://host:port` (the port chosen when 0 was asked). */
  url: string;
  server: Server;
  close(): Promise<void>;
}

const SECURITY_HEADERS: Record<string, string> = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'x-frame-options': 'DENY',
};

function send(res: ServerResponse, status: number, body: string, type = 'text/html; charset=utf-8', extra: Record<string, string> = {}): void {
  res.writeHead(status, { ...SECURITY_HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body), ...extra });
  res.end(body);
}

/**
 * The dashboard's HTTP server: idsync's pages (runs, a run, its error classes and report files,
 * JSON under /api) and bull-board under /queues for the API's queues (the control queue and each
 * run's queue), read-only unless allowActions. Every request is checked first: the token when
 * one is set, else that the Host header names this machine.
 */
export async function startDashboard(o: DashboardOptions): Promise<Dashboard> {
  const now = o.now ?? Date.now;
  const board = boardFor(o);
  const server = createServer((req, res) => {
    handle(req, res).catch((err: unknown) => {
      o.log.error({ err, url: req.url }, 'dashboard: a request failed');
      if (!res.headersSent) send(res, 500, messagePage('Error', 'The page could not be made (see the dashboard log).'));
      else res.destroy();
    });
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (o.token !== undefined) {
      if (!authorized(req.headers.authorization, o.token)) {
        send(res, 401, messagePage('Log in', 'This dashboard needs its token: any user name, the token as password (or Authorization: Bearer TOKEN).'), 'text/html; charset=utf-8', { 'www-authenticate': 'Basic realm="idsync", charset="UTF-8"' });
        return;
      }
    } else if (!hostAllowed(req.headers.host, o.listen)) {
      send(res, 421, messagePage('Wrong host', 'This dashboard answers only requests addressed to this machine.'));
      return;
    }
    const url = new URL(req.url ?? '/', 'http://dashboard.invalid');
    const method = req.method ?? 'GET';
    if (url.pathname === '/queues' || url.pathname.startsWith('/queues/')) {
      if (!o.allowActions && method !== 'GET' && method !== 'HEAD') {
        send(res, 405, JSON.stringify({ error: 'the dashboard is read-only (start it with --allow-actions to retry, clean or pause jobs)' }), 'application/json');
        return;
      }
      // A browser page of another origin must not act with the user's credentials.
      if (method !== 'GET' && method !== 'HEAD' && req.headers.origin && req.headers.origin !== `http://${req.headers.host}`) {
        send(res, 403, JSON.stringify({ error: 'cross-origin request refused' }), 'application/json');
        return;
      }
      await board.refresh();
      // bull-board's router is an express app that expects to be mounted at its base path.
      req.url = req.url!.slice('/queues'.length) || '/';
      board.handler(req, res);
      return;
    }
    if (method !== 'GET' && method !== 'HEAD') {
      send(res, 405, messagePage('Read-only', 'These pages only show.'), 'text/html; charset=utf-8', { allow: 'GET, HEAD' });
      return;
    }
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    if (parts.length === 0) {
      res.writeHead(302, { ...SECURITY_HEADERS, location: '/runs' });
      res.end();
      return;
    }
    const json = parts[0] === 'api';
    const path = json ? parts.slice(1) : parts;
    if (path[0] !== 'runs') {
      send(res, 404, messagePage('Not found', `Nothing at ${url.pathname}.`));
      return;
    }
    if (path.length === 1) {
      const found = await runsShown();
      const runs = await Promise.all(found.map(({ store, meta }) => summarizeRun(store, meta, now())));
      if (json) send(res, 200, JSON.stringify(runs), 'application/json');
      else send(res, 200, runsPage(runs, now()), 'text/html; charset=utf-8', { 'content-security-policy': CSP });
      return;
    }
    const run = await findRun(path[1]!);
    if (!run) {
      send(res, 404, json ? JSON.stringify({ error: 'no such run' }) : messagePage('Not found', `No run ${path[1]} in this Redis.`), json ? 'application/json' : 'text/html; charset=utf-8');
      return;
    }
    const view = await viewRun(o.session, run.store, run.meta, now());
    if (path.length === 2) {
      const [timeline, files] = await Promise.all([runTimeline(run.store, run.meta.runId), listReportFiles(run.meta.reportDir, run.meta.runId)]);
      if (json) send(res, 200, JSON.stringify({ ...view, timeline, files: files ?? null }), 'application/json');
      else send(res, 200, runPage(view, timeline, files, boardName(run.store, (await o.stores()).length, run.meta.runId)), 'text/html; charset=utf-8', { 'content-security-policy': CSP });
      return;
    }
    if (path.length === 3 && path[2] === 'errors') {
      if (json) send(res, 200, JSON.stringify(view.errors), 'application/json');
      else send(res, 200, errorsPage(view), 'text/html; charset=utf-8', { 'content-security-policy': CSP });
      return;
    }
    if (path.length === 4 && path[2] === 'files' && !json) {
      const opened = run.meta.reportDir ? await openReportFile(run.meta.reportDir, run.meta.runId, path[3]!) : undefined;
      if (!opened) {
        send(res, 404, messagePage('Not found', 'No such report file of this run on this machine.'));
        return;
      }
      res.writeHead(200, { ...SECURITY_HEADERS, 'content-type': contentTypeOf(path[3]!), 'content-length': opened.stats.size, 'content-disposition': `inline; filename="${path[3]!}"`, 'content-security-policy': "default-src 'none'; sandbox" });
      if (method === 'HEAD') {
        await opened.handle.close();
        res.end();
        return;
      }
      await pipeline(opened.handle.createReadStream(), res);
      return;
    }
    send(res, 404, messagePage('Not found', `Nothing at ${url.pathname}.`));
  }

  async function runsShown(): Promise<FoundRun[]> {
    return (await listRunMetas(await o.stores())).slice(0, RUNS_SHOWN);
  }

  async function findRun(runId: string): Promise<FoundRun | undefined> {
    if (!/^[A-Za-z0-9_.-]+$/.test(runId)) return undefined;
    for (const store of await o.stores()) {
      const meta = await store.run(runId).getMeta();
      if (meta) return { store, meta };
    }
    return undefined;
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(o.listen.port, o.listen.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
  return {
    url: `http://${host}:${address.port}`,
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}

/** A queue's name in bull-board: two APIs each have a `control` queue, so with several APIs their names carry the API's key. */
function boardName(store: ApiStore, apis: number, queueName: string): string {
  return apis > 1 ? `${store.keys.api}:${queueName}` : queueName;
}

const CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'none'; frame-ancestors 'none'";

/** bull-board over the API's queues: the control queue and each shown run's, read again when older than QUEUES_FRESH_MS. */
function boardFor(o: DashboardOptions): { handler: (req: IncomingMessage, res: ServerResponse) => void; refresh: () => Promise<void> } {
  const adapter = new ExpressAdapter();
  adapter.setBasePath('/queues');
  const board = createBullBoard({ queues: [], serverAdapter: adapter, options: { uiConfig: { boardTitle: 'idsync queues' } } });
  let readAt = Number.NEGATIVE_INFINITY;
  let reading: Promise<void> | undefined;
  const read = async () => {
    const stores = await o.stores();
    const adapters: BullMQAdapter[] = [];
    for (const store of stores) {
      const prefix = boardName(store, stores.length, '');
      const options = { readOnlyMode: !o.allowActions, allowRetries: o.allowActions === true, prefix };
      adapters.push(new BullMQAdapter(o.session.queue(CONTROL_QUEUE, store), { ...options, description: `${store.apiUrl}: archive schedules and report jobs` }));
      for (const meta of (await store.listRuns()).slice(0, RUNS_SHOWN)) {
        adapters.push(new BullMQAdapter(o.session.queue(runQueueName(meta.runId), store), { ...options, description: `${meta.command} ${meta.input} (${meta.state})` }));
      }
    }
    board.replaceQueues(adapters);
    readAt = Date.now();
  };
  return {
    handler: adapter.getRouter() as (req: IncomingMessage, res: ServerResponse) => void,
    refresh: async () => {
      if (Date.now() - readAt < QUEUES_FRESH_MS) return;
      reading ??= read().finally(() => (reading = undefined));
      await reading;
    },
  };
}
