import { archiveDetections } from './archive-detections.ts';
import { archiveEnrollment } from './archive-enrollment.ts';
import { archiveReport } from './archive-report.ts';
import { archiveTick } from './archive-tick.ts';
import { download } from './download.ts';
import type { JobKind } from './job-kind.ts';
import { upload } from './upload.ts';
import { verify } from './verify.ts';

/** Every kind of job idsync runs; the engine looks kinds up here by name. */
export const JOB_KINDS: readonly JobKind[] = [upload, download, archiveEnrollment, archiveDetections, archiveTick, archiveReport, verify] as JobKind[];

const BY_NAME = new Map(JOB_KINDS.map((k) => [k.name, k]));

export function jobKind(name: string): JobKind | undefined {
  return BY_NAME.get(name);
}
