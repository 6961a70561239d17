import { createReadStream } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { DEFAULT_WINDOW_MS, MAX_TAKE, type DetectionQuery } from './detection-schedule.ts';
import { readJson, sendBuffer, sendJson, sendStatus, sendStream, type BodyPacing } from './http-response.ts';
import type { Permission } from './permissions.ts';
import type { RouteName } from './route-table.ts';
import type { BadPhotoKind } from './fault-injector.ts';
import type { SandboxContext } from './sandbox-context.ts';
import type { TokenClaims } from './token-issuer.ts';
import { handleUpload } from './upload-handler.ts';

export interface ApiRequest {
  route: RouteName;
  params: Record<string, string>;
  query: URLSearchParams;
  pacing: BodyPacing;
  loseResponse: boolean;
}

/** What each route needs beyond a valid login (docs/api-contract.md). */
const REQUIRED: Partial<Record<RouteName, Permission>> = {
  upload: 'Add Identity Files',
  documentData: 'Read Identity Files',
  detectionsByPerson: 'Read Detections',
  detectionsByFace: 'Read Detections',
  people: 'Read All Identity',
  person: 'Read All Identity',
};

export async function handleApi(ctx: SandboxContext, req: IncomingMessage, res: ServerResponse, r: ApiRequest): Promise<void> {
  if (r.route === 'authenticate') return authenticate(ctx, req, res, r);
  const check = await ctx.tokens.check(req.headers.authorization);
  if (!check.ok) {
    const error = check.reason === 'missing' ? 'Bearer' : `Bearer error="invalid_token", error_description="the token ${check.reason === 'invalid' ? 'is invalid' : `was ${check.reason}`}"`;
    sendStatus(res, 401, '', { 'WWW-Authenticate': error });
    return;
  }
  const needed = REQUIRED[r.route];
  if (needed && !check.claims.permissions.includes(needed)) {
    sendStatus(res, 403, `Forbidden: requires the permission "${needed}"`);
    return;
  }
  switch (r.route) {
    case 'renewToken':
      return renew(ctx, res, check.claims, r);
    case 'enrollmentPhoto':
      return sendPhoto(ctx, res, ctx.photos.enrollmentPhoto(r.params.faceId!), r);
    case 'detectionPhoto':
      return sendPhoto(ctx, res, ctx.photos.detectionPhoto(r.params.faceId!, r.params.detectionId!), r);
    case 'upload':
      return handleUpload(ctx, req, res, r.loseResponse);
    case 'documentData':
      return sendDocument(ctx, res, r);
    case 'detectionsByPerson':
    case 'detectionsByFace':
      return listDetections(ctx, res, r);
    case 'people': {
      const tagId = r.query.get('tagId') ?? r.query.get('tagid');
      return sendJson(res, 200, tagId ? ctx.people.peopleWithTag(tagId) : ctx.people.pinnedPeople(), r.pacing);
    }
    case 'person': {
      const person = ctx.people.person(r.params.personId!);
      return person ? sendJson(res, 200, person, r.pacing) : sendStatus(res, 404);
    }
  }
}

async function authenticate(ctx: SandboxContext, req: IncomingMessage, res: ServerResponse, r: ApiRequest): Promise<void> {
  const body = await readJson(req);
  const creds = body.ok ? (body.value as { username?: unknown; password?: unknown } | null) : null;
  if (!creds || typeof creds.username !== 'string' || typeof creds.password !== 'string') {
    sendStatus(res, 400, 'Expected JSON {"username": "...", "password": "..."}');
    return;
  }
  const user = ctx.users.find((u) => u.username === creds.username && u.password === creds.password);
  if (!user) {
    sendStatus(res, 401, 'Invalid username or password');
    return;
  }
  ctx.stats.count('logins');
  sendJson(res, 200, { username: user.username, token: await ctx.tokens.issue(user.username, user.permissions) }, r.pacing);
}

async function renew(ctx: SandboxContext, res: ServerResponse, claims: TokenClaims, r: ApiRequest): Promise<void> {
  const user = ctx.users.find((u) => u.username === claims.username);
  if (!user) {
    sendStatus(res, 401);
    return;
  }
  ctx.stats.count('renewals');
  sendJson(res, 200, { username: user.username, token: await ctx.tokens.issue(user.username, user.permissions) }, r.pacing);
}

