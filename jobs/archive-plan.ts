import { createHash } from 'node:crypto';
import path from 'node:path';
import type { ApiClient } from '../src/api/client.ts';
import { compactUtcMs } from '../src/outputs/archive-names.ts';
import { readArchiveTargets, type ArchiveTarget } from '../src/sources/archive-targets.ts';
import type { ApiStore } from '../src/store/api-store.ts';
import { loadPlan, savePlan } from '../src/store/archive-state.ts';
import type { ArchiveDetectionsPayload, ArchiveEnrollmentPayload, ArchiveSpec } from './archive-job-data.ts';
import type { PlannedRow, RunPlan } from './job-kind.ts';

/**
 * Without --since, a person's first window starts at the epoch: the first run archives every
 * detection the server lists (issue #17: a first run starting "24 h ago" archived none of months
 * of history). The listing takes any epochStartMs (the vendor guide sets no lower bound; the
 * sandbox takes any integer), and 0 is before any detection a server can hold.
 */
export const FIRST_WINDOW_START_MS = 0;

/** The columns an archive report line carries besides the standard ones (and failed.csv's format). */
const LINE_COLUMNS = ['kind', 'faceId', 'personId'];
const KNOWN = ['faceId', 'personId'];

/** An archive is "this API into this folder": its watermarks and its schedule belong to that pair. */
export function archiveKeyFor(apiUrl: string, outDir: string): string {
  return createHash('sha256').update(`${apiUrl}\n${path.resolve(outDir)}`).digest('hex').slice(0, 16);
}

export function archiveRunId(archiveKey: string, runAtMs: number): string {
  return `archive-${archiveKey}-${compactUtcMs(runAtMs)}`;
}

function lineValues(t: ArchiveTarget): Record<string, string> {
  return { kind: t.kind, faceId: t.kind === 'face' ? t.id : '', personId: t.kind === 'person' ? t.id : '' };
}

/**
 * One archive run as a plan: a line per face (enrollment photo), then a line per person (its
 * detection window), from FACES.csv and PERSONS.csv or a tag. The lines are read once (a tag is
 * a listing the API may answer differently later) and kept in Redis, so the report, which a
 * scheduled run's report job may write on another machine, shows the same lines.
 */
export class ArchivePlan implements RunPlan {
  readonly runId: string;
  readonly command = 'archive';
  readonly resumable = false;
  readonly input: string;
  readonly report = {
    columns: LINE_COLUMNS,
    knownColumns: KNOWN,
    action: 'archive',
    ids: (values: Record<string, string>) => (values.kind === 'face' ? { faceId: values.faceId ?? '' } : { personId: values.personId ?? '' }),
  };
  readonly #spec: ArchiveSpec;
  readonly #runAtMs: number;
  readonly #targets: () => Promise<ArchiveTarget[]>;
  #cached: ArchiveTarget[] | undefined;

  private constructor(spec: ArchiveSpec, runId: string, runAtMs: number, targets: () => Promise<ArchiveTarget[]>) {
    this.#spec = spec;
    this.runId = runId;
    this.input = spec.faces;
    this.#runAtMs = runAtMs;
    this.#targets = targets;
  }

  /** A new run: its lines read from the inputs (and the API for a tag), then kept in Redis. */
  static fresh(spec: ArchiveSpec, runId: string, runAtMs: number, store: ApiStore, client: ApiClient): ArchivePlan {
    return new ArchivePlan(spec, runId, runAtMs, async () => {
      const targets = await readArchiveTargets({ faces: spec.faces, ...(spec.persons ? { persons: spec.persons } : {}), ...(spec.tag ? { tag: spec.tag } : {}), client });
      await savePlan(store.redis, store.keys.run(runId), targets);
      return targets;
    });
  }

  /** A run planned earlier: its lines as kept in Redis. */
  static stored(spec: ArchiveSpec, runId: string, runAtMs: number, store: ApiStore): ArchivePlan {
    return new ArchivePlan(spec, runId, runAtMs, async () => (await loadPlan<ArchiveTarget>(store.redis, store.keys.run(runId))) ?? []);
  }

  async #lines(): Promise<ArchiveTarget[]> {
    this.#cached ??= await this.#targets();
    return this.#cached;
  }

  async check(): Promise<number> {
    return (await this.#lines()).length;
  }

  async *lines(): AsyncIterable<{ row: number; values: Record<string, string> }> {
    for (const t of await this.#lines()) yield { row: t.row, values: lineValues(t) };
  }

  async *rows(): AsyncIterable<PlannedRow> {
    const spec = this.#spec;
    const firstStartMs = spec.sinceMs ?? FIRST_WINDOW_START_MS;
    for (const t of await this.#lines()) {
      const values = lineValues(t);
      const ids = t.kind === 'face' ? { faceId: t.id } : { personId: t.id };
      if (t.invalid) {
        yield { row: t.row, values, result: { status: 'rejected', action: 'validate', ...ids, error: t.invalid, errorCode: 'E_ROW_INVALID' } };
      } else if (t.duplicateOf !== undefined) {
        yield { row: t.row, values, result: { status: 'skipped', action: `duplicate of line ${t.duplicateOf}`, ...ids } };
      } else if (t.kind === 'face') {
        const payload: ArchiveEnrollmentPayload = { faceId: t.id, outDir: spec.outDir, runAtMs: this.#runAtMs };
        yield { row: t.row, values, job: { kind: 'archive-enrollment', payload } };
      } else {
        const payload: ArchiveDetectionsPayload = {
          personId: t.id,
          outDir: spec.outDir,
          archiveKey: spec.archiveKey,
          firstStartMs,
          explicitSince: spec.sinceMs !== undefined,
          windowEndMs: this.#runAtMs,
          pageSize: spec.pageSize,
        };
        yield { row: t.row, values, job: { kind: 'archive-detections', payload } };
      }
    }
  }
}
