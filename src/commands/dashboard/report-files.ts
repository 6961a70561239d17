import { constants, type Stats } from 'node:fs';
import { open, readdir, realpath, type FileHandle } from 'node:fs/promises';
import path from 'node:path';

/**
 * A run's report files, for the dashboard's links: only regular files directly in the run's own
 * report dir (no links, no sub-folders, no name that could climb out), opened without following
 * a link swapped in meanwhile. The report dir is the one the run recorded; on another machine it
 * is usually absent, and the dashboard says so.
 */

export interface ReportFile {
  name: string;
  bytes: number;
}

const SAFE_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]*$/;

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
export async function listReportFiles(reportDir: string | undefined): Promise<ReportFile[] | undefined> {
  if (!reportDir || !path.isAbsolute(reportDir)) return undefined;
  let entries;
  try {
    entries = await readdir(reportDir, { withFileTypes: true });
  } catch {
    return undefined;
  }
  const files: ReportFile[] = [];
  for (const e of entries) {
    if (!e.isFile() || !SAFE_NAME.test(e.name)) continue;
    const opened = await openReportFile(reportDir, e.name);
    if (!opened) continue;
    files.push({ name: e.name, bytes: opened.stats.size });
    await opened.handle.close();
  }
  return files.sort((a, b) => a.name.localeCompare(b.name));
}

/** Opens one report file for reading, or undefined when the name is not a regular file directly in the dir. */
export async function openReportFile(reportDir: string, name: string): Promise<{ handle: FileHandle; stats: Stats } | undefined> {
  if (!SAFE_NAME.test(name) || !path.isAbsolute(reportDir)) return undefined;
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
