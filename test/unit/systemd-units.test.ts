import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';

const DIR = path.resolve(import.meta.dirname, '../../examples/systemd');
const UNITS = ['idsync-worker.service', 'idsync-watch.service'];
const hasAnalyze = spawnSync('systemd-analyze', ['--version']).status === 0;

/** `Key=value` lines of the [Service] section. */
function serviceSettings(unit: string): Map<string, string[]> {
  const text = readFileSync(path.join(DIR, unit), 'utf8');
  const section = text.slice(text.indexOf('[Service]'), text.indexOf('[Install]'));
  const settings = new Map<string, string[]>();
  for (const line of section.split('\n')) {
    const m = /^([A-Za-z]+)=(.*)$/.exec(line);
    if (m) settings.set(m[1]!, [...(settings.get(m[1]!) ?? []), m[2]!]);
  }
  return settings;
}

describe.each(UNITS)('examples/systemd/%s', (unit) => {
  it('treats the drained stop (exit 130) as success, restarts on failure, waits out the 30 s drain', () => {
    const s = serviceSettings(unit);
    expect(s.get('SuccessExitStatus')).toEqual(['130']);
    expect(s.get('Restart')).toEqual(['on-failure']);
    expect(s.get('KillSignal')).toEqual(['SIGTERM']);
    // Only node gets SIGTERM: a private redis-server it started must outlive the drain.
    expect(s.get('KillMode')).toEqual(['mixed']);
    expect(Number.parseInt(s.get('TimeoutStopSec')![0]!, 10)).toBeGreaterThanOrEqual(35);
  });

  it('runs as a dedicated user with the state dir from StateDirectory= and the password from a root-only env file', () => {
    const s = serviceSettings(unit);
    expect(s.get('User')).toEqual(['idsync']);
    expect(s.get('EnvironmentFile')).toEqual(['/etc/idsync/idsync.env']);
    const stateDirectory = s.get('StateDirectory')![0]!;
    expect(s.get('Environment')).toContain(`IDSYNC_STATE_DIR=%S/${stateDirectory}`);
    expect(s.get('WorkingDirectory')).toHaveLength(1);
    for (const hardening of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateTmp=yes', 'CapabilityBoundingSet=']) {
      const [k, v] = hardening.split('=') as [string, string];
      expect(s.get(k), hardening).toEqual([v]);
    }
    // V8's JIT needs W+X pages: this setting would kill node at start.
    expect(s.has('MemoryDenyWriteExecute')).toBe(false);
  });

  it.skipIf(!hasAnalyze)('passes systemd-analyze verify without a warning', () => {
    // verify exits 0 on unknown values (it only warns), so its output must be empty.
    const r = spawnSync('systemd-analyze', ['verify', path.join(DIR, unit)], { encoding: 'utf8', cwd: DIR });
    expect(r.stderr + r.stdout).toBe('');
    expect(r.status).toBe(0);
  });
});

describe('examples/systemd/idsync.env.example', () => {
  it('names every setting the units need', () => {
    const text = readFileSync(path.join(DIR, 'idsync.env.example'), 'utf8');
    for (const key of ['IDSYNC_API_URL', 'IDSYNC_USERNAME', 'IDSYNC_PASSWORD', 'REDIS_URL']) expect(text).toMatch(new RegExp(`^${key}=`, 'm'));
    expect(text).toContain('-m 0600');
  });
});

