import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import busboy from 'busboy';
import { isGuid } from './guid.ts';
import { sendStatus, sendValidationProblem } from './http-response.ts';
import type { SandboxContext } from './sandbox-context.ts';

interface ReceivedFile {
  /** Undefined when the sandbox keeps no bytes (`--keep none`). */
  path: string | undefined;
  fileName: string;
  contentType: string;
  bytes: number;
  sha256: string;
}

/**
 * POST fileDocuments/upload. The file part streams straight to disk (never buffered whole),
 * whatever order the parts come in; the fields are checked once the whole form is read,
 * as ASP.NET model binding does, and only then is the file moved into the store.
 */
export async function handleUpload(ctx: SandboxContext, req: IncomingMessage, res: ServerResponse, loseResponse: boolean): Promise<void> {
  ctx.stats.count('uploadRequests');
  const type = req.headers['content-type'] ?? '';
  if (!/^multipart\/form-data\s*;/i.test(type)) {
    sendStatus(res, 400, 'Incorrect Content-Type: expected multipart/form-data');
    return;
  }
  let parser: busboy.Busboy;
  try {
    parser = busboy({ headers: req.headers, limits: { fields: 100, fieldSize: 1024 * 1024, parts: 200 } });
  } catch (err) {
    sendStatus(res, 400, `Bad multipart request: ${(err as Error).message}`);
    return;
  }
  const fields = new Map<string, string>();
  let file: Promise<ReceivedFile> | undefined;
  let fileStream: NodeJS.ReadableStream & { destroy?: (err?: Error) => void } | undefined;
  const parsed = new Promise<void>((resolve, reject) => {
    req.on('close', () => {
      if (req.complete) return;
      // The client went away mid-upload: nothing is stored, the partial file goes.
      const err = new Error('client aborted the upload');
      fileStream?.destroy?.(err);
      reject(err);
    });
    parser.on('field', (name, value) => {
      // ASP.NET binds form fields case-insensitively; the first value wins.
      const key = name.toLowerCase();
      if (!fields.has(key)) fields.set(key, value);
    });
    parser.on('file', (_name, stream, info) => {
      if (file || !info.filename) {
        stream.resume();
        return;
      }
      fileStream = stream;
      file = receiveFile(ctx, stream, info.filename, info.mimeType);
      file.catch(() => {});
    });
    parser.on('close', resolve);
    parser.on('error', reject);
  });
  let received: ReceivedFile | undefined;
  try {
    req.pipe(parser);
    await parsed;
    received = file ? await file : undefined;
  } catch (err) {
    if (file) await file.then((f) => ctx.documents.discard(f.path), () => {});
    if (!res.headersSent && !res.destroyed) sendStatus(res, 400, `Bad multipart request: ${(err as Error).message}`);
    return;
  }
  const personId = fields.get('personid')?.trim() ?? '';
  const name = fields.get('name') ?? '';
  const errors: Record<string, string[]> = {};
  if (!personId) errors.PersonId = ['The PersonId field is required.'];
  else if (!isGuid(personId)) errors.PersonId = [`The value '${personId}' is not valid for PersonId.`];
  if (!name.trim()) errors.Name = ['The Name field is required.'];
  if (!received) errors.File = ['The File field is required.'];
  const publicId = fields.get('publicid')?.trim() || undefined;
  if (publicId !== undefined && !isGuid(publicId)) errors.PublicId = [`The value '${publicId}' is not valid for PublicId.`];
  if (Object.keys(errors).length > 0 || !received) {
    if (received) ctx.documents.discard(received.path);
    sendValidationProblem(res, errors);
    return;
  }
  const outcome = ctx.documents.commit(received.path, {
    personId,
    documentId: publicId ?? randomUUID(),
    name,
    description: fields.get('description') ?? '',
    fileName: received.fileName,
    contentType: received.contentType,
    bytes: received.bytes,
    sha256: received.sha256,
  });
  if (outcome === 'duplicate-rejected') {
    sendStatus(res, 409, `A document with publicId ${publicId} already exists for person ${personId}.`);
    return;
  }
  ctx.stats.count('uploads');
  if (loseResponse) {
    // The lost-response fault: stored for good, but the client never hears so.
    res.destroy();
    return;
  }
  sendStatus(res, 200);
}

/** Where the bytes of an upload go when none are kept: they are only hashed and counted. */
function nowhere(): Writable {
  return new Writable({ write: (_chunk, _encoding, done) => done() });
}

async function receiveFile(ctx: SandboxContext, stream: NodeJS.ReadableStream, fileName: string, contentType: string): Promise<ReceivedFile> {
  const path = ctx.documents.incomingPath();
  const hash = createHash('sha256');
  let bytes = 0;
  stream.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  try {
    await pipeline(stream, path === undefined ? nowhere() : createWriteStream(path));
  } catch (err) {
    ctx.documents.discard(path);
    throw err;
  }
  if ((stream as unknown as { truncated?: boolean }).truncated) {
    ctx.documents.discard(path);
    throw new Error('file part truncated');
  }
  return { path, fileName, contentType: contentType || 'application/octet-stream', bytes, sha256: hash.digest('hex') };
}
