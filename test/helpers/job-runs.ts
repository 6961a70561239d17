import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { inject } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { silentLogger, type Logger } from '../../src/log.ts';
import { runImportExport } from '../../src/commands/import-export/run-import-export.ts';
import type { ManifestCommand } from '../../src/commands/import-export/manifest-plan.ts';
import type { BatchResult } from '../../src/engine/batch-run.ts';
import type { SettingsInput } from '../../src/config/schema.ts';

export type JobCommand = ManifestCommand;
export type JobRunResult = BatchResult;

export const PEOPLE = [
  '3f2504e0-4f89-11d3-9a0c-0305e82c3301',
  '7c9e6679-7425-40de-944b-e07fc1f90ae7',
  'a8098c1a-f86e-11da-bd1a-00112444be1e',
  'e902893a-9d22-3c7e-a7b8-d6e313b71d9f',
];

/** Writes `count` distinct small files and an import manifest for them into `dir`. */
export function writeImportManifest(dir: string, count: number, options: { extraRows?: string[]; size?: number } = {}): string {
  mkdirSync(path.join(dir, 'files'), { recursive: true });
  const lines = ['personId,file,name,description,publicId,batch'];
  for (let i = 0; i < count; i++) {
    const file = `files/doc-${i}.bin`;
    const body = Buffer.concat([Buffer.from(`document ${i} `), randomBytes(options.size ?? 256)]);
    writeFileSync(path.join(dir, file), body);
    lines.push(`${PEOPLE[i % PEOPLE.length]},${file},Document ${i},scan ${i},,B${i % 3}`);
  }
  lines.push(...(options.extraRows ?? []));
  const manifest = path.join(dir, 'import.csv');
  writeFileSync(manifest, `${lines.join('\n')}\n`);
  return manifest;
}

export interface RunArgs {
  command: JobCommand;
  manifest: string;
  apiUrl: string;
  username: string;
  password: string;
  stateDir: string;
  reportDir: string;
  outDir?: string;
  /**
   * Root of the run's Redis keys. Default: one per test folder (the manifest's), so the reruns of
   * a test share their state and no two tests do; freshKeyPrefix() for a Redis whose idsync state is gone.
   */
  keyPrefix?: string;
  redisUrl?: string;
  flags?: SettingsInput;
  signal?: AbortSignal;
  log?: Logger;
  graceMs?: number;
  idleCheckMs?: number;
  /** How often the wait loop looks at Redis (default 50 ms here). */
  pollMs?: number;
}

/** RunArgs that reach sandbox `s` as `migrator`, with the run's state in `dir`/state and its report in `dir`/report. */
export function sandboxRunArgs(s: { url: string; password: string }, dir: string): Pick<RunArgs, 'apiUrl' | 'username' | 'password' | 'stateDir' | 'reportDir'> {
  return { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state'), reportDir: path.join(dir, 'report') };
}

/** The key prefix runJob uses for a test folder when given none. */
export function keyPrefixFor(dir: string): string {
  return `test-${createHash('sha256').update(dir).digest('hex').slice(0, 16)}`;
}

/** A key prefix no test used: a Redis whose idsync state is gone. */
export function freshKeyPrefix(): string {
  return `test-${randomBytes(8).toString('hex')}`;
}

/** Runs import/export in-process against a sandbox and the suite's Redis. */
export async function runJob(args: RunArgs): Promise<JobRunResult & { lines: string[] }> {
  const lines: string[] = [];
  const config = loadConfig({
    env: {
      IDSYNC_API_URL: args.apiUrl,
      IDSYNC_USERNAME: args.username,
      IDSYNC_PASSWORD: args.password,
      REDIS_URL: args.redisUrl ?? inject('redisUrl'),
      IDSYNC_REDIS_PREFIX: args.keyPrefix ?? keyPrefixFor(path.dirname(path.resolve(args.manifest))),
      IDSYNC_STATE_DIR: args.stateDir,
      IDSYNC_REPORT_DIR: args.reportDir,
    },
    flags: { concurrency: 8, ...args.flags },
  });
  const result = await runImportExport({
    command: args.command,
    manifest: args.manifest,
    ...(args.outDir ? { outDir: args.outDir } : {}),
    config,
    log: args.log ?? silentLogger(),
    signal: args.signal ?? new AbortController().signal,
    out: (l) => lines.push(l),
    tty: false,
    pollMs: args.pollMs ?? 50,
    ...(args.graceMs !== undefined ? { graceMs: args.graceMs } : {}),
    ...(args.idleCheckMs !== undefined ? { idleCheckMs: args.idleCheckMs } : {}),
  });
  return { ...result, lines };
}
