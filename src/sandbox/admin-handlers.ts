import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomUUID } from 'node:crypto';
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

/** GET/POST/PUT under /_admin at the server root: no auth, no faults, not counted in stats. */
export async function handleAdmin(ctx: SandboxContext, actions: AdminActions, req: IncomingMessage, res: ServerResponse, pathname: string): Promise<void> {
  const method = req.method ?? 'GET';
  const rest = pathname.replace(/^\/_admin\/?/, '').replace(/\/+$/, '');
  const route = `${method} ${rest}`;
  if (route === 'GET documents') return sendJson(res, 200, ctx.documents.list());
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
  sendStatus(res, 404);
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
