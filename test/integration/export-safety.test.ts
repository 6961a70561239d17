import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import type { Sandbox } from '../../src/sandbox/index.ts';
import { ApiClient } from '../../src/api/client.ts';
import { prepareOutTarget } from '../../src/outputs/out-dir.ts';
import { OutsideOutError } from '../../src/errors.ts';
import { Secret } from '../../src/config/secret.ts';

const FACES = ['5a1e3c9d-2b4f-4c6a-8e7d-9f0a1b2c3d4e', '6b2f4d0e-3c5a-4d7b-9f8e-0a1b2c3d4e5f', '7c3a5e1f-4d6b-4e8c-8a9f-1b2c3d4e5f60'];
const DET = '8d4b6f2a-5e7c-4f9d-9b0a-2c3d4e5f6071';

function files(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((d) => !d.isDirectory())
    .map((d) => path.relative(dir, path.join(d.parentPath, d.name)));
}

function jsonl(file: string): Array<Record<string, unknown>> {
  return readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
}

async function until(check: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 2_000; i++) {
    if (check()) return;
    await sleep(5);
  }
  throw new Error(`timed out waiting for ${what}`);
}

function common(s: Sandbox & { password: string }, dir: string) {
  return { apiUrl: s.url, username: 'migrator', password: s.password, stateDir: path.join(dir, 'state') };
}

describe('export writes nothing outside --out (issue #15, item 2)', () => {
  it('a folder swapped for a link while the request is in flight, and a link on the way, fail once without touching the outside', async () => {
    // Latency holds the photo request at the server while the folder is swapped.
    const s = await withSandbox({ faults: { latencyMs: 700 } });
    const dir = tempDir();
    const out = path.join(dir, 'out');
    const elsewhere = path.join(dir, 'elsewhere');
    const elsewhere2 = path.join(dir, 'elsewhere2');
    mkdirSync(out);
    mkdirSync(elsewhere);
    mkdirSync(elsewhere2);
    symlinkSync(elsewhere2, path.join(out, 'link'));
    const manifest = path.join(dir, 'export.csv');
    writeFileSync(manifest, ['type,faceId,detectionId,personId,documentId,output', `enrollmentPhoto,${FACES[0]},,,,race/x.jpg`, `enrollmentPhoto,${FACES[1]},,,,link/deep/er/x.jpg`, ''].join('\n'));

    const running = runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'report'), flags: { attempts: 5 }, ...common(s, dir) });
    // The job made out/race and sent its request: swap the folder for a link to the outside.
    await until(() => (s.stats().byRoute.enrollmentPhoto ?? 0) >= 1 && existsSync(path.join(out, 'race')), 'the photo request');
    renameSync(path.join(out, 'race'), path.join(out, 'race.real'));
    symlinkSync(elsewhere, path.join(out, 'race'));
    const r = await running;

    expect(r.exitCode).toBe(1);
    expect(files(elsewhere)).toEqual([]);
    expect(readdirSync(elsewhere2)).toEqual([]); // not even the folders deep/er
    expect(files(path.join(out, 'race.real'))).toEqual([]);
    const rows = jsonl(path.join(dir, 'report', 'report.jsonl'));
    for (const row of rows) {
      expect(row).toMatchObject({ status: 'failed', attempts: 1, errorCode: 'E_OUTSIDE_OUT' });
      expect(String(row.error)).toMatch(/link/);
    }
    // The link row never reached the API; the raced one was asked once, not five times.
    expect(s.stats().byRoute.enrollmentPhoto).toBe(1);
  });
});

describe('ApiClient confined download (issue #15, item 2)', () => {
  it('a folder swapped for a link while the body streams: the rename is refused, nothing lands outside, the temp file is gone', async () => {
    const s = await withSandbox({ faults: { slowBodyRate: 1, slowBodyDelayMs: 150 } });
    const dir = tempDir();
    const out = path.join(dir, 'out');
    const elsewhere = path.join(dir, 'elsewhere');
    mkdirSync(out);
    mkdirSync(elsewhere);
    const client = new ApiClient({ apiUrl: s.url, username: 'migrator', password: new Secret(s.password) });
    try {
      const { root, target } = await prepareOutTarget(out, 'race/x.jpg');
      const download = client.downloadEnrollmentPhoto(FACES[0]!, { root, path: target }).catch((err: unknown) => err);
      // The temp file exists in out/race: the body is streaming into it.
      await until(() => existsSync(path.join(out, 'race')) && readdirSync(path.join(out, 'race')).some((n) => n.endsWith('.part')), 'the temp file');
      renameSync(path.join(out, 'race'), path.join(out, 'race.real'));
      symlinkSync(elsewhere, path.join(out, 'race'));
      const err = await download;
      expect(err).toBeInstanceOf(OutsideOutError);
      expect(files(elsewhere)).toEqual([]);
      expect(files(path.join(out, 'race.real'))).toEqual([]);
    } finally {
      await client.close();
    }
  });
});

describe('a photo that is not a JPEG (issue #15, item 5)', () => {
  it('an HTML page, a JSON error and an empty body answered 200 fail the row once as E_BAD_CONTENT and leave no file', async () => {
    const s = await withSandbox({ faults: { badPhotoRate: 1 } });
    const dir = tempDir();
    const out = path.join(dir, 'out');
    const manifest = path.join(dir, 'export.csv');
    writeFileSync(
      manifest,
      ['type,faceId,detectionId,personId,documentId,output', `enrollmentPhoto,${FACES[0]},,,,`, `enrollmentPhoto,${FACES[1]},,,,`, `detectionPhoto,${FACES[2]},${DET},,,`, ''].join('\n'),
    );
    const r = await runJob({ command: 'export', manifest, outDir: out, reportDir: path.join(dir, 'report'), flags: { attempts: 5, concurrency: 1 }, ...common(s, dir) });
    expect(r.exitCode).toBe(1);
    expect(files(out)).toEqual([]);
    const rows = jsonl(path.join(dir, 'report', 'report.jsonl'));
    expect(rows.map((row) => [row.status, row.errorCode, row.attempts])).toEqual([
      ['failed', 'E_BAD_CONTENT', 1],
      ['failed', 'E_BAD_CONTENT', 1],
      ['failed', 'E_BAD_CONTENT', 1],
    ]);
    // What came instead is named: the three kinds take turns in the sandbox.
    const errors = rows.map((row) => String(row.error)).join('\n');
    expect(errors).toMatch(/Content-Type text\/html.*"<!DOCTYPE html><html><head><title>Sign in/);
    expect(errors).toMatch(/Content-Type application\/json.*\{\\?"error\\?":\\?"session expired/);
    expect(errors).toMatch(/an empty body \(Content-Type image\/jpeg\)/);
    expect(s.stats().byRoute.enrollmentPhoto! + s.stats().byRoute.detectionPhoto!).toBe(3);
  });
});
