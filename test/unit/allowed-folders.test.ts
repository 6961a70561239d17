import { existsSync, mkdirSync, readdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { AllowedFolders, isWithin } from '../../src/allowed-folders.ts';
import { classify, errorClass, isRetryable, mayHaveBeenProcessed } from '../../src/api/classify.ts';
import { loadConfig } from '../../src/config/load.ts';
import { ConfigError, NotAllowedError } from '../../src/errors.ts';
import { archivePath } from '../../src/outputs/archive-files.ts';
import { prepareOutTarget } from '../../src/outputs/out-dir.ts';
import { openAdmitted } from '../../src/sources/admitted-file.ts';
import { toImportItem } from '../../src/sources/import-items.ts';
import { archiveReport } from '../../jobs/archive-report.ts';
import { confineSpec } from '../../jobs/archive-tick.ts';
import type { JobContext } from '../../jobs/job-kind.ts';
import { sayConfinement } from '../../src/commands/worker.ts';
import type { Config } from '../../src/config/load.ts';
import type { Logger } from '../../src/log.ts';
import { rejection, tempDir } from '../helpers/fixtures.ts';

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';

/** data/ (allowed, with a.txt), data2/ (its name begins the same), outside/ (with secret.txt). */
function setup(): { base: string; data: string; data2: string; outside: string; allowed: AllowedFolders } {
  const base = realpathSync(tempDir());
  const data = path.join(base, 'data');
  const data2 = path.join(base, 'data2');
  const outside = path.join(base, 'outside');
  for (const d of [data, data2, outside]) mkdirSync(d);
  writeFileSync(path.join(data, 'a.txt'), 'inside');
  writeFileSync(path.join(data2, 'b.txt'), 'prefix trick');
  writeFileSync(path.join(outside, 'secret.txt'), 'secret');
  return { base, data, data2, outside, allowed: AllowedFolders.resolve('--allow-read', [data], base) };
}

describe('isWithin', () => {
  it.each([
    ['/data', '/data', true],
    ['/data', '/data/a.txt', true],
    ['/data', '/data/x/y', true],
    ['/data', '/data2', false],
    ['/data', '/data2/a.txt', false],
    ['/data', '/dat', false],
    ['/data', '/', false],
    ['/', '/anything', true],
    ['/data/', '/data/a', true],
  ])('root %s, path %s: %s', (root, p, expected) => {
    expect(isWithin(root, p)).toBe(expected);
  });
});

describe('AllowedFolders.resolve', () => {
  it('keeps real paths: relative ones against the base, links resolved, duplicates once', () => {
    const { base, data } = setup();
    symlinkSync(data, path.join(base, 'via-link'));
    const a = AllowedFolders.resolve('--allow-write', ['data', path.join(base, 'via-link'), `${base}/outside/../data`], base);
    expect(a.roots).toEqual([data]);
    expect(a.setting).toBe('--allow-write');
  });

  it('refuses a missing folder or a file, naming the setting', () => {
    const { base, data } = setup();
    const missing = rejectionSync(() => AllowedFolders.resolve('--allow-read', ['nope'], base));
    expect(missing).toBeInstanceOf(ConfigError);
    expect((missing as ConfigError).setting).toBe('--allow-read');
    expect((missing as Error).message).toMatch(/--allow-read: .*nope cannot be used \(ENOENT\)/);
    const file = rejectionSync(() => AllowedFolders.resolve('--allow-write', [path.join(data, 'a.txt')], base));
    expect((file as Error).message).toMatch(/--allow-write: .*a\.txt is not a folder/);
  });
});

function rejectionSync(f: () => unknown): unknown {
  try {
    f();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

describe('loadConfig: --allow-read and --allow-write', () => {
  it('reads comma lists from flags and the environment, arrays from the config file', () => {
    const { base, data, outside } = setup();
    const c = loadConfig({ flags: { allowRead: `${data}, ${outside}` }, env: { IDSYNC_ALLOW_WRITE: 'outside' }, cwd: base });
    expect(c.allowRead?.roots).toEqual([data, outside]);
    expect(c.allowWrite?.roots).toEqual([outside]);
    const file = path.join(base, 'idsync.json');
    writeFileSync(file, JSON.stringify({ allowRead: ['data'], allowWrite: 'outside' }));
    const fromFile = loadConfig({ flags: { config: file }, env: {}, cwd: '/' });
    expect(fromFile.allowRead?.roots).toEqual([data]);
    expect(fromFile.allowWrite?.roots).toEqual([outside]);
    expect(loadConfig({ env: {}, cwd: base }).allowRead).toBeUndefined();
  });

  it('stops at start for a folder that does not exist (exit 2), naming the setting', () => {
    const { base } = setup();
    const err = rejectionSync(() => loadConfig({ env: { IDSYNC_ALLOW_READ: '/no/such/folder' }, cwd: base }));
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toContain('IDSYNC_ALLOW_READ (environment)');
    expect((err as Error).message).toContain('/no/such/folder');
    const empty = rejectionSync(() => loadConfig({ flags: { allowWrite: ' , ' }, env: {}, cwd: base }));
    expect((empty as Error).message).toMatch(/--allow-write must name at least one folder/);
  });
});

describe('openAdmitted (an upload under --allow-read)', () => {
  it('opens a file inside, and reads it through the open descriptor', async () => {
    const { data, allowed } = setup();
    const opened = await openAdmitted(path.join(data, 'a.txt'), allowed);
    try {
      expect(await opened.handle.readFile('utf8')).toBe('inside');
      if (process.platform === 'linux') expect(opened.path).toBe(`/proc/self/fd/${opened.handle.fd}`);
    } finally {
      await opened.close();
    }
  });

  it('refuses a folder whose name only begins like the allowed one (/data vs /data2)', async () => {
    const { data2, allowed } = setup();
    const err = await rejection(openAdmitted(path.join(data2, 'b.txt'), allowed));
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as NotAllowedError).code).toBe('E_NOT_ALLOWED');
    expect((err as Error).message).toContain(`lies outside --allow-read (${allowed.roots[0]})`);
  });

  it('refuses a link inside that leads out, naming where it really leads', async () => {
    const { data, outside, allowed } = setup();
    symlinkSync(path.join(outside, 'secret.txt'), path.join(data, 'link.txt'));
    symlinkSync(outside, path.join(data, 'folder-link'));
    const err = await rejection(openAdmitted(path.join(data, 'link.txt'), allowed));
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as Error).message).toContain(`(really ${path.join(outside, 'secret.txt')})`);
    expect(await rejection(openAdmitted(path.join(data, 'folder-link', 'secret.txt'), allowed))).toBeInstanceOf(NotAllowedError);
  });

  it('refuses a path that climbs out with ..', async () => {
    const { data, allowed } = setup();
    const err = await rejection(openAdmitted(`${data}/../outside/secret.txt`, allowed));
    expect(err).toBeInstanceOf(NotAllowedError);
  });

  it('admits a link inside that points inside', async () => {
    const { data, allowed } = setup();
    mkdirSync(path.join(data, 'sub'));
    symlinkSync(path.join(data, 'a.txt'), path.join(data, 'sub', 'alias.txt'));
    const opened = await openAdmitted(path.join(data, 'sub', 'alias.txt'), allowed);
    try {
      expect(await opened.handle.readFile('utf8')).toBe('inside');
    } finally {
      await opened.close();
    }
  });

  it('leaves a missing file a read error, not a refusal', async () => {
    const { data, allowed } = setup();
    const err = await rejection(openAdmitted(path.join(data, 'gone.txt'), allowed));
    expect((err as { code: string }).code).toBe('E_FILE');
  });
});

