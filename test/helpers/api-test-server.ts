import { createReadStream } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { randomUUID } from 'node:crypto';
import { SignJWT } from 'jose';
import { parseMultipart, type ParsedPart } from './multipart-stream.ts';

/**
 * A small, precisely controllable imitation of the Identities API for client tests: tokens
 * with a chosen lifetime, revocation, a path prefix, and a hook to inject any fault at an
 * exact moment. (The full sandbox with fault injection lives in src/sandbox/.)
 */
export interface StoredDocument {
  data?: Buffer;
  filePath?: string;
  contentType?: string;
  contentDisposition?: string;
  upload?: { fields: Record<string, string>; file: ParsedPart };
}

export interface RecordedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
}

export type FaultHook = (req: http.IncomingMessage, res: http.ServerResponse, server: ApiTestServer) => boolean | Promise<boolean>;

export interface ApiTestServerOptions {
  prefix?: string;
  username?: string;
  password?: string;
  /** Token lifetime in seconds; undefined = tokens without `exp`. */
  tokenLifetimeS?: number | undefined;
  /** Issue tokens that are not JWTs at all (exp unreadable). */
  opaqueTokens?: boolean;
  tls?: { key: string; cert: string };
}

const SECRET = new TextEncoder().encode('test-server-signing-key-not-a-secret');

export class ApiTestServer {
  readonly options: Required<Pick<ApiTestServerOptions, 'prefix' | 'username' | 'password'>> & ApiTestServerOptions;
  readonly server: http.Server;
  url = '';
  readonly requests: RecordedRequest[] = [];
  readonly documents = new Map<string, StoredDocument>();
  readonly photos = new Map<string, StoredDocument>();
  readonly counts = { logins: 0, refusedLogins: 0, renewals: 0, refusedRenewals: 0, unauthorized: 0, unprefixed: 0 };
  /** token → expiry (epoch ms, or Infinity); absent = unknown or revoked. */
  readonly #tokens = new Map<string, number>();
  fault: FaultHook | undefined;

