import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.ts';
import { VERSION } from '../../src/version.ts';

describe('idsync command line', () => {
  it('--help lists every command', async () => {
    const r = await runCli(['--help']);
    expect(r.code).toBe(0);
    for (const command of ['import', 'export', 'watch', 'archive', 'verify', 'worker', 'sandbox']) expect(r.stdout).toMatch(new RegExp(`^  ${command} `, 'm'));
  });

  it('--version prints the package version', async () => {
    const r = await runCli(['--version']);
    expect(r.code).toBe(0);
    expect(r.stdout.trim()).toBe(VERSION);
  });

  it('import of a missing manifest exits 2 with a clear message', async () => {
    const r = await runCli(['import', '/no/such.csv']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('cannot read manifest /no/such.csv: no such file');
  });

  it('an invalid setting exits 2 naming the setting', async () => {
    const r = await runCli(['import', 'x.csv'], { env: { IDSYNC_ATTEMPTS: '0' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('IDSYNC_ATTEMPTS (environment) must be at least 1');
  });

  it('unknown options and commands exit 2', async () => {
    expect((await runCli(['import', '--bogus', 'x.csv'])).code).toBe(2);
    expect((await runCli(['frobnicate'])).code).toBe(2);
  });
});
