import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ConfigError } from '../errors.ts';
import { silentLogger, type Logger } from '../log.ts';
import { handleAdmin, type AdminActions } from './admin-handlers.ts';
import { handleApi } from './api-handlers.ts';
import { CapacityGate } from './capacity-gate.ts';
import { DetectionSchedule } from './detection-schedule.ts';
import { DocumentStore, type DocumentTally, type DuplicatePolicy, type StoredDocumentInfo } from './document-store.ts';
import { UploadTally } from './upload-tally.ts';
import { FaultInjector } from './fault-injector.ts';
import { faultSettingsProblems, type FaultSettings } from './fault-settings.ts';
import { sendStatus } from './http-response.ts';
import { PeopleDirectory } from './people-directory.ts';
import { PERMISSIONS } from './permissions.ts';
import { PhotoLibrary } from './photo-library.ts';
import { matchRoute } from './route-table.ts';
import type { SandboxContext, SandboxUser } from './sandbox-context.ts';
import { loadSandboxData } from './sandbox-data.ts';
import { StatsCollector, type SandboxStats } from './sandbox-stats.ts';
import { selfSignedCertificate } from './tls-certificate.ts';
import { TokenIssuer } from './token-issuer.ts';

export interface SandboxOptions {
  /** 0 (default) = a free port */
  port?: number;
  /** default 127.0.0.1 */
  host?: string;
  /** path prefix such as /identities (default none) */
  prefix?: string;
  /** default: one user "sandbox" with a random password and every permission */
  users?: SandboxUser[];
  /** default 3600 */
  tokenTtlSeconds?: number;
  /** where documents are kept (kept across restarts); default a temp dir removed at close */
  dir?: string;
  /** a JSON file path or an object pinning people, tags, faces and photos */
  data?: string | object;
  /** true = generated self-signed certificate; or PEM text / file paths */
  tls?: boolean | { cert: string; key: string };
  /** serve /_admin at the root */
  admin?: boolean;
  faults?: FaultSettings;
  /** what a re-upload of an existing (personId, publicId) does; default store (a second copy) */
  duplicatePolicy?: DuplicatePolicy;
  /** what is kept of an upload: `all` (its bytes on disk and its entry; default) or `none` (counts only: UploadTally) */
  keep?: 'all' | 'none';
  /** injectable clock, epoch ms */
  now?: () => number;
  log?: Logger;
}

export interface Sandbox {
  /** base URL including the prefix, e.g. http://127.0.0.1:43123/identities */
  url: string;
  /** scheme, host and port only: /_admin lives here */
  origin: string;
  port: number;
  users: SandboxUser[];
  /** PEM file to hand to --ca-file (when TLS) */
  caFile?: string;
  caPem?: string;
  /** folder holding the stored documents */
  dir: string;
  setFaults(f: FaultSettings): void;
  faults(): FaultSettings;
  revokeAll(): void;
  stats(): SandboxStats;
  resetStats(): void;
  documents(): StoredDocumentInfo[];
  /** Documents held, uploads, and uploads of a document already held (GET /_admin/document-tally). */
  documentTally(): DocumentTally;
  bumpEnrollmentVersion(faceId: string): void;
  close(): Promise<void>;
}

export function defaultUser(): SandboxUser {
  return { username: 'sandbox', password: randomBytes(9).toString('base64url'), permissions: [...PERMISSIONS] };
}

function normalisePrefix(prefix: string | undefined): string {
  if (!prefix) return '';
  const trimmed = `/${prefix.replace(/^\/+|\/+$/g, '')}`;
  return trimmed === '/' ? '' : trimmed;
}

function pemOrFile(value: string): string {
  return value.includes('-----BEGIN') ? value : readFileSync(value, 'utf8');
}

