import { constants, type Stats } from 'node:fs';
import { open, readdir, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * A run's report files, for the dashboard's links: only the files idsync writes into a report dir
 * (report.csv, report.jsonl, failed.csv, summary.json, a watch's daily ingest logs, and their
 * `.partial` forms while the run goes on), regular files directly in the dir, opened without
 * following a link swapped in meanwhile. The report dir is the one the run recorded in Redis,
 * which anyone who can write to Redis can change: so no other name is ever served, and a dir
 * whose summary.json names another run serves nothing. On another machine the dir is usually
 * absent, and the dashboard says so.
 */

export interface ReportFile {
  name: string;
  bytes: number;
}

const SAFE_NAME = /^(?:report\.csv|report\.jsonl|failed\.csv|summary\.json|ingest-\d{4}-\d{2}-\d{2}\.(?:csv|jsonl))(?:\.partial)?$/;
const SUMMARY_MAX_BYTES = 1 << 20;

const TYPES: Record<string, string> = {
  '.csv': 'text/csv; charset=utf-8',
  '.jsonl': 'text/plain; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.txt': 'text/plain; charset=utf-8',
  '.log': 'text/plain; charset=utf-8',
};

export function contentTypeOf(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? 'application/octet-stream';
}

/** The report files of a run, by name; undefined when its report dir is not on this machine. */
export async function listReportFiles(reportDir: string | undefined, runId: string): Promise<ReportFile[] | undefined> {
  if (!reportDir || !path.isAbsolute(reportDir)) return undefined;
  if (!(await belongsTo(reportDir, runId))) return undefined;
  let entries;
  try {
    entries = await readdir(reportDir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  const files: ReportFile[] = [];
  for (const e of entries) {
    if (!e.isFile() || !SAFE_NAME.test(e.name)) continue;
    const opened = await openIn(reportDir, e.name);
    if (!opened) continue;
    files.push({ name: e.name, bytes: opened.stats.size });
    await opened.handle.close();
  }
  return files.sort((a, b) => a.name.localeCompare(b.name));
}

/** Opens one report file of the run for reading, or undefined when it is not one (see above). */
export async function openReportFile(reportDir: string, runId: string, name: string): Promise<{ handle: FileHandle; stats: Stats } | undefined> {
  if (!SAFE_NAME.test(name) || !path.isAbsolute(reportDir)) return undefined;
  if (!(await belongsTo(reportDir, runId))) return undefined;
  return openIn(reportDir, name);
}

/** Whether the dir is this run's: its summary.json, once written, names the run. */
async function belongsTo(reportDir: string, runId: string): Promise<boolean> {
  const opened = await openIn(reportDir, 'summary.json');
  if (!opened) return true;
  try {
    if (opened.stats.size > SUMMARY_MAX_BYTES) return false;
    const summary = JSON.parse(await opened.handle.readFile('utf8')) as { runId?: unknown };
    return summary.runId === runId;
  } catch {
    return false;
  } finally {
    await opened.handle.close();
  }
}

async function openIn(reportDir: string, name: string): Promise<{ handle: FileHandle; stats: Stats } | undefined> {
  let dir: string;
  try {
    dir = await realpath(reportDir);
  } catch {
    return undefined;
  }
  const file = path.join(dir, name);
  if (path.dirname(file) !== dir) return undefined;
  let handle: FileHandle | undefined;
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
    const stats = await handle.stat();
    if (!stats.isFile()) {
      await handle.close();
      return undefined;
    }
    return { handle, stats };
  } catch {
    await handle?.close().catch(() => undefined);
    return undefined;
  }
}
