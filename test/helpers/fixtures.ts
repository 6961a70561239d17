import { mkdirSync, mkdtempSync, realpathSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { randomUUID } from 'node:crypto';
import { afterEach } from 'vitest';

/** A queue name no other test uses (BullMQ's own tests do the same). */
export function testQueueName(prefix = 'test'): string {
  return `${prefix}-${randomUUID()}`;
}

const dirs: string[] = [];

/** A fresh temp dir, removed after the test. */
export function tempDir(label = 'idsync'): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), `${label}-`));
  dirs.push(dir);
  return dir;
}

afterEach(() => {
  while (dirs.length > 0) rmSync(dirs.pop()!, { recursive: true, force: true });
});

export const REPO_ROOT = path.resolve(import.meta.dirname, '../..');
export const IDSYNC_BIN = path.join(REPO_ROOT, 'bin/idsync.js');

/** A folder `name` in a fresh temp dir by its real path (no link above it), with `outside` beside it (a folder of idsync's user). */
export function folderBesideOutside(name: string): { root: string; outside: string } {
  const dir = realpathSync(tempDir());
  const root = path.join(dir, name);
  const outside = path.join(dir, 'outside');
  mkdirSync(root);
  mkdirSync(outside);
  return { root, outside };
}

/** What `p` rejects with; a resolved `p` fails the test. */
export async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (err: unknown) => err,
  );
}

/** The first value `get` gives other than undefined, asked every 50 ms; fails after `timeoutMs`, naming `what`. */
export async function until<T>(what: string, get: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await get();
    if (value !== undefined) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Whether a process `pid` runs (signal 0 only asks). */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
