import { lstat } from 'node:fs/promises';
import type { BigIntStats, Stats } from 'node:fs';
import { identityOf, type FileIdentity } from '../folder-handle.ts';
import type { Clock } from '../pacing/clock.ts';
import { dataPathOfSidecar, isSidecarName, sidecarPathOf } from './watch-ignore.ts';
import path from 'node:path';

/** A file whose size and mtime (and its sidecar's, if any) stayed the same for the settle time. */
export interface SettledFile {
  path: string;
  size: number;
  mtimeMs: number;
  /** dev:ino of the file that settled: what is read, sent and moved must still be this file. */
  id: FileIdentity;
  /** dev:ino of the folder it settled in. */
  folderId: FileIdentity;
  /**
   * Set when the file may not be touched at all: its folder was swapped for a symbolic link while
   * it settled (whoever may write into the watched folder can do that, to make idsync read a
   * private folder). Never read, sent or moved; only reported.
   */
  unsafe?: string;
  /** Absolute path of `<file>.json` when one was there and settled with the file. */
  sidecar?: string;
  /** Set when a sidecar is there but cannot be used safely (a symbolic link, a folder). */
  sidecarProblem?: string;
}

interface Entry {
  /** Size and mtime of the file and its sidecar at the last look. */
  signature: string | undefined;
  /** Clock time of the last change seen (event or different signature). */
  since: number;
}

export interface FileSettlerOptions {
  settleMs: number;
  clock: Clock;
  onReady(file: SettledFile): void;
  /** A path that is not a regular file (symbolic link, socket …): ignored, never followed. */
  onSkipped?(file: string, reason: string): void;
}

const STAT_BATCH = 64;

async function lstatOrUndefined(p: string): Promise<Stats | undefined>;
async function lstatOrUndefined(p: string, bigint: true): Promise<BigIntStats | undefined>;
async function lstatOrUndefined(p: string, bigint = false): Promise<Stats | BigIntStats | undefined> {
  try {
    return await lstat(p, { bigint });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return undefined;
    throw err;
  }
}

/**
 * Turns "something happened to this file" into "this file is whole": a file is handed over
 * once its size and mtime, and those of its sidecar, have not changed for `settleMs`. Files
 * handed over stay "in hand" (their events are ignored) until release(), so a file being
 * uploaded is never taken twice. Memory holds only unsettled and in-hand files.
 */
export class FileSettler {
  readonly #options: FileSettlerOptions;
  readonly #pending = new Map<string, Entry>();
  readonly #inHand = new Set<string>();
  #checking: Promise<void> | undefined;

  constructor(options: FileSettlerOptions) {
    this.#options = options;
  }

  /** An event for `file` (a data file or a sidecar): (re)start its settle time. */
  touch(file: string): void {
    const dataFile = isSidecarName(path.basename(file)) ? dataPathOfSidecar(file) : file;
    if (this.#inHand.has(dataFile)) return;
    const entry = this.#pending.get(dataFile);
    if (entry) entry.since = this.#options.clock.now();
    else this.#pending.set(dataFile, { signature: undefined, since: this.#options.clock.now() });
  }

  /**
   * A file found by a rescan rather than an event: starts tracking it if it is new, without
   * restarting the settle time of a file already being watched.
   */
  notice(file: string): void {
    const dataFile = isSidecarName(path.basename(file)) ? dataPathOfSidecar(file) : file;
    if (this.#inHand.has(dataFile) || this.#pending.has(dataFile)) return;
    this.#pending.set(dataFile, { signature: undefined, since: this.#options.clock.now() });
  }

  /** The file is gone (moved or deleted): forget it entirely. */
  release(file: string): void {
    this.#inHand.delete(file);
    this.#pending.delete(file);
  }

  get pending(): number {
    return this.#pending.size;
  }

  get inHand(): number {
    return this.#inHand.size;
  }

  /** Looks at every unsettled file once; hands over those that are settled. Calls never overlap. */
  check(): Promise<void> {
    this.#checking ??= this.#checkAll().finally(() => {
      this.#checking = undefined;
    });
    return this.#checking;
  }

  async #checkAll(): Promise<void> {
    const files = [...this.#pending.keys()];
    // One lstat per folder and round: most files of a round share a few person folders.
    const folders = new Map<string, Promise<BigIntStats | undefined>>();
    const folderOf = (file: string) => {
      const dir = path.dirname(file);
      let st = folders.get(dir);
      if (!st) folders.set(dir, (st = lstatOrUndefined(dir, true)));
      return st;
    };
    for (let i = 0; i < files.length; i += STAT_BATCH) {
      await Promise.all(
        files.slice(i, i + STAT_BATCH).map((f) =>
          this.#checkOne(f, folderOf).catch((err: unknown) => {
            // EACCES and the like: drop it; its next event (a chmod counts) brings it back.
            this.#pending.delete(f);
            this.#options.onSkipped?.(f, `cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
          }),
        ),
      );
    }
  }

  async #checkOne(file: string, folderOf: (file: string) => Promise<BigIntStats | undefined>): Promise<void> {
    const entry = this.#pending.get(file);
    if (!entry) return;
    // lstat(file) follows links in the folders above it: its own folder is looked at first.
    const folder = await folderOf(file);
    if (!folder) {
      this.#pending.delete(file);
      return;
    }
    if (!folder.isDirectory()) {
      this.#pending.delete(file);
      if (folder.isSymbolicLink()) {
        this.#inHand.add(file);
        this.#options.onReady({ path: file, size: 0, mtimeMs: 0, id: '', folderId: '', unsafe: `its folder ${path.basename(path.dirname(file))} was replaced by a symbolic link; nothing is read through it` });
      }
      return;
    }
    const stat = await lstatOrUndefined(file, true);
    if (!stat) {
      // Gone (renamed away, deleted) or only its sidecar exists so far: an event brings it back.
      this.#pending.delete(file);
      return;
    }
    if (!stat.isFile()) {
      this.#pending.delete(file);
      // lstat, not stat: a symbolic link is never followed, so nothing outside the folder is read.
      if (!stat.isDirectory()) this.#options.onSkipped?.(file, stat.isSymbolicLink() ? 'symbolic link' : 'not a regular file');
      return;
    }
    const sidecar = await lstatOrUndefined(sidecarPathOf(file));
    // The file's and its folder's identities too: a file or folder swapped meanwhile starts the settle time again.
    const signature = `${stat.size}:${stat.mtimeNs}:${identityOf(stat)}:${identityOf(folder)}|${sidecar ? `${sidecar.size}:${sidecar.mtimeMs}:${sidecar.isFile()}` : '-'}`;
    const now = this.#options.clock.now();
    if (signature !== entry.signature) {
      entry.signature = signature;
      entry.since = now;
      return;
    }
    if (now - entry.since < this.#options.settleMs) return;
    this.#pending.delete(file);
    this.#inHand.add(file);
    const settled: SettledFile = { path: file, size: Number(stat.size), mtimeMs: Number(stat.mtimeMs), id: identityOf(stat), folderId: identityOf(folder) };
    if (sidecar) {
      settled.sidecar = sidecarPathOf(file);
      if (!sidecar.isFile()) settled.sidecarProblem = sidecar.isSymbolicLink() ? 'its sidecar is a symbolic link' : 'its sidecar is not a regular file';
    }
    this.#options.onReady(settled);
  }

  /** Checks every `tickMs` until the signal aborts. */
  async run(tickMs: number, signal: AbortSignal): Promise<void> {
    while (!signal.aborted) {
      try {
        await this.#options.clock.sleep(tickMs, signal);
      } catch {
        return;
      }
      await this.check();
    }
  }
}
