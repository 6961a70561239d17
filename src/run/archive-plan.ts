import type { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type { ApiClient } from '../api/client.ts';
import type { Logger } from '../log.ts';
import { jobIdFor, QUEUE_PREFIX } from '../queue/queue-names.ts';
import { RunStore } from '../queue/run-store.ts';
import type { RowResult } from '../report/row-result.ts';
import { readArchiveTargets, type ArchiveTarget } from '../sources/archive-targets.ts';
import type { ArchiveDetectionsJobData, ArchiveEnrollmentJobData, ArchiveSpec } from '../../jobs/archive-job-data.ts';
import { compactUtcMs } from '../sources/archive-names.ts';

/** Without --since, a person's first window reaches back this far. */
export const DEFAULT_FIRST_WINDOW_MS = 24 * 3600 * 1000;

/** Plans are kept as long as runs are (run-store.ts). */
const PLAN_TTL_SECONDS = 30 * 24 * 3600;
const BATCH = 500;

export function archiveRunId(archiveKey: string, runAtMs: number): string {
  return `archive-${archiveKey}-${compactUtcMs(runAtMs)}`;
}

function planKey(runId: string): string {
  return `${QUEUE_PREFIX}:run:${runId}:plan`;
}

export interface PlannedRun {
  runId: string;
  targets: ArchiveTarget[];
  queued: number;
}

/**
 * Turns one archive run into jobs: one per face, one per person, ids `<runId>-<row>` so that
 * planning the same run twice (a retried tick) adds nothing twice. Invalid and repeated lines
 * get their result at once. The list of lines is kept in Redis for whoever writes the report.
 */
export async function planArchiveRun(args: {
  spec: ArchiveSpec;
  runId: string;
  runAtMs: number;
  queue: Queue;
  redis: Redis;
  client: ApiClient;
  log: Logger;
  signal?: AbortSignal;
}): Promise<PlannedRun> {
  const { spec, runId, runAtMs } = args;
  const runs = new RunStore(args.redis, runId);
  const targets = await readArchiveTargets({
    faces: spec.faces,
    ...(spec.persons ? { persons: spec.persons } : {}),
    ...(spec.tag ? { tag: spec.tag } : {}),
    client: args.client,
    ...(args.signal ? { signal: args.signal } : {}),
  });
  await runs.saveMeta({ runId, command: 'archive', apiUrl: spec.apiUrl, manifest: spec.faces, manifestSha256: '', createdAt: runAtMs, total: targets.length });
  const key = planKey(runId);
  await args.redis.del(key);
  for (let i = 0; i < targets.length; i += BATCH) await args.redis.rpush(key, ...targets.slice(i, i + BATCH).map((t) => JSON.stringify(t)));
  await args.redis.expire(key, PLAN_TTL_SECONDS);

  const firstStartMs = spec.sinceMs ?? runAtMs - DEFAULT_FIRST_WINDOW_MS;
  const settled: RowResult[] = [];
  const jobs: Array<{ name: string; data: ArchiveEnrollmentJobData | ArchiveDetectionsJobData; opts: Record<string, unknown> }> = [];
  for (const t of targets) {
    const ids = t.kind === 'face' ? { faceId: t.id } : { personId: t.id };
    if (t.invalid) {
      settled.push({ row: t.row, status: 'rejected', action: 'validate', ...ids, error: t.invalid, errorCode: 'E_ROW_INVALID', finishedAt: Date.now() });
      continue;
    }
    if (t.duplicateOf !== undefined) {
      settled.push({ row: t.row, status: 'skipped', action: `duplicate of line ${t.duplicateOf}`, ...ids, finishedAt: Date.now() });
      continue;
    }
    const opts = { jobId: jobIdFor(runId, t.row), attempts: spec.attempts, backoff: { type: 'idsync' }, removeOnComplete: true, removeOnFail: true };
    if (t.kind === 'face') {
      jobs.push({ name: 'archive-enrollment', data: { kind: 'archive-enrollment', runId, row: t.row, item: { faceId: t.id }, outDir: spec.outDir, runAtMs }, opts });
    } else {
      jobs.push({
        name: 'archive-detections',
        data: {
          kind: 'archive-detections',
          runId,
          row: t.row,
          item: { personId: t.id },
          outDir: spec.outDir,
          archiveKey: spec.archiveKey,
          firstStartMs,
          explicitSince: spec.sinceMs !== undefined,
          windowEndMs: runAtMs,
          pageSize: spec.pageSize,
        },
        opts,
      });
    }
  }
  await runs.setResults(settled);
  for (let i = 0; i < jobs.length; i += BATCH) await args.queue.addBulk(jobs.slice(i, i + BATCH) as never);
  args.log.info({ runId, faces: targets.filter((t) => t.kind === 'face').length, persons: targets.filter((t) => t.kind === 'person').length, queued: jobs.length }, 'archive run planned');
  return { runId, targets, queued: jobs.length };
}

export async function loadPlan(redis: Redis, runId: string): Promise<ArchiveTarget[]> {
  const raw = await redis.lrange(planKey(runId), 0, -1);
  return raw.map((r) => JSON.parse(r) as ArchiveTarget);
}