describe('NotAllowedError', () => {
  it('fails the row for good: permanent, never ambiguous, its own class', () => {
    const err = new NotAllowedError('x lies outside --allow-read (/d)', '/x', '--allow-read');
    expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    expect(isRetryable(err)).toBe(false);
    expect(mayHaveBeenProcessed(err)).toBe(false);
    expect(errorClass(err)).toBe('E_NOT_ALLOWED');
  });
});

describe('prepareOutTarget under --allow-write', () => {
  it('refuses an --out outside before any folder is made', async () => {
    const { base, data, outside } = setup();
    const allowWrite = AllowedFolders.resolve('--allow-write', [data], base);
    const err = await rejection(prepareOutTarget(outside, 'enrollment/deep/x.jpg', allowWrite));
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as Error).message).toContain('--allow-write');
    expect(readdirSync(outside)).toEqual(['secret.txt']);
    // Not made yet either: refused as outside, and not made.
    const missing = path.join(base, 'data2', 'new-out');
    expect(await rejection(prepareOutTarget(missing, 'a/x.jpg', allowWrite))).toBeInstanceOf(NotAllowedError);
    expect(existsSync(missing)).toBe(false);
  });

  it('refuses an --out inside by name that is a link out; admits a real folder inside', async () => {
    const { base, data, outside } = setup();
    const allowWrite = AllowedFolders.resolve('--allow-write', [data], base);
    symlinkSync(outside, path.join(data, 'out-link'));
    expect(await rejection(prepareOutTarget(path.join(data, 'out-link'), 'enrollment/x.jpg', allowWrite))).toBeInstanceOf(NotAllowedError);
    expect(existsSync(path.join(outside, 'enrollment'))).toBe(false);
    mkdirSync(path.join(data, 'out'));
    const ok = await prepareOutTarget(path.join(data, 'out'), 'enrollment/x.jpg', allowWrite);
    expect(ok.target).toBe(path.join(data, 'out', 'enrollment', 'x.jpg'));
    expect(existsSync(path.join(data, 'out', 'enrollment'))).toBe(true);
  });
});