export async function startSandbox(options: SandboxOptions = {}): Promise<Sandbox> {
  const now = options.now ?? Date.now;
  const log = options.log ?? silentLogger();
  const prefix = normalisePrefix(options.prefix);
  const users = options.users && options.users.length > 0 ? options.users.map((u) => ({ ...u, permissions: [...u.permissions] })) : [defaultUser()];
  const policy = options.duplicatePolicy ?? 'store';
  if (!['store', 'overwrite', 'reject'].includes(policy)) throw new ConfigError(`duplicate policy must be store, overwrite or reject, not ${policy}`, '--duplicate-policy');
  const keep = options.keep ?? 'all';
  if (keep !== 'all' && keep !== 'none') throw new ConfigError(`keep must be all or none, not ${String(keep)}`, '--keep');
  const problems = faultSettingsProblems(options.faults ?? {});
  if (problems.length > 0) throw new ConfigError(`bad fault settings: ${problems.join('; ')}`);

  const ownDir = options.dir === undefined;
  const dir = options.dir ?? mkdtempSync(path.join(os.tmpdir(), 'idsync-sandbox-'));
  const data = loadSandboxData(options.data);
  const photos = new PhotoLibrary(data);
  const tokens = new TokenIssuer(now, options.tokenTtlSeconds ?? 3600);
  const faults = new FaultInjector(options.faults ?? {});
  tokens.setRevokeEvery(options.faults?.revokeEverySeconds);
  const capacity = new CapacityGate(() => faults.get());
  const ctx: SandboxContext = {
    users,
    tokens,
    people: new PeopleDirectory(data),
    photos,
    detections: new DetectionSchedule(photos),
    documents: keep === 'none' ? new UploadTally(policy) : new DocumentStore(dir, policy, now),
    faults,
    capacity,
    stats: new StatsCollector(now, () => capacity.load().maxHandling),
    now,
    log,
  };
  const actions: AdminActions = {
    setFaults(f) {
      faults.set(f);
      tokens.setRevokeEvery(f.revokeEverySeconds);
    },
    revokeAll: () => tokens.revokeAll(),
    resetStats: () => {
      ctx.stats.reset();
      capacity.resetMax();
    },
    bumpEnrollmentVersion: (faceId) => photos.bumpEnrollmentVersion(faceId),
  };

  let caFile: string | undefined;
  let caPem: string | undefined;
  let server: Server;
  const onRequest = (req: IncomingMessage, res: ServerResponse) => {
    handle(ctx, actions, options.admin === true, prefix, req, res).catch((err: unknown) => {
      log.error({ err }, 'sandbox request failed');
      if (!res.headersSent && !res.destroyed) sendStatus(res, 500, 'sandbox internal error');
      else res.destroy();
    });
  };
  if (options.tls) {
    let cert: string;
    let key: string;
    if (options.tls === true) {
      const material = selfSignedCertificate(path.join(dir, 'tls'));
      ({ cert, key, caFile } = material);
    } else {
      cert = pemOrFile(options.tls.cert);
      key = pemOrFile(options.tls.key);
      if (!options.tls.cert.includes('-----BEGIN') && existsSync(options.tls.cert)) caFile = path.resolve(options.tls.cert);
    }
    caPem = cert;
    server = createHttpsServer({ cert, key }, onRequest);
  } else {
    server = createHttpServer(onRequest);
  }
  server.keepAliveTimeout = 30_000;
  const host = options.host ?? '127.0.0.1';
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as AddressInfo).port;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  const origin = `${options.tls ? 'https' : 'http'}://${shownHost}:${port}`;
  log.debug({ origin, prefix, dir }, 'sandbox listening');

  return {
    url: `${origin}${prefix}`,
    origin,
    port,
    users,
    caFile,
    caPem,
    dir,
    setFaults: (f) => {
      const bad = faultSettingsProblems(f);
      if (bad.length > 0) throw new ConfigError(`bad fault settings: ${bad.join('; ')}`);
      actions.setFaults(f);
    },
    faults: () => faults.get(),
    revokeAll: actions.revokeAll,
    stats: () => ctx.stats.snapshot(),
    resetStats: actions.resetStats,
    documents: () => ctx.documents.list(),
    documentTally: () => ctx.documents.tally(),
    bumpEnrollmentVersion: (faceId) => void actions.bumpEnrollmentVersion(faceId),
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      ctx.documents.close();
      if (ownDir) rmSync(dir, { recursive: true, force: true });
    },
  };
}

async function handle(ctx: SandboxContext, actions: AdminActions, admin: boolean, prefix: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
  // The server's own time, as a real server's clock would say it (a client may judge token expiry by it).
  res.setHeader('Date', new Date(ctx.now()).toUTCString());
  const raw = req.url ?? '/';
  const q = raw.indexOf('?');
  const pathname = q === -1 ? raw : raw.slice(0, q);
  if (pathname === '/_admin' || pathname.startsWith('/_admin/')) {
    if (!admin) return sendStatus(res, 404);
    return handleAdmin(ctx, actions, req, res, pathname);
  }
  let rest = pathname;
  if (prefix) {
    if (!(pathname.toLowerCase() === prefix.toLowerCase() || pathname.toLowerCase().startsWith(`${prefix.toLowerCase()}/`))) return sendStatus(res, 404);
    rest = pathname.slice(prefix.length);
  }
  const match = matchRoute(req.method ?? 'GET', rest);
  const routeName = match.kind === 'route' ? match.name : match.kind;
  ctx.stats.started(routeName);
  let counted = false;
  const finished = (status: number | 'reset') => {
    if (counted) return;
    counted = true;
    ctx.stats.finished(status);
  };
  res.on('finish', () => finished(res.statusCode));
  res.on('close', () => finished(res.writableFinished ? res.statusCode : 'reset'));

  const plan = ctx.faults.plan();
  const admission = ctx.capacity.enter();
  if (!admission.admitted) {
    // Refused at once, holding no place; the answer still takes the round trip (`latencyMs`).
    ctx.stats.count('overCapacity');
    if (plan.latencyMs > 0) await sleep(plan.latencyMs);
    return sendStatus(res, 503, 'over capacity');
  }
  // 'close' comes after the answer is sent, and also when the connection dies first.
  res.once('close', admission.leave);
  const latencyMs = plan.latencyMs + admission.extraLatencyMs;
  if (latencyMs > 0) await sleep(latencyMs);
  if (plan.early?.kind === 'reset') {
    req.socket.destroy();
    return;
  }
  if (plan.early?.kind === 'throttle') return sendStatus(res, 429, 'Too Many Requests', { 'Retry-After': String(plan.early.retryAfterSeconds) });
  if (plan.early?.kind === 'fail') return sendStatus(res, plan.early.status, 'injected failure');
  if (match.kind === 'not-found') return sendStatus(res, 404);
  if (match.kind === 'method-not-allowed') return sendStatus(res, 405, '', { Allow: match.allow });
  ctx.log.debug({ method: req.method, route: match.name }, 'request');
  await handleApi(ctx, req, res, {
    route: match.name,
    params: match.params,
    query: new URLSearchParams(q === -1 ? '' : raw.slice(q + 1)),
    pacing: { slow: plan.slowBody, delayMs: ctx.faults.slowBodyDelayMs() },
    loseResponse: plan.loseResponse && match.name === 'upload',
  });
}
