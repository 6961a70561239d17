import { mkdtempSync, rmSync } from 'node:fs';
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