describe('archivePath under --allow-write (archive jobs)', () => {
  it('refuses an archive folder outside before any folder is made, admits one inside', async () => {
    const { base, data, outside } = setup();
    const allowWrite = AllowedFolders.resolve('--allow-write', [data], base);
    expect(await rejection(archivePath(outside, 'enrollment/5a/x.jpg', allowWrite))).toBeInstanceOf(NotAllowedError);
    expect(readdirSync(outside)).toEqual(['secret.txt']);
    mkdirSync(path.join(data, 'archive'));
    expect(await archivePath(path.join(data, 'archive'), 'enrollment/5a/x.jpg', allowWrite)).toBe(path.join(data, 'archive', 'enrollment', '5a', 'x.jpg'));
  });
});

describe('import validation under --allow-read', () => {
  const rec = (file: string) => ({ row: 1, values: { personId: P, file, name: 'Doc' } });

  it('rejects a row whose file lies outside (E_NOT_ALLOWED), accepts one inside', async () => {
    const { base, data, allowed } = setup();
    const inside = await toImportItem(rec('data/a.txt'), base, allowed);
    expect(inside.file).toBe(path.join(data, 'a.txt'));
    const err = await rejection(toImportItem(rec('outside/secret.txt'), base, allowed));
    expect(err).toBeInstanceOf(NotAllowedError);
    expect((err as NotAllowedError).code).toBe('E_NOT_ALLOWED');
    expect(await rejection(toImportItem(rec('data/../data2/b.txt'), base, allowed))).toBeInstanceOf(NotAllowedError);
    // Without the setting: as before.
    expect((await toImportItem(rec('outside/secret.txt'), base)).file).toBe(path.join(base, 'outside', 'secret.txt'));
  });
});

