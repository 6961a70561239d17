import { randomUUID } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { LedgerIo } from './ledger-io.ts';
import { processAlive } from '../../process-alive.ts';

export const LOCK_FILE = 'compact.lock';
/** The holder touches the lock at least this often while it works. */
export const LOCK_REFRESH_MS = 10_000;
/** A lock untouched this long is stale whoever holds it (another host, a reused pid, a hung process). */
export const STALE_LOCK_MS = 120_000;

interface Holder {
  pid: number;
  host: string;
  token: string;
  at: number;
}

/**
 * The right to change a ledger's files (compaction, creation, migration): one process at a time.
 * The lock file appears whole (linked from a complete temporary file, which fails if it exists)
 * and names its holder. A lock whose holder is a dead process on this host, or that nobody has
 * touched for STALE_LOCK_MS, is taken over; the holder checks it still holds the lock before each
 * change of the manifest, so a taken-over holder stops instead of overwriting the new one's work.
 */
export class CompactionLock {
  readonly #file: string;
  readonly #token: string;
  #touchedAt = Date.now();

  private constructor(file: string, token: string) {
    this.#file = file;
    this.#token = token;
  }

  static async acquire(dir: string, io: LedgerIo): Promise<CompactionLock | undefined> {
    const file = path.join(dir, LOCK_FILE);
    const token = randomUUID();
    const temp = path.join(dir, `${LOCK_FILE}.${token}.tmp`);
    const handle = await fs.open(temp, 'wx', 0o600);
    try {
      const holder: Holder = { pid: process.pid, host: os.hostname(), token, at: Date.now() };
      await io.write(handle, temp, Buffer.from(JSON.stringify(holder)), 0);
    } finally {
      await handle.close();
    }
    try {
      for (let tries = 0; tries < 3; tries++) {
        try {
          await fs.link(temp, file);
          return new CompactionLock(file, token);
        } catch (err) {
          const code = (err as NodeJS.ErrnoException).code;
          if (code === 'ENOENT') return undefined; // our temp file was cleaned away by the holder
          if (code !== 'EEXIST') throw err;
        }
        const seen = await readLock(file);
        if (!seen) continue; // released meanwhile
        if (!isStale(seen)) return undefined;
        // Move the stale lock aside; if what we moved is not what we judged stale (someone took it
        // over in between), give it back and leave.
        const aside = path.join(dir, `${LOCK_FILE}.${token}.stale`);
        try {
          await fs.rename(file, aside);
        } catch (err) {
          if ((err as NodeJS.ErrnoException).code === 'ENOENT') continue;
          throw err;
        }
        const moved = await readLock(aside);
        if (moved?.raw !== seen.raw) {
          await fs.link(aside, file).catch(() => undefined);
          await fs.rm(aside, { force: true });
          return undefined;
        }
        await fs.rm(aside, { force: true });
      }
      return undefined;
    } finally {
      await fs.rm(temp, { force: true });
    }
  }

  /** Whether the lock file is still ours. */
  async holds(): Promise<boolean> {
    const seen = await readLock(this.#file);
    return seen?.holder?.token === this.#token;
  }

  async assertHeld(): Promise<void> {
    if (!(await this.holds())) throw new Error('the ledger compaction lock was taken over by another process');
  }

  /** Shows the holder alive (call it often; cheap when nothing is due). */
  async refresh(): Promise<void> {
    const now = Date.now();
    if (now - this.#touchedAt < LOCK_REFRESH_MS) return;
    this.#touchedAt = now;
    const when = new Date(now);
    await fs.utimes(this.#file, when, when).catch(() => undefined);
  }

  async release(): Promise<void> {
    if (await this.holds()) await fs.rm(this.#file, { force: true });
  }
}

async function readLock(file: string): Promise<{ raw: string; holder: Holder | undefined; mtimeMs: number } | undefined> {
  try {
    const [raw, stats] = await Promise.all([fs.readFile(file, 'utf8'), fs.stat(file)]);
    let holder: Holder | undefined;
    try {
      holder = JSON.parse(raw) as Holder;
    } catch {
      holder = undefined;
    }
    return { raw, holder, mtimeMs: stats.mtimeMs };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}

function isStale(seen: { holder: Holder | undefined; mtimeMs: number }): boolean {
  if (Date.now() - seen.mtimeMs > STALE_LOCK_MS) return true;
  const holder = seen.holder;
  if (!holder || typeof holder.pid !== 'number') return true;
  return holder.host === os.hostname() && !processAlive(holder.pid);
}

