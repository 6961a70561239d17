import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { createLogger } from '../../src/log.ts';
import { startSandbox, type Sandbox } from '../../src/sandbox/index.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { runJob, writeImportManifest } from '../helpers/job-runs.ts';
import { duplicateKeys, logCapture } from '../helpers/log-lines.ts';

const PASSWORD = 'migrator-pass-1';
let sandbox: Sandbox | undefined;
afterEach(async () => {
  await sandbox?.close();
  sandbox = undefined;
});

describe('calm logs (#16)', () => {
  it('a 1,000-row import under ~35 % faults logs a few hundred lines at info: JSON, unique keys, a hostname, no stack', async () => {
    // About 35 % of requests fail: 5xx, connection resets, 429s (Retry-After 0 keeps the test short).
    sandbox = await startSandbox({
      prefix: '/identities',
      users: [{ username: 'migrator', password: PASSWORD, permissions: ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] }],
      faults: { seed: 16, failRate: 0.2, resetRate: 0.08, throttleRate: 0.07, retryAfterSeconds: 0 },
    });
    const dir = tempDir();
    const manifest = writeImportManifest(dir, Number(process.env.ROWS ?? 1000), { size: 64 });
    const logs = logCapture();
    const log = createLogger({ level: 'info', format: 'json', destination: logs.stream }).child({ command: 'import' });
    const r = await runJob({
      command: 'import',
      manifest,
      apiUrl: sandbox.url,
      username: 'migrator',
      password: PASSWORD,
      stateDir: path.join(dir, 'state'),
      reportDir: path.join(dir, 'report'),
      log,
      flags: { attempts: 5 },
    });
    console.log(JSON.stringify(r.summary));
    expect(r.summary.counts.succeeded + r.summary.counts.failed).toBe(1000);
    const stats = sandbox.stats();
    const faults = (stats.status['500'] ?? 0) + (stats.status['502'] ?? 0) + (stats.status['503'] ?? 0) + (stats.status['429'] ?? 0);
    expect(faults).toBeGreaterThan(300);

    const lines = logs.lines;
    console.log(`${lines.length} lines, ${logs.text().length} bytes`);
    const byMsg = new Map<string, number>();
    for (const l of lines) { const m = (JSON.parse(l) as { msg: string }).msg; byMsg.set(m, (byMsg.get(m) ?? 0) + 1); }
    console.log([...byMsg].sort((a, b) => b[1] - a[1]).slice(0, 15));
    expect(lines.length).toBeGreaterThan(3);
    expect(lines.length).toBeLessThanOrEqual(300);
    for (const line of lines) {
      const entry = JSON.parse(line) as Record<string, unknown>;
      expect(duplicateKeys(line), line).toEqual([]);
      expect(typeof entry.hostname, line).toBe('string');
      expect(line).not.toMatch(/"stack"|\n\s+at /);
    }
  }, 180_000);
});
