import { existsSync, mkdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../helpers/fixtures.ts';
import { keyPrefixFor, PEOPLE } from '../helpers/job-runs.ts';
import { withSandbox } from '../helpers/sandbox.ts';
import { startWatch } from '../helpers/watch-runs.ts';

/**
 * Whoever may write into the drop folder drops `<person>/id_rsa` and, while it settles, swaps the
 * person folder for a link to a folder of the watch's user holding a file of that name: the
 * watch must neither upload that file nor move it out of its own folder.
 */
describe('watch and a person folder swapped for a link while a file settles', () => {
  it('never reads or moves a file outside the drop folder', async () => {
    const s = await withSandbox();
    const root = tempDir('watch-swap');
    const dir = path.join(root, 'drop');
    const outside = path.join(root, 'private');
    mkdirSync(dir);
    mkdirSync(outside);
    const secret = path.join(outside, 'id_rsa');
    writeFileSync(secret, 'PRIVATE KEY OF THE WATCH USER\n');

    const w = await startWatch({
      dir,
      apiUrl: s.url,
      password: s.password,
      stateDir: path.join(root, 'state'),
      reportDir: path.join(root, 'reports'),
      keyPrefix: keyPrefixFor(root),
      settleMs: 1500,
    });
    const person = PEOPLE[0]!;
    mkdirSync(path.join(dir, person));
    writeFileSync(path.join(dir, person, 'id_rsa'), 'decoy');
    await sleep(500); // seen, not yet settled
    renameSync(path.join(dir, person), path.join(dir, 'elsewhere'));
    symlinkSync(outside, path.join(dir, person));

    const records = await w.waitForRecords(2, 15_000);
    await sleep(500);
    await w.stop();

    const leaked = s.documents().filter((d) => d.bytes === 'PRIVATE KEY OF THE WATCH USER\n'.length);
    expect(leaked).toEqual([]);
    expect(s.documents()).toEqual([]);
    expect(existsSync(secret)).toBe(true);
    // Reported and left alone; the decoy, renamed away into a folder that is no person id, set aside.
    const byFile = Object.fromEntries(records.map((r) => [r.file, r]));
    expect(byFile[`${person}/id_rsa`]).toMatchObject({ status: 'rejected', action: 'left', movedTo: '', error: expect.stringContaining('symbolic link') });
    expect(byFile['elsewhere/id_rsa']).toMatchObject({ status: 'rejected', action: 'set-aside', movedTo: '.failed/elsewhere/id_rsa' });
    expect(existsSync(path.join(dir, '.failed', person))).toBe(false);
  });
});