  constructor(options: ApiTestServerOptions = {}) {
    this.options = { prefix: '', username: 'migrator', password: 'correct horse battery staple', tokenLifetimeS: 3600, ...options };
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      this.#handle(req, res).catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500).end(String(err));
        else res.destroy();
      });
    };
    this.server = options.tls ? https.createServer({ key: options.tls.key, cert: options.tls.cert }, handler) : http.createServer(handler);
  }

  async start(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const port = (this.server.address() as AddressInfo).port;
    this.url = `${this.options.tls ? 'https' : 'http'}://127.0.0.1:${port}${this.options.prefix}`;
    return this;
  }

  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  revokeAll(): void {
    this.#tokens.clear();
  }

  tokensIssued(): string[] {
    return [...this.#tokens.keys()];
  }

  async #issue(): Promise<string> {
    if (this.options.opaqueTokens) {
      const token = `opaque-${randomUUID()}`;
      this.#tokens.set(token, Infinity);
      return token;
    }
    const now = Math.floor(Date.now() / 1000);
    const jwt = new SignJWT({ sub: this.options.username, jti: randomUUID() }).setProtectedHeader({ alg: 'HS256' }).setIssuedAt(now);
    const lifetime = this.options.tokenLifetimeS;
    if (lifetime !== undefined) jwt.setExpirationTime(now + lifetime);
    const token = await jwt.sign(SECRET);
    this.#tokens.set(token, lifetime !== undefined ? (now + lifetime) * 1000 : Infinity);
    return token;
  }

  #bearer(req: http.IncomingMessage): string | undefined {
    const header = req.headers.authorization;
    if (!header?.startsWith('Bearer ')) return undefined;
    const token = header.slice(7);
    const exp = this.#tokens.get(token);
    return exp !== undefined && Date.now() < exp ? token : undefined;
  }

  async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    this.requests.push({ method: req.method ?? '', url: req.url ?? '', authorization: req.headers.authorization });
    if (this.fault && (await this.fault(req, res, this))) return;
    const url = new URL(req.url ?? '/', 'http://x');
    const prefix = this.options.prefix;
    if (!url.pathname.startsWith(`${prefix}/api/v1/`)) {
      this.counts.unprefixed++;
      await drain(req);
      return void res.writeHead(404).end('no such route');
    }
    const route = url.pathname.slice(prefix.length);
    const json = (status: number, body: unknown) => {
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
    };

    if (req.method === 'POST' && route === '/api/v1/authenticate') {
      const body = JSON.parse((await readAll(req)).toString('utf8')) as { username?: string; password?: string };
      if (body.username !== this.options.username || body.password !== this.options.password) {
        this.counts.refusedLogins++;
        // Some servers echo what they got: the client must not pass it on to logs.
        return json(401, { message: `invalid credentials for ${body.username} with password ${body.password}` });
      }
      this.counts.logins++;
      return json(200, { username: body.username, token: await this.#issue() });
    }

    const token = this.#bearer(req);
    if (!token) {
      await drain(req);
      if (route === '/api/v1/renewToken') this.counts.refusedRenewals++;
      this.counts.unauthorized++;
      return void res.writeHead(401, { 'www-authenticate': 'Bearer' }).end('Unauthorized');
    }

    if (req.method === 'GET' && route === '/api/v1/renewToken') {
      this.counts.renewals++;
      return json(200, { username: this.options.username, token: await this.#issue() });
    }

    if (req.method === 'POST' && route === '/api/v1/people/fileDocuments/upload') {
      const boundary = /boundary=(?:"([^"]+)"|([^;]+))/.exec(req.headers['content-type'] ?? '');
      if (!boundary) {
        await drain(req);
        return void res.writeHead(400).end('not multipart');
      }
      const parts = await parseMultipart(req, (boundary[1] ?? boundary[2])!);
      const fields: Record<string, string> = {};
      let file: ParsedPart | undefined;
      for (const part of parts) {
        if (part.fileName !== undefined) file = part;
        else fields[part.name] = part.data?.toString('utf8') ?? '';
      }
      if (!file || !fields.personId || !fields.name) return void res.writeHead(400).end('personId, name and file are required');
      const id = fields.publicId ?? randomUUID();
      const doc: StoredDocument = { upload: { fields, file } };
      if (file.data) doc.data = file.data;
      if (file.contentType) doc.contentType = file.contentType;
      this.documents.set(`${fields.personId}/${id}`, doc);
      return void res.writeHead(200).end();
    }

    let m = /^\/api\/v1\/people\/([^/]+)\/fileDocuments\/([^/]+)\/data$/.exec(route);
    if (req.method === 'GET' && m) return this.#sendStored(res, this.documents.get(`${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`));
    m = /^\/api\/v1\/people\/enrollmentPhoto\/([^/]+)$/.exec(route);
    if (req.method === 'GET' && m) return this.#sendStored(res, this.photos.get(decodeURIComponent(m[1]!)));
    m = /^\/api\/v1\/people\/detectionPhoto\/([^/]+)\/([^/]+)$/.exec(route);
    if (req.method === 'GET' && m) return this.#sendStored(res, this.photos.get(`${decodeURIComponent(m[1]!)}/${decodeURIComponent(m[2]!)}`));
    m = /^\/api\/v1\/people\/detections\/(personId|faceId)\/([^/]+)$/.exec(route);
    if (req.method === 'GET' && m) {
      const take = Number(url.searchParams.get('take') ?? 10);
      const items = Array.from({ length: take }, (_, i) => ({
        confidence: 0.9,
        dateTimeUtc: new Date(Date.UTC(2024, 0, 1, 0, 0, i)).toISOString(),
        timeZone: 'UTC',
        detector: `${m![1]}:${m![2]}`,
        image: null,
        extraField: 'ignored',
        query: Object.fromEntries(url.searchParams),
      }));
      return json(200, items);
    }
    if (req.method === 'GET' && route === '/api/v1/people') {
      return json(200, [{ personId: `p-${url.searchParams.get('tagId')}-1` }, { personId: `p-${url.searchParams.get('tagId')}-2` }]);
    }
    m = /^\/api\/v1\/people\/([^/]+)$/.exec(route);
    if (req.method === 'GET' && m) return json(200, { personId: decodeURIComponent(m[1]!), aliases: [{ firstName: 'Ada', lastName: 'L' }] });

    return void res.writeHead(404).end('unknown route');
  }

  #sendStored(res: http.ServerResponse, doc: StoredDocument | undefined): void {
    if (!doc) return void res.writeHead(404).end('not found');
    const headers: http.OutgoingHttpHeaders = { 'content-type': doc.contentType ?? 'application/octet-stream' };
    if (doc.contentDisposition) headers['content-disposition'] = doc.contentDisposition;
    if (doc.filePath) {
      res.writeHead(200, headers);
      createReadStream(doc.filePath).pipe(res);
      return;
    }
    res.writeHead(200, headers).end(doc.data ?? Buffer.alloc(0));
  }
}

export async function startApiTestServer(options: ApiTestServerOptions = {}): Promise<ApiTestServer> {
  return new ApiTestServer(options).start();
}

async function readAll(req: http.IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of req) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

async function drain(req: http.IncomingMessage): Promise<void> {
  for await (const _ of req) {
    /* discard */
  }
}