/** What the badPhotoRate fault sends with 200 instead of the JPEG. */
const BAD_PHOTO: Record<BadPhotoKind, { type: string; body: string }> = {
  html: { type: 'text/html; charset=utf-8', body: '<!DOCTYPE html><html><head><title>Sign in</title></head><body><form method="post" action="/login"><input name="user"></form></body></html>' },
  json: { type: 'application/json; charset=utf-8', body: '{"error":"session expired","status":401}' },
  empty: { type: 'image/jpeg', body: '' },
};

function sendPhoto(ctx: SandboxContext, res: ServerResponse, bytes: Buffer | undefined, r: ApiRequest): void {
  if (!bytes) return sendStatus(res, 404);
  const bad = ctx.faults.badPhoto();
  if (bad) sendBuffer(res, 200, BAD_PHOTO[bad].body, { 'Content-Type': BAD_PHOTO[bad].type }, r.pacing);
  else sendBuffer(res, 200, bytes, { 'Content-Type': 'image/jpeg' }, r.pacing);
}

function sendDocument(ctx: SandboxContext, res: ServerResponse, r: ApiRequest): void {
  const found = ctx.documents.find(r.params.personId!, r.params.documentId!);
  if (!found) {
    sendStatus(res, 404);
    return;
  }
  const { info, file } = found;
  const ascii = info.fileName.replace(/[^\x20-\x7e]|["\\]/g, '_');
  const headers = {
    'Content-Type': info.contentType,
    'Content-Length': info.bytes,
    'Content-Disposition': `attachment; filename="${ascii}"; filename*=UTF-8''${encodeURIComponent(info.fileName)}`,
  };
  sendStream(res, 200, createReadStream(file), headers, r.pacing);
}

function listDetections(ctx: SandboxContext, res: ServerResponse, r: ApiRequest): void {
  const parsed = detectionQuery(r.query, ctx.now());
  if (typeof parsed === 'string') {
    sendStatus(res, 400, parsed);
    return;
  }
  let items;
  if (r.route === 'detectionsByFace') {
    const faceId = r.params.faceId!.toLowerCase();
    if (!ctx.people.faceExists(faceId)) return sendStatus(res, 404);
    items = ctx.detections.list([faceId], parsed, (d) => d.faceId === faceId);
  } else {
    const personId = r.params.personId!.toLowerCase();
    if (!ctx.people.person(personId)) return sendStatus(res, 404);
    items = ctx.detections.list(ctx.people.facesOf(personId), parsed, (d) => d.personId === personId);
  }
  sendJson(res, 200, items, r.pacing);
}

/** Parses the listing's query like ASP.NET binding would: a malformed number or boolean is a 400. */
export function detectionQuery(query: URLSearchParams, nowMs: number): DetectionQuery | string {
  const get = (name: string) => {
    for (const [k, v] of query) if (k.toLowerCase() === name.toLowerCase()) return v;
    return undefined;
  };
  const int = (name: string, fallback: number): number | string => {
    const text = get(name);
    if (text === undefined || text === '') return fallback;
    if (!/^-?\d+$/.test(text.trim())) return `The value '${text}' is not valid for ${name}.`;
    return Number(text);
  };
  const skip = int('skip', 0);
  const take = int('take', 10);
  const endRaw = int('epochEndMs', Number.NaN);
  const startRaw = int('epochStartMs', Number.NaN);
  for (const v of [skip, take, endRaw, startRaw]) if (typeof v === 'string') return v;
  const asc = get('dateAscending');
  let ascending = true;
  if (asc !== undefined && asc !== '') {
    if (!/^(true|false)$/i.test(asc.trim())) return `The value '${asc}' is not valid for dateAscending.`;
    ascending = asc.trim().toLowerCase() === 'true';
  }
  if ((skip as number) < 0 || (take as number) < 0) return 'skip and take must not be negative';
  const endMs = Number.isNaN(endRaw as number) ? nowMs : (endRaw as number);
  const startMs = Number.isNaN(startRaw as number) ? endMs - DEFAULT_WINDOW_MS : (startRaw as number);
  return { startMs, endMs, skip: skip as number, take: Math.min(take as number, MAX_TAKE), ascending };
}
