import { existsSync, mkdirSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, PEOPLE } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import { startWatch } from '../helpers/watch-runs.ts';

/**
 * Review: whoever may drop files into the watched folder (a scanner share) may also create
 * `.failed` or `.processed` there, as links. The watch moves files into them without looking:
 * a stray file named `authorized_keys` dropped at the top of the folder is "set aside" into
 * `.failed/` = any folder the watch's user can write (~/.ssh, /etc/cron.d when it runs as root),
 * with the attacker's name and content; uploaded files land wherever `.processed` points.
 */
describe('review: .failed and .processed replaced by links in the drop folder', () => {
  it('never writes outside the drop folder through them', async () => {
    const s = await withSandbox();
    const root = tempDir('review-watch-links');
    const dir = path.join(root, 'drop');
    const victimFailed = path.join(root, 'victim-ssh');
    const victimProcessed = path.join(root, 'victim-cron');
    mkdirSync(dir);
    mkdirSync(victimFailed);
    mkdirSync(victimProcessed);
    symlinkSync(victimFailed, path.join(dir, '.failed'));
    symlinkSync(victimProcessed, path.join(dir, '.processed'));

    const w = await startWatch({
      dir,
      apiUrl: s.url,
      password: s.password,
      stateDir: path.join(root, 'state'),
      reportDir: path.join(root, 'reports'),
      keyPrefix: keyPrefixFor(root),
      settleMs: 200,
    });
    writeFileSync(path.join(dir, 'authorized_keys'), 'ssh-ed25519 AAAA attacker\n');
    mkdirSync(path.join(dir, PEOPLE[0]!));
    writeFileSync(path.join(dir, PEOPLE[0]!, 'job'), '* * * * * root sh -c id\n');
    await w.waitForRecords(2, 15_000).catch(() => undefined);
    await w.stop();

    const written = [...readdirSync(victimFailed, { recursive: true }), ...readdirSync(victimProcessed, { recursive: true })];
    expect(written).toEqual([]);
    expect(existsSync(path.join(victimFailed, 'authorized_keys'))).toBe(false);
  });
});
