import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, readdirSync, readFileSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

/** A checkout of its own (bin, sources, package files; node_modules linked), as a fresh clone has after `npm ci`'s install step. */
function checkout(): string {
  const dir = tempDir('idsync-checkout');
  for (const entry of ['bin', 'src', 'jobs', 'package.json', 'tsconfig.json']) cpSync(path.join(REPO_ROOT, entry), path.join(dir, entry), { recursive: true });
  symlinkSync(path.join(REPO_ROOT, 'node_modules'), path.join(dir, 'node_modules'));
  return dir;
}

function node(dir: string, args: string[], env: Record<string, string> = {}) {
  const r = spawnSync(process.execPath, args, { cwd: dir, env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/tmp', ...env }, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const bundles = (dir: string) => readdirSync(path.join(dir, '.idsync-build')).filter((n) => n.startsWith('cli-'));
const version = JSON.parse(readFileSync(path.join(REPO_ROOT, 'package.json'), 'utf8')).version as string;

describe('the CLI bundle (bin/bundle-build.mjs, bin/idsync.js)', () => {
  it('is built with its code caches by the prepare step, used as it is, rebuilt after a source change, and bypassed by IDSYNC_NO_BUNDLE=1', async () => {
    const dir = checkout();
    const built = node(dir, ['bin/bundle-build.mjs']);
    expect(built.code).toBe(0);
    const [first] = bundles(dir);
    expect(first).toMatch(/^cli-[0-9a-f]{16}$/);
    const files = readdirSync(path.join(dir, '.idsync-build', first!)).sort();
    expect(files).toEqual(expect.arrayContaining(['cli.cjs', 'cli.cjs.cache', 'main.cjs', 'main.cjs.cache']));

    // Help and version come from cli.cjs; a command from main.cjs; neither rebuilds.
    const help = node(dir, ['bin/idsync.js', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toMatch(/^ {2}import /m);
    expect(node(dir, ['bin/idsync.js', '--version']).stdout.trim()).toBe(version);
    const missing = node(dir, ['bin/idsync.js', 'import', '/no/such.csv']);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('cannot read manifest /no/such.csv');
    expect(bundles(dir)).toEqual([first]);
    // A run that could not start writes no cache of its own (it would lack most of the command).
    expect(existsSync(path.join(dir, '.idsync-build', first!, 'import.cache'))).toBe(false);

    // An argument list that does reach a command from cli.cjs still runs it (its stand-in runs main.cjs).
    const odd = node(dir, ['bin/idsync.js', 'import', '/no/such.csv', '--delimiter', '-h']);
    expect(odd.code).toBe(2);
    expect(odd.stderr).toContain('--delimiter must be one character');

    // A changed source file: the next start builds a new bundle and drops the old one.
    const source = path.join(dir, 'src/errors.ts');
    writeFileSync(source, `${readFileSync(source, 'utf8')}\n`);
    const later = new Date(Date.now() + 5_000);
    utimesSync(source, later, later);
    expect(node(dir, ['bin/idsync.js', '--version']).stdout.trim()).toBe(version);
    const [second] = bundles(dir);
    expect(second).toMatch(/^cli-[0-9a-f]{16}$/);
    expect(second).not.toBe(first);
    expect(bundles(dir)).toEqual([second]);

    // The TypeScript sources through tsx, no bundle involved.
    const raw = node(dir, ['bin/idsync.js', '--version'], { IDSYNC_NO_BUNDLE: '1' });
    expect(raw.code).toBe(0);
    expect(raw.stdout.trim()).toBe(version);
  }, 180_000);
});
