import { existsSync, mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { open, rename } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { OutFolder, prepareOutTarget, resolveInside } from '../../src/outputs/out-dir.ts';
import { classify } from '../../src/api/classify.ts';
import { archivePath } from '../../src/outputs/archive-files.ts';
import { FileError, OutsideOutError } from '../../src/errors.ts';
import { folderBesideOutside, rejection } from '../helpers/fixtures.ts';

describe('OutFolder', () => {
  it('creates missing levels one by one and writes and renames inside the folder it holds', async () => {
    const { root } = folderBesideOutside('out');
    const folder = await OutFolder.open(root, path.join(root, 'a/b/c'));
    try {
      const handle = await open(folder.entry('.x.part'), 'wx');
      await handle.writeFile('bytes');
      await handle.close();
      await folder.verify();
      await rename(folder.entry('.x.part'), folder.entry('x'));
    } finally {
      await folder.close();
    }
    expect(readdirSync(path.join(root, 'a/b/c'))).toEqual(['x']);
  });

  it('refuses a link on the way before creating anything below it', async () => {
    const { root, outside } = folderBesideOutside('out');
    symlinkSync(outside, path.join(root, 'link'));
    const err = await rejection(OutFolder.open(root, path.join(root, 'link/deep/er')));
    expect(err).toBeInstanceOf(OutsideOutError);
    expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    expect(readdirSync(outside)).toEqual([]);
  });

  it('refuses a file where a folder should be (permanent, not a link)', async () => {
    const { root } = folderBesideOutside('out');
    writeFileSync(path.join(root, 'plain'), 'x');
    const err = await rejection(OutFolder.open(root, path.join(root, 'plain/sub')));
    expect(err).toBeInstanceOf(FileError);
    expect(classify(err).kind).toBe('permanent');
  });

  it('verify() fails when the folder was swapped for a link, or moved out of --out, after it was opened', async () => {
    const { root, outside } = folderBesideOutside('out');
    const swapped = await OutFolder.open(root, path.join(root, 'race'));
    renameSync(path.join(root, 'race'), path.join(root, 'race.real'));
    symlinkSync(outside, path.join(root, 'race'));
    await expect(swapped.verify()).rejects.toBeInstanceOf(OutsideOutError);
    await swapped.close();

    const moved = await OutFolder.open(root, path.join(root, 'gone'));
    renameSync(path.join(root, 'gone'), path.join(outside, 'gone'));
    await expect(moved.verify()).rejects.toBeInstanceOf(OutsideOutError);
    await moved.close();
    expect(readdirSync(outside)).toEqual(['gone']);
    expect(readdirSync(path.join(outside, 'gone'))).toEqual([]);
  });

  it('is held open between uses while it stays at its path, and opened afresh once it has moved', async () => {
    const { root } = folderBesideOutside('out');
    const dir = path.join(root, 'photos');
    const fdOf = (folder: OutFolder) => folder.entry('x').split('/')[4];
    const a = await OutFolder.open(root, dir);
    const b = await OutFolder.open(root, dir);
    // One descriptor for both: the folder was opened once.
    expect(fdOf(b)).toBe(fdOf(a));
    await a.close();
    await b.close();
    const again = await OutFolder.open(root, dir);
    expect(fdOf(again)).toBe(fdOf(a));
    await again.close();

    // Moved away between two downloads: the next one gets the folder now at the path, not the moved one.
    renameSync(dir, path.join(root, 'photos.old'));
    mkdirSync(dir);
    const fresh = await OutFolder.open(root, dir);
    const handle = await open(fresh.entry('.y.part'), 'wx');
    await handle.close();
    await fresh.verify();
    await rename(fresh.entry('.y.part'), fresh.entry('y'));
    await fresh.syncEntries();
    await fresh.close();
    expect(readdirSync(dir)).toEqual(['y']);
    expect(readdirSync(path.join(root, 'photos.old'))).toEqual([]);
  });

  it('a held folder swapped for a link is let go: verify() refuses, and the next open refuses the link', async () => {
    const { root, outside } = folderBesideOutside('out');
    const dir = path.join(root, 'held');
    const first = await OutFolder.open(root, dir);
    await first.close();
    renameSync(dir, path.join(root, 'held.real'));
    symlinkSync(outside, dir);
    const err = await rejection(OutFolder.open(root, dir));
    expect(err).toBeInstanceOf(OutsideOutError);
    expect(readdirSync(outside)).toEqual([]);
  });

  it('entry() takes plain names only', async () => {
    const { root } = folderBesideOutside('out');
    const folder = await OutFolder.open(root, root);
    expect(() => folder.entry('..')).toThrow(OutsideOutError);
    expect(() => folder.entry('a/b')).toThrow(OutsideOutError);
    await folder.close();
  });
});

describe('prepareOutTarget / resolveInside', () => {
  it('refuses paths that leave --out and a target that is a link', async () => {
    const { root, outside } = folderBesideOutside('out');
    expect(() => resolveInside(root, '../x.jpg')).toThrow(OutsideOutError);
    expect(() => resolveInside(root, '/etc/x.jpg')).toThrow(OutsideOutError);
    symlinkSync(path.join(outside, 'x.jpg'), path.join(root, 'x.jpg'));
    await expect(prepareOutTarget(root, 'x.jpg')).rejects.toBeInstanceOf(OutsideOutError);
    expect(existsSync(path.join(outside, 'x.jpg'))).toBe(false);
    const ok = await prepareOutTarget(root, 'enrollment/f.jpg');
    expect(ok).toEqual({ root, target: path.join(root, 'enrollment/f.jpg'), exists: false });
    expect(existsSync(path.join(root, 'enrollment'))).toBe(true);
  });
});

describe('archivePath', () => {
  it('creates the archive folders without going through a link, and the refusal is permanent', async () => {
    const { root, outside } = folderBesideOutside('out');
    symlinkSync(outside, path.join(root, 'detections'));
    const err = await rejection(archivePath(root, 'detections/p/2024-01-01/x.jpg'));
    expect(err).toBeInstanceOf(OutsideOutError);
    expect(classify(err).kind).toBe('permanent');
    expect(readdirSync(outside)).toEqual([]);
    expect(await archivePath(root, 'enrollment/f.jpg')).toBe(path.join(root, 'enrollment/f.jpg'));
  });
});
