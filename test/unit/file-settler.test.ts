import { appendFileSync, lstatSync, mkdirSync, renameSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { identityOf } from '../../src/folder-handle.ts';
import { ManualClock } from '../../src/pacing/clock.ts';
import { FileSettler, type SettledFile } from '../../src/sources/file-settler.ts';
import { tempDir } from '../helpers/fixtures.ts';

function settler(settleMs = 1000) {
  const clock = new ManualClock();
  const ready: SettledFile[] = [];
  const skipped: string[] = [];
  const s = new FileSettler({ settleMs, clock, onReady: (f) => ready.push(f), onSkipped: (f, why) => skipped.push(`${path.basename(f)}: ${why}`) });
  /** `ms` later, the settler's next look. */
  const lookAfter = async (ms: number) => {
    clock.advance(ms);
    await s.check();
  };
  return { s, clock, ready, skipped, lookAfter };
}

/** A settler that has had its first look at `rel`, written with `content` (and `mtime`, in seconds, when given) in a fresh temp dir. */
async function firstLook(rel: string, content: string, options: { settleMs?: number; mtime?: number } = {}) {
  const dir = tempDir();
  const file = path.join(dir, rel);
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, content);
  if (options.mtime !== undefined) utimesSync(file, options.mtime, options.mtime);
  const settling = settler(options.settleMs);
  settling.s.touch(file);
  await settling.s.check();
  return { dir, file, ...settling };
}

describe('file settler', () => {
  it('hands a file over only after its size and mtime were stable for the settle time, once', async () => {
    const { file, s, clock, ready, lookAfter } = await firstLook('a.pdf', 'part 1');
    clock.advance(600);
    appendFileSync(file, ' part 2'); // grows: the settle time starts again
    await s.check();
    await lookAfter(600);
    expect(ready).toEqual([]);
    await lookAfter(500);
    expect(ready.map((f) => [path.basename(f.path), f.size])).toEqual([['a.pdf', 13]]);
    // In hand: events are ignored until release.
    s.touch(file);
    await lookAfter(5000);
    await s.check();
    expect(ready).toHaveLength(1);
    expect(s.inHand).toBe(1);
    s.release(file);
    expect(s.inHand).toBe(0);
    expect(s.pending).toBe(0);
  });

  it('notices a rewrite of the same size through the mtime', async () => {
    const { file, s, clock, ready, lookAfter } = await firstLook('b.pdf', 'aaaa', { mtime: 1000 });
    clock.advance(900);
    writeFileSync(file, 'bbbb');
    utimesSync(file, 2000, 2000);
    await s.check();
    await lookAfter(900);
    expect(ready).toEqual([]);
  });

  it('waits for a sidecar to settle with its file, and reports it', async () => {
    const { file, s, clock, ready, lookAfter } = await firstLook('c.pdf', 'doc');
    clock.advance(900);
    writeFileSync(`${file}.json`, '{"name":"C"}');
    s.touch(`${file}.json`); // the sidecar's event restarts its file's settle time
    await s.check();
    await lookAfter(900);
    expect(ready).toEqual([]);
    await lookAfter(200);
    expect(ready).toEqual([expect.objectContaining({ path: file, sidecar: `${file}.json` })]);
  });

  it('never follows or hands over a symbolic link; forgets vanished files', async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'd'));
    const link = path.join(dir, 'd', 'link.pdf');
    symlinkSync('/etc/hostname', link);
    const gone = path.join(dir, 'd', 'gone.pdf');
    const { s, ready, skipped, lookAfter } = settler(0);
    s.touch(link);
    s.touch(gone);
    await lookAfter(10);
    await s.check();
    expect(ready).toEqual([]);
    expect(skipped).toEqual(['link.pdf: symbolic link']);
    expect(s.pending).toBe(0);
  });
});

describe('file settler: files and folders swapped while settling', () => {
  const idOf = (p: string) => identityOf(lstatSync(p, { bigint: true }));

  it('hands over the identities of the file and its folder, and a file swapped for another of the same size and mtime starts again', async () => {
    const { dir, file, s, clock, ready, lookAfter } = await firstLook('p/a.pdf', 'aaaa', { settleMs: 1000, mtime: 1000 });
    clock.advance(900);
    // Same size, same mtime, another file: only its identity tells.
    writeFileSync(path.join(dir, 'p', 'b.tmp'), 'bbbb');
    utimesSync(path.join(dir, 'p', 'b.tmp'), 1000, 1000);
    renameSync(path.join(dir, 'p', 'b.tmp'), file);
    await s.check();
    await lookAfter(900);
    expect(ready).toEqual([]);
    await lookAfter(200);
    expect(ready).toEqual([expect.objectContaining({ path: file, size: 4, id: idOf(file), folderId: idOf(path.join(dir, 'p')) })]);
    expect(ready[0]!.unsafe).toBeUndefined();
  });

  it('a folder swapped for a link is handed over at once as unsafe, without the stats of what the link leads to', async () => {
    const { dir, file, s, clock, ready, lookAfter } = await firstLook('drop/p/id_rsa', 'decoy', { settleMs: 1000 });
    mkdirSync(path.join(dir, 'private'));
    writeFileSync(path.join(dir, 'private', 'id_rsa'), 'PRIVATE KEY');
    clock.advance(500);
    renameSync(path.join(dir, 'drop', 'p'), path.join(dir, 'drop', 'elsewhere'));
    symlinkSync(path.join(dir, 'private'), path.join(dir, 'drop', 'p'));
    await s.check();
    expect(ready).toEqual([{ path: file, size: 0, mtimeMs: 0, id: '', folderId: '', unsafe: 'its folder p was replaced by a symbolic link; nothing is read through it' }]);
    expect(s.inHand).toBe(1);
    await lookAfter(5000);
    expect(ready).toHaveLength(1);
  });
});

describe('file settler rescans', () => {
  it('notice() adds a file missed by events without restarting one already settling, and ignores files in hand', async () => {
    const dir = tempDir();
    const file = path.join(dir, 'missed.pdf');
    writeFileSync(file, 'whole');
    const { s, clock, ready, lookAfter } = settler(1000);
    s.notice(file);
    await s.check();
    clock.advance(700);
    s.notice(file); // a second rescan must not push the hand-over back
    await s.check();
    await lookAfter(400);
    expect(ready.map((f) => path.basename(f.path))).toEqual(['missed.pdf']);
    s.notice(file); // in hand now
    await lookAfter(5000);
    await s.check();
    expect(ready).toHaveLength(1);
  });
});