describe('scheduled archive runs under the worker that takes their tick', () => {
  it('refuse inputs outside --allow-read and an archive or report folder outside --allow-write', async () => {
    const { base, data, outside } = setup();
    const allowRead = AllowedFolders.resolve('--allow-read', [data], base);
    const allowWrite = AllowedFolders.resolve('--allow-write', [data], base);
    writeFileSync(path.join(data, 'faces.csv'), 'faceId\n');
    const spec = { archiveKey: 'k', apiUrl: 'http://127.0.0.1:1', outDir: path.join(data, 'arch'), faces: path.join(data, 'faces.csv'), attempts: 1, pageSize: 50, reportRoot: path.join(data, 'reports') };
    await confineSpec(spec, { allowRead, allowWrite });
    expect(await rejection(confineSpec({ ...spec, faces: path.join(outside, 'secret.txt') }, { allowRead, allowWrite }))).toBeInstanceOf(NotAllowedError);
    expect(await rejection(confineSpec({ ...spec, reportRoot: path.join(outside, 'new', 'reports') }, { allowRead, allowWrite }))).toBeInstanceOf(NotAllowedError);
    expect(await rejection(confineSpec({ ...spec, outDir: path.join(outside, 'arch') }, { allowWrite }))).toBeInstanceOf(NotAllowedError);
    expect(existsSync(path.join(outside, 'new'))).toBe(false);
    // Unconfined: anything goes, as before.
    await confineSpec({ ...spec, faces: path.join(outside, 'secret.txt') }, {});
  });
});

describe('the worker says at start how it is confined', () => {
  function said(config: Partial<Config>): Array<[string, string]> {
    const lines: Array<[string, string]> = [];
    const log = { warn: (a: unknown, b?: string) => lines.push(['warn', String(b ?? a)]), info: (a: unknown, b?: string) => lines.push(['info', String(b ?? a)]) };
    sayConfinement(config as Config, log as unknown as Logger);
    return lines;
  }

  it('warns when either half is missing, and names it', () => {
    const { base, data } = setup();
    const folders = AllowedFolders.resolve('--allow-read', [data], base);
    const writeFolders = AllowedFolders.resolve('--allow-write', [data], base);
    expect(said({})).toEqual([['warn', expect.stringContaining('not confined')]]);
    expect(said({ allowWrite: writeFolders })).toEqual([['warn', expect.stringContaining('set --allow-read')]]);
    expect(said({ allowRead: folders })).toEqual([['warn', expect.stringContaining('set --allow-write')]]);
    expect(said({ allowRead: folders, allowWrite: writeFolders })).toEqual([['info', expect.stringContaining('worker confined')]]);
  });
});

describe("a scheduled archive's report job under --allow-write", () => {
  it('writes no report outside, and only checks once the run is over', async () => {
    const { base, data, outside } = setup();
    const allowWrite = AllowedFolders.resolve('--allow-write', [data], base);
    const spec = { archiveKey: 'k', apiUrl: 'http://127.0.0.1:1', outDir: path.join(data, 'arch'), faces: path.join(data, 'faces.csv'), attempts: 1, pageSize: 50, reportRoot: path.join(outside, 'reports') };
    let status = { done: 1, total: 2, queued: 1, state: 'running' as string | undefined };
    const finished: string[] = [];
    const ctx = {
      allowWrite,
      clock: { now: () => 0 },
      store: {},
      log: { child: () => ({ info: () => undefined, warn: () => undefined }) },
      runs: { status: async () => status, finish: async (_plan: unknown, missing: { code: string }) => (finished.push(missing.code), { runId: 'r', rows: 2, counts: {}, bytes: 0, reportDir: '' }) },
    } as unknown as JobContext;
    const later: number[] = [];
    const job = {
      id: 'j', attempt: 1, scheduledAt: 0,
      payload: { spec, runId: 'r', reportDir: path.join(outside, 'reports', 'r'), startedAtMs: 0 },
      log: () => ctx.log,
      later: async (ms: number) => (later.push(ms), undefined as never),
    };
    // Still running: it only waits (the folder is not looked at yet).
    await archiveReport.run(job as never, ctx);
    expect(later).toHaveLength(1);
    status = { done: 2, total: 2, queued: 0, state: 'done' };
    expect(await rejection(archiveReport.run(job as never, ctx))).toBeInstanceOf(NotAllowedError);
    expect(finished).toEqual([]);
    expect(existsSync(path.join(outside, 'reports'))).toBe(false);
  });
});
