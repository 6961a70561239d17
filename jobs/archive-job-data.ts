/** Job data of `idsync archive` (see docs/archive.md). Kept JSON-plain: it lives in Redis. */

/** What a scheduled tick needs to plan one archive run on whichever worker takes it. */
export interface ArchiveSpec {
  /** Stable id of this archive (API + --out): keys its watermarks and its job scheduler. */
  archiveKey: string;
  apiUrl: string;
  /** Absolute --out. */
  outDir: string;
  /** Absolute FACES.csv. */
  faces: string;
  /** Absolute PERSONS.csv, or the tag whose people to archive (one of them, or neither). */
  persons?: string;
  tag?: string;
  /** Explicit --since (epoch ms); otherwise each person starts 24 h before its first run. */
  sinceMs?: number;
  attempts: number;
  /** Detections asked per listing page. */
  pageSize: number;
  /** Scheduled runs write their report to <reportRoot>/<runId>. */
  reportRoot: string;
}

export interface ArchiveEnrollmentJobData {
  kind: 'archive-enrollment';
  runId: string;
  row: number;
  item: { faceId: string };
  outDir: string;
  /** The run's time: names the kept previous version of a changed photo. */
  runAtMs: number;
  throttles?: number;
}

export interface ArchiveDetectionsJobData {
  kind: 'archive-detections';
  runId: string;
  row: number;
  item: { personId: string };
  outDir: string;
  archiveKey: string;
  /** Start for a person seen for the first time (explicit --since, or 24 h before the run). */
  firstStartMs: number;
  /** True when --since was given: it then also replaces a stored first start. */
  explicitSince: boolean;
  /** Inclusive end of the window: the run's time. */
  windowEndMs: number;
  pageSize: number;
  throttles?: number;
}

/** Added by the job scheduler at each tick: plans and enqueues one run. */
export interface ArchiveTickJobData {
  kind: 'archive-tick';
  runId: '';
  row: 0;
  spec: ArchiveSpec;
  throttles?: number;
}

/** Waits (as a delayed job, holding no worker slot) until a scheduled run is done, then writes its report. */
export interface ArchiveReportJobData {
  kind: 'archive-report';
  runId: string;
  row: 0;
  reportDir: string;
  startedAtMs: number;
  /** Progress seen by the previous check, to notice a run whose jobs vanished. */
  lastDone?: number;
  lastChangeMs?: number;
  throttles?: number;
}
