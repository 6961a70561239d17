import { readdir } from 'node:fs/promises';
import { readFileSync, realpathSync, type Stats } from 'node:fs';
import path from 'node:path';
import { FSWatcher } from 'chokidar';
import type { Logger } from '../log.ts';
import { systemClock, type Clock } from '../pacing/clock.ts';
import { FileSettler, type SettledFile } from './file-settler.ts';
import { networkMountFor } from './network-mount.ts';
import { ignoredReason, isInside, isSidecarName } from './watch-ignore.ts';

export interface ReadyFile extends SettledFile {
  /** Path relative to the watched folder, with `/`. */
  relPath: string;
}

export interface FolderWatcherOptions {
  /** The watched folder (must exist). */
  dir: string;
  settleMs: number;
  /** true = always poll; false/undefined = poll only where a network mount makes events unreliable. */
  poll?: boolean;
  pollIntervalMs: number;
  /** Folders under `dir` never looked into (a --processed-dir or --failed-dir inside it). */
  exclude?: string[];
  clock?: Clock;
  log: Logger;
  /** Text of /proc/self/mountinfo (injectable for tests). */
  mounts?: () => string;
  onReady(file: ReadyFile): void;
}

export interface FolderWatcher {
  /** The watched folder, symbolic links resolved. */
  dir: string;
  polling: boolean;
  /** Files seen but not yet settled. */
  pending(): number;
  /** Forget a file once it has been moved away (or given up on). */
  release(file: string): void;
  close(): Promise<void>;
}

function readMounts(): string {
  for (const file of ['/proc/self/mountinfo', '/proc/mounts']) {
    try {
      return readFileSync(file, 'utf8');
    } catch {
      // Not Linux, or /proc not mounted: try the next, then assume local.
    }
  }
  return '';
}

/**
 * Turns a folder into a stream of whole files: chokidar reports changes (or polls, on network
 * shares where change events made on other machines never arrive), and the FileSettler hands a
 * file over only once it stopped changing. Files present at start are reported too (catch-up).
 */
export async function startFolderWatcher(options: FolderWatcherOptions): Promise<FolderWatcher> {
  const { log } = options;
  const clock = options.clock ?? systemClock;
  const dir = realpathSync(options.dir);
  const exclude = (options.exclude ?? []).map((d) => path.resolve(d)).filter((d) => isInside(dir, d) && d !== dir);

  let polling = options.poll === true;
  if (polling) {
    log.info({ dir, intervalMs: options.pollIntervalMs }, 'watch: polling the folder (--poll)');
  } else {
    const mount = networkMountFor((options.mounts ?? readMounts)(), dir);
    if (mount) {
      polling = true;
      log.info(
        { dir, mountPoint: mount.mountPoint, fsType: mount.fsType, intervalMs: options.pollIntervalMs },
        `watch: ${mount.mountPoint} is a ${mount.fsType} network mount, where change events made by other machines do not arrive: polling instead`,
      );
    }
  }

  const settler = new FileSettler({
    settleMs: options.settleMs,
    clock,
    onReady(file) {
      options.onReady({ ...file, relPath: path.relative(dir, file.path).split(path.sep).join('/') });
    },
    onSkipped(file, reason) {
      log.info({ file: path.relative(dir, file), reason }, 'watch: ignoring a file');
    },
  });

  const ignored = (p: string, _stats?: Stats): boolean => {
    const rel = path.relative(dir, p);
    if (rel === '') return false;
    if (rel.startsWith('..') || path.isAbsolute(rel)) return true;
    if (ignoredReason(rel) !== undefined) return true;
    return exclude.some((d) => isInside(d, p));
  };

  const watcher = new FSWatcher({
    ignored,
    // Never follow links: a link could lead out of the folder (and its files are not ours to move).
    followSymlinks: false,
    usePolling: polling,
    interval: options.pollIntervalMs,
    binaryInterval: options.pollIntervalMs,
    ignoreInitial: false,
    ignorePermissionErrors: true,
    persistent: true,
    // The settle logic is ours (injected clock, sidecars); chokidar's awaitWriteFinish stays off.
    awaitWriteFinish: false,
    atomic: false,
  });
  watcher.on('add', (p) => settler.touch(p));
  watcher.on('change', (p) => settler.touch(p));
  watcher.on('unlink', (p) => {
    // A sidecar's removal changes its file's signature: touching the file re-checks it.
    if (isSidecarName(path.basename(p))) settler.touch(p);
  });
  watcher.on('error', (err) => log.warn({ err }, 'watch: file system watcher error'));

  const ready = new Promise<void>((resolve) => watcher.once('ready', () => resolve()));
  watcher.add(dir);
  await ready;

  const stop = new AbortController();
  const tickMs = Math.max(10, Math.min(500, Math.floor(options.settleMs / 4)));
  const loop = settler.run(tickMs, stop.signal);
  // Events can be missed (a polled share where a folder and its file appear within one poll,
  // an inotify queue overflow): a periodic rescan of the folder is the safety net.
  const rescanMs = polling ? Math.max(1000, options.pollIntervalMs * 10) : 30_000;
  const rescanTimer = setInterval(() => {
    void rescan(dir, ignored, (file) => settler.notice(file)).catch((err: unknown) => log.warn({ err }, 'watch: rescan failed'));
  }, rescanMs);
  rescanTimer.unref();
  log.info({ dir, settleMs: options.settleMs, polling }, 'watch: watching');

  return {
    dir,
    polling,
    pending: () => settler.pending,
    release: (file) => settler.release(file),
    async close() {
      clearInterval(rescanTimer);
      stop.abort();
      await watcher.close();
      await loop;
    },
  };
}

/** Every regular file under `dir` that the watcher would look at (links are not followed). */
async function rescan(dir: string, ignored: (p: string) => boolean, found: (file: string) => void): Promise<void> {
  const entries = await readdir(dir, { withFileTypes: true });
  for (const entry of entries) {
    const full = path.join(dir, entry.name);
    if (ignored(full)) continue;
    if (entry.isDirectory()) await rescan(full, ignored, found);
    else if (entry.isFile()) found(full);
  }
}
