import type { JobSchedulerJson, Queue } from 'bullmq';
import type { Config } from '../../config/load.ts';
import { UsageError } from '../../errors.ts';
import type { Logger } from '../../log.ts';
import { CONTROL_QUEUE } from '../../store/keys.ts';
import { ExitCode } from '../../engine/outcome.ts';
import { Session } from '../../engine/session.ts';
import { requireApiUrl } from '../status/state-session.ts';

/** A cron schedule stored with an API (a BullMQ job scheduler on its control queue), as operators see it. */
export interface ScheduleView {
  /** The scheduler's id: what `idsync schedules remove` takes. */
  name: string;
  /** The job kind each tick adds (`archive-tick`). */
  kind: string;
  pattern?: string;
  everyMs?: number;
  tz?: string;
  /** Next tick, epoch ms. */
  next?: number;
  /** Ticks so far. */
  ticks?: number;
  /** What an archive tick archives (from the scheduler's job template). */
  archive?: { faces?: string; outDir?: string; persons?: string; tag?: string };
}

/** Every schedule on an API's control queue, the next tick first. */
export async function readSchedules(control: Queue): Promise<ScheduleView[]> {
  return (await control.getJobSchedulers(0, -1, true)).map(scheduleView);
}

export function scheduleView(s: JobSchedulerJson): ScheduleView {
  const spec = (s.template?.data as { p?: { spec?: Record<string, unknown> } } | undefined)?.p?.spec;
  const text = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const archive = spec ? { faces: text(spec.faces), outDir: text(spec.outDir), persons: text(spec.persons), tag: text(spec.tag) } : undefined;
  if (archive) for (const k of Object.keys(archive) as Array<keyof typeof archive>) if (archive[k] === undefined) delete archive[k];
  return {
    name: s.key,
    kind: s.name,
    ...(s.pattern ? { pattern: s.pattern } : {}),
    ...(s.every ? { everyMs: s.every } : {}),
    ...(s.tz ? { tz: s.tz } : {}),
    ...(s.next ? { next: s.next } : {}),
    ...(s.iterationCount !== undefined ? { ticks: s.iterationCount } : {}),
    ...(archive ? { archive } : {}),
  };
}

/** One line per schedule: `archive-ab12… "0 * * * *" (UTC), next 2026-…: archive --faces F --out D`. */
export function scheduleLine(s: ScheduleView): string {
  const when = s.pattern ? `"${s.pattern}" (${s.tz ?? 'UTC'})` : s.everyMs ? `every ${s.everyMs} ms` : 'no pattern';
  const next = s.next ? `, next ${new Date(s.next).toISOString()}` : '';
  const what = s.archive
    ? `: archive --faces ${s.archive.faces ?? '?'} --out ${s.archive.outDir ?? '?'}${s.archive.persons ? ` --persons ${s.archive.persons}` : ''}${s.archive.tag ? ` --tag ${s.archive.tag}` : ''}`
    : ` (${s.kind})`;
  return `${s.name}  ${when}${next}${what}`;
}

export interface SchedulesOptions {
  config: Config;
  log: Logger;
  signal: AbortSignal;
  out?: (line: string) => void;
  json?: boolean;
  /** `idsync schedules remove NAME`. */
  remove?: string;
}

/** `idsync schedules [remove NAME]`: lists the API's cron schedules, or removes one. */
export async function runSchedules(o: SchedulesOptions): Promise<number> {
  const out = o.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const apiUrl = requireApiUrl(o.config, 'schedules are kept per API');
  const session = await Session.open({ config: o.config, log: o.log, signal: o.signal, login: false });
  try {
    const control = session.queue(CONTROL_QUEUE, session.storeFor(apiUrl));
    if (o.remove !== undefined) {
      const found = await control.getJobScheduler(o.remove);
      if (!found) {
        const names = (await readSchedules(control)).map((s) => s.name);
        throw new UsageError(`no schedule named ${JSON.stringify(o.remove)} for ${apiUrl}${names.length > 0 ? `; there are: ${names.join(', ')}` : ' (it has none)'}`);
      }
      await control.removeJobScheduler(o.remove);
      out(`removed schedule ${scheduleLine(scheduleView(found))}`);
      out('no further ticks are added; a tick already running finishes. A process started with `idsync archive --cron` registers it again when it starts.');
      return ExitCode.Ok;
    }
    const schedules = await readSchedules(control);
    if (o.json) out(JSON.stringify(schedules, null, 2));
    else if (schedules.length === 0) out(`no schedules for ${apiUrl}`);
    else {
      out(`schedules of ${apiUrl} (run by every \`idsync worker\` and \`idsync archive --cron\` of this API):`);
      for (const s of schedules) out(`  ${scheduleLine(s)}`);
    }
    return ExitCode.Ok;
  } finally {
    await session.close();
  }
}
