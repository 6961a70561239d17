import type { IncomingMessage, ServerResponse } from 'node:http';
import { createHash, randomUUID } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { faultSettingsProblems, type FaultSettings } from './fault-settings.ts';
import { isGuid } from './guid.ts';
import { readJson, sendJson, sendStatus } from './http-response.ts';
import type { SandboxContext } from './sandbox-context.ts';

/** The admin surface (`--admin`): what the sandbox does to itself or tells about itself. */
export interface AdminActions {
  setFaults(f: FaultSettings): void;
  revokeAll(): void;
  resetStats(): void;
  bumpEnrollmentVersion(faceId: string): number;
}

/** GET/POST/PUT/DELETE under /_admin at the server root: no auth, no faults, not counted in stats. */
export async function handleAdmin(ctx: SandboxContext, actions: AdminActions, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
  const method = req.method ?? 'GET';
  const rest = pathname.replace(/^\/_admin\/?/, '').replace(/\/+$/, '');
  const route = `${method} ${rest}`;
  if (route === 'GET documents') return sendJson(res, 200, ctx.documents.list());
  if (route === 'GET document-tally') return sendJson(res, 200, ctx.documents.tally());
  if (route === 'GET stats') return sendJson(res, 200, ctx.stats.snapshot());
  if (route === 'POST reset-stats') {
    actions.resetStats();
    return sendStatus(res, 204);
  }
  if (route === 'GET faults') return sendJson(res, 200, ctx.faults.get());
  if (route === 'PUT faults') {
    const body = await readJson(req);
    if (!body.ok) return sendStatus(res, 400, body.reason);
    const problems = faultSettingsProblems(body.value);
    if (problems.length > 0) return sendJson(res, 400, { errors: problems });
    actions.setFaults(body.value as FaultSettings);
    return sendJson(res, 200, ctx.faults.get());
  }
  if (route === 'POST revoke') {
    actions.revokeAll();
    return sendStatus(res, 204);
  }
  const bump = /^POST faces\/([^/]+)\/enrollment-version$/.exec(route);
  if (bump) {
    const faceId = decodeURIComponent(bump[1]!);
    if (!isGuid(faceId)) return sendStatus(res, 400, 'faceId must be a GUID');
    return sendJson(res, 200, { faceId, version: actions.bumpEnrollmentVersion(faceId) });
  }
  if (route === 'POST detections') return addDetection(ctx, req, res);
  const doc = /^(PUT|DELETE) documents\/([^/]+)\/([^/]+)$/.exec(route);
  if (doc) {
    const personId = decodeURIComponent(doc[2]!);
    const documentId = decodeURIComponent(doc[3]!);
    if (!isGuid(personId) || !isGuid(documentId)) return sendStatus(res, 400, 'personId and documentId must be GUIDs');
    if (doc[1] === 'DELETE') return sendStatus(res, ctx.documents.remove(personId, documentId) ? 204 : 404);
    return replaceDocument(ctx, req, res, personId, documentId);
  }
  sendStatus(res, 404);
}

/** The request's body becomes the document's bytes (its metadata stays): so tests can make a server copy differ. */
async function replaceDocument(ctx: SandboxContext, req: IncomingMessage, res: ServerResponse, personId: string, documentId: string): Promise<void> {
  if (!ctx.documents.find(personId, documentId)) {
    req.resume();
    return sendStatus(res, 404);
  }
  const incoming = ctx.documents.incomingPath();
  if (incoming === undefined) {
    req.resume();
    return sendStatus(res, 404);
  }
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (chunk: Buffer) => {
    hash.update(chunk);
    bytes += chunk.length;
  });
  try {
    await pipeline(req, createWriteStream(incoming));
  } catch (err) {
    ctx.documents.discard(incoming);
    throw err;
  }
  if (!ctx.documents.replace(personId, documentId, incoming, { bytes, sha256: hash.digest('hex') })) return sendStatus(res, 404);
  sendJson(res, 200, ctx.documents.find(personId, documentId)!.info);
}

async function addDetection(ctx: SandboxContext, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await readJson(req);
  if (!body.ok) return sendStatus(res, 400, body.reason);
  const d = (body.value ?? {}) as { personId?: unknown; faceId?: unknown; dateTimeUtc?: unknown; detector?: unknown; image?: unknown; timeZone?: unknown; confidence?: unknown; detectionId?: unknown };
  const timeMs = typeof d.dateTimeUtc === 'string' ? Date.parse(d.dateTimeUtc) : Number.NaN;
  if (typeof d.personId !== 'string' || !isGuid(d.personId) || Number.isNaN(timeMs)) {
    return sendStatus(res, 400, 'expected {personId, faceId?, dateTimeUtc, detector?, image? (base64 or null), timeZone?, confidence?}');
  }
  const personId = d.personId.toLowerCase();
  const faceId = typeof d.faceId === 'string' && isGuid(d.faceId) ? d.faceId.toLowerCase() : ctx.people.facesOf(personId)[0]!;
  const detection = {
    personId,
    faceId,
    detectionId: typeof d.detectionId === 'string' && isGuid(d.detectionId) ? d.detectionId : randomUUID(),
    timeMs,
    detector: typeof d.detector === 'string' ? d.detector : 'Admin',
    timeZone: typeof d.timeZone === 'string' ? d.timeZone : 'UTC',
    confidence: typeof d.confidence === 'number' ? d.confidence : 0.99,
    image: d.image === null ? null : typeof d.image === 'string' ? d.image : undefined,
  };
  ctx.detections.add(detection);
  sendJson(res, 201, { ...detection, dateTimeUtc: new Date(timeMs).toISOString() });
}
