import { execFile, execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const DIR = path.join(REPO_ROOT, 'examples/monitoring');

function hasPromtool(): boolean {
  try {
    execFileSync('promtool', ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function promtool(...args: string[]): Promise<{ code: number; out: string }> {
  return new Promise((resolve) => execFile('promtool', args, { cwd: DIR }, (err, stdout, stderr) => resolve({ code: err ? 1 : 0, out: stdout + stderr })));
}

describe('the example scrape config and alert rules (docs/monitoring.md)', () => {
  // Debian's `prometheus` package brings promtool; .ci/run installs it.
  it.skipIf(!hasPromtool())('are valid, and the alerts fire when they should and only then (promtool test rules)', async () => {
    expect(await promtool('check', 'config', 'prometheus.yml')).toMatchObject({ code: 0 });
    const tested = await promtool('test', 'rules', 'idsync-alerts.test.yml');
    expect(tested.out).toContain('SUCCESS');
    expect(tested.code).toBe(0);
  });

  it('are shown in docs/monitoring.md as they are in examples/monitoring/', () => {
    const doc = readFileSync(path.join(REPO_ROOT, 'docs/monitoring.md'), 'utf8');
    for (const file of ['prometheus.yml', 'idsync-alerts.yml']) expect(doc).toContain(readFileSync(path.join(DIR, file), 'utf8').trim());
  });
});
