import type { IncomingMessage, ServerResponse } from 'node:http';
import { Transform, pipeline, type Readable } from 'node:stream';

/** How a response body leaves: at once, or trickling (the slow-body fault). */
export interface BodyPacing {
  slow: boolean;
  delayMs: number;
}

const FAST: BodyPacing = { slow: false, delayMs: 0 };
const SLOW_PIECES = 8;

export function sendBuffer(res: ServerResponse, status: number, body: Buffer | string, headers: Record<string, string | number>, pacing: BodyPacing = FAST): void {
  const bytes = typeof body === 'string' ? Buffer.from(body, 'utf8') : body;
  res.writeHead(status, { ...headers, 'Content-Length': bytes.length });
  if (!pacing.slow || bytes.length === 0) {
    res.end(bytes);
    return;
  }
  res.flushHeaders();
  const size = Math.ceil(bytes.length / SLOW_PIECES);
  let offset = 0;
  const step = () => {
    if (res.destroyed) return;
    const piece = bytes.subarray(offset, offset + size);
    offset += size;
    if (offset >= bytes.length) res.end(piece);
    else {
      res.write(piece);
      setTimeout(step, pacing.delayMs);
    }
  };
  setTimeout(step, pacing.delayMs);
}

export function sendJson(res: ServerResponse, status: number, value: unknown, pacing?: BodyPacing): void {
  sendBuffer(res, status, JSON.stringify(value), { 'Content-Type': 'application/json; charset=utf-8' }, pacing);
}

/** Empty-bodied answers and error answers (their bodies are short text, as the guide leaves them undocumented). */
export function sendStatus(res: ServerResponse, status: number, text = '', headers: Record<string, string | number> = {}): void {
  sendBuffer(res, status, text, text ? { 'Content-Type': 'text/plain; charset=utf-8', ...headers } : headers);
}

/** ASP.NET's answer to a failed model validation (application/problem+json). */
export function sendValidationProblem(res: ServerResponse, errors: Record<string, string[]>): void {
  sendBuffer(
    res,
    400,
    JSON.stringify({ type: 'https://tools.ietf.org/html/rfc9110#section-15.5.1', title: 'One or more validation errors occurred.', status: 400, errors }),
    { 'Content-Type': 'application/problem+json; charset=utf-8' },
  );
}

/** Streams a file (or any readable) as the body; with the slow fault each chunk waits first. */
export function sendStream(res: ServerResponse, status: number, body: Readable, headers: Record<string, string | number>, pacing: BodyPacing = FAST): void {
  res.writeHead(status, headers);
  if (pacing.slow) res.flushHeaders();
  const done = (err: unknown) => {
    if (err && !res.destroyed) res.destroy();
  };
  if (!pacing.slow) pipeline(body, res, done);
  else
    pipeline(
      body,
      new Transform({
        transform(chunk, _enc, callback) {
          setTimeout(() => callback(null, chunk), pacing.delayMs);
        },
      }),
      res,
      done,
    );
}

/** Reads a small JSON request body (admin and authenticate); undefined when it is not JSON. */
export async function readJson(req: IncomingMessage, limit = 1024 * 1024): Promise<{ ok: true; value: unknown } | { ok: false; reason: string }> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) return { ok: false, reason: 'body too large' };
    chunks.push(chunk as Buffer);
  }
  try {
    return { ok: true, value: JSON.parse(Buffer.concat(chunks).toString('utf8')) };
  } catch {
    return { ok: false, reason: 'body is not valid JSON' };
  }
}
