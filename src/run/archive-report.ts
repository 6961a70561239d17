import path from 'node:path';
import type { Redis } from 'ioredis';
import { RunStore } from '../queue/run-store.ts';
import { ReportWriter, type RunSummary } from '../report/report-writer.ts';
import type { RowResult } from '../report/row-result.ts';
import type { ArchiveTarget } from '../sources/archive-targets.ts';
import { loadPlan } from './archive-plan.ts';

/** The columns an archive report line carries besides the standard ones (and failed.csv's format). */
const LINE_COLUMNS = ['kind', 'faceId', 'personId'];
const KNOWN = ['faceId', 'personId'];

function lineValues(t: ArchiveTarget): Record<string, string> {
  return { kind: t.kind, faceId: t.kind === 'face' ? t.id : '', personId: t.kind === 'person' ? t.id : '' };
}

/**
 * Writes the usual report (report.csv, report.jsonl, failed.csv, summary.json) for one archive
 * run: one line per face, then one per person, in the order of the input files.
 */
export async function writeArchiveReport(args: {
  redis: Redis;
  runId: string;
  reportDir: string;
  startedAtMs: number;
  endedAtMs: number;
  interrupted: boolean;
  /** Why a line without a result has none. */
  missing: { code: string; text: string };
}): Promise<RunSummary> {
  const runs = new RunStore(args.redis, args.runId);
  const plan = await loadPlan(args.redis, args.runId);
  const writer = new ReportWriter(args.reportDir, LINE_COLUMNS, KNOWN);
  await writer.guard(async () => {
    for (let i = 0; i < plan.length; i += 1000) {
      const batch = plan.slice(i, i + 1000);
      const results = await runs.getResults(batch.map((t) => t.row));
      for (let j = 0; j < batch.length; j++) {
        const t = batch[j]!;
        const result: RowResult = results[j] ?? {
          row: t.row,
          status: 'failed',
          action: t.kind === 'face' ? 'archive-enrollment' : 'archive-detections',
          ...(t.kind === 'face' ? { faceId: t.id } : { personId: t.id }),
          error: args.missing.text,
          errorCode: args.missing.code,
        };
        await writer.add(result, lineValues(t));
      }
    }
  });
  return writer.finish({
    runId: args.runId,
    command: 'archive',
    startedAt: new Date(args.startedAtMs).toISOString(),
    endedAt: new Date(args.endedAtMs).toISOString(),
    interrupted: args.interrupted,
    seconds: Math.max(0, (args.endedAtMs - args.startedAtMs) / 1000),
  });
}

export function summaryLines(s: RunSummary): string[] {
  const c = s.counts;
  const lines = [
    `archive${s.interrupted ? ' (interrupted)' : ''} ${s.runId}: ${s.rows} lines: ${c.succeeded} succeeded, ${c.skipped} skipped, ${c.failed} failed, ${c.rejected} rejected; ${s.bytes} bytes in ${s.seconds.toFixed(1)} s`,
    `report: ${path.join(s.reportDir, 'report.csv')}`,
  ];
  if (c.failed > 0) lines.push('failed faces and persons are tried again by the next run; a failed person\'s window was not skipped (its watermark did not move)');
  return lines;
}
