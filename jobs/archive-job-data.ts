/** Payloads of `idsync archive`'s jobs (see docs/archive.md). Kept JSON-plain: they live in Redis. */

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
  /** Explicit --since (epoch ms); otherwise a person's first window starts at the epoch (all history). */
  sinceMs?: number;
  attempts: number;
  /** Detections asked per listing page. */
  pageSize: number;
  /** Scheduled runs write their report to <reportRoot>/<runId>. */
  reportRoot: string;
}

/** Payload of an archive-enrollment job: one face's enrollment photo. */
export interface ArchiveEnrollmentPayload {
  faceId: string;
  outDir: string;
  /** The run's time: names the kept previous version of a changed photo. */
  runAtMs: number;
}

/** Payload of an archive-detections job: one person's detection window. */
export interface ArchiveDetectionsPayload {
  personId: string;
  outDir: string;
  archiveKey: string;
  /** Start for a person seen for the first time (explicit --since, or the epoch: everything the server lists). */
  firstStartMs: number;
  /** True when --since was given: it then also replaces a stored first start. */
  explicitSince: boolean;
  /** Inclusive end of the window: the run's time. */
  windowEndMs: number;
  pageSize: number;
}

/** Added by the job scheduler at each tick: plans and queues one run. */
export interface ArchiveTickPayload {
  spec: ArchiveSpec;
}

/** Waits (as a delayed job, holding no worker slot) until a scheduled run is done, then writes its report. */
export interface ArchiveReportPayload {
  spec: ArchiveSpec;
  runId: string;
  reportDir: string;
  startedAtMs: number;
  /** Progress seen by the previous check, to notice a run whose jobs vanished. */
  lastDone?: number;
  lastChangeMs?: number;
}
