import { existsSync, mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, PEOPLE } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import { startWatch } from '../helpers/watch-runs.ts';

/**
 * Whoever may drop files into the watched folder (a scanner share) may also create `.failed` or
 * `.processed` there, as links to any folder the watch's user can write (~/.ssh, /etc/cron.d).
 * The watch refuses to start on such links and never moves a file through one planted later.
 */
describe('.failed and .processed replaced by links in the drop folder', () => {
  function folders(label: string) {
    const root = tempDir(label);
    const dir = path.join(root, 'drop');
    const victimFailed = path.join(root, 'victim-ssh');
    const victimProcessed = path.join(root, 'victim-cron');
    mkdirSync(dir);
    mkdirSync(victimFailed);
    mkdirSync(victimProcessed);
    const args = { dir, stateDir: path.join(root, 'state'), reportDir: path.join(root, 'reports'), keyPrefix: keyPrefixFor(root), settleMs: 200 };
    const written = () => [...readdirSync(victimFailed, { recursive: true }), ...readdirSync(victimProcessed, { recursive: true })];
    return { root, dir, victimFailed, victimProcessed, args, written };
  }

  it('refuses to start (exit 2, saying which link) when one is there at start', async () => {
    const s = await withSandbox();
    const f = folders('watch-links-start');
    symlinkSync(f.victimFailed, path.join(f.dir, '.failed'));
    writeFileSync(path.join(f.dir, 'authorized_keys'), 'ssh-ed25519 AAAA attacker\n');
    const err = await startWatch({ ...f.args, apiUrl: s.url, password: s.password }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(ConfigError);
    expect(exitCodeForError(err)).toBe(2);
    expect((err as Error).message).toContain(`${path.join(f.dir, '.failed')} is a symbolic link (to ${f.victimFailed})`);

    // The same for .processed, and for a --failed-dir inside the folder that is a link.
    renameSync(path.join(f.dir, '.failed'), path.join(f.dir, '.failed-was-here'));
    symlinkSync(f.victimProcessed, path.join(f.dir, '.processed'));
    await expect(startWatch({ ...f.args, apiUrl: s.url, password: s.password })).rejects.toThrow(/\.processed is a symbolic link/);
    await expect(startWatch({ ...f.args, apiUrl: s.url, password: s.password, deleteProcessed: true, failedDir: path.join(f.dir, '.failed-was-here', 'sub') })).rejects.toThrow(
      /\.failed-was-here is a symbolic link.*--failed-dir outside the watched folder/,
    );
    expect(f.written()).toEqual([]);
    expect(existsSync(path.join(f.dir, 'authorized_keys'))).toBe(true);
  });

  it('never writes outside the drop folder through links planted while it runs', async () => {
    const s = await withSandbox();
    const f = folders('watch-links');
    const w = await startWatch({ ...f.args, apiUrl: s.url, password: s.password });
    symlinkSync(f.victimFailed, path.join(f.dir, '.failed'));
    symlinkSync(f.victimProcessed, path.join(f.dir, '.processed'));
    writeFileSync(path.join(f.dir, 'authorized_keys'), 'ssh-ed25519 AAAA attacker\n');
    mkdirSync(path.join(f.dir, PEOPLE[0]!));
    writeFileSync(path.join(f.dir, PEOPLE[0]!, 'job'), '* * * * * root sh -c id\n');
    const records = await w.waitForRecords(2, 15_000);
    await w.stop();

    expect(f.written()).toEqual([]);
    expect(existsSync(path.join(f.victimFailed, 'authorized_keys'))).toBe(false);
    // Both stay where they were dropped; the lines say why.
    expect(existsSync(path.join(f.dir, 'authorized_keys'))).toBe(true);
    expect(existsSync(path.join(f.dir, PEOPLE[0]!, 'job'))).toBe(true);
    const byFile = Object.fromEntries(records.map((r) => [r.file, r]));
    expect(byFile['authorized_keys']).toMatchObject({ status: 'rejected', action: 'left', movedTo: '', error: expect.stringMatching(/not set aside: \.failed in .* is a symbolic link/) });
    expect(byFile[`${PEOPLE[0]}/job`]).toMatchObject({ status: 'succeeded', movedTo: '', error: expect.stringMatching(/not moved: \.processed in .* is a symbolic link/) });
  });
});
