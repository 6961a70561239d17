import { execFileSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, readdirSync, renameSync, symlinkSync, writeFileSync } from 'node:fs';
import { open } from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { classify } from '../../src/api/classify.ts';
import { FileError, UnsafePathError } from '../../src/errors.ts';
import { FD_PATHS, FolderHandle, identityOf, placeUnder } from '../../src/folder-handle.ts';
import { openDropped, readDroppedText } from '../../src/sources/dropped-file.ts';
import { folderBesideOutside, rejection } from '../helpers/fixtures.ts';

describe('FolderHandle', () => {
  it('creates missing levels one by one when asked, and names files inside the folder it holds', async () => {
    const { root } = folderBesideOutside('drop');
    const folder = await FolderHandle.open({ root, levels: ['a', 'b'] }, { create: true });
    try {
      expect(folder.dir).toBe(path.join(root, 'a/b'));
      if (FD_PATHS) expect(folder.entry('x')).toMatch(/^\/proc\/self\/fd\/\d+\/x$/);
      const handle = await open(folder.entry('x'), 'wx');
      await handle.close();
      expect(await folder.identity()).toBe(identityOf(lstatSync(path.join(root, 'a/b'), { bigint: true })));
      expect((await folder.list()).map((e) => e.name)).toEqual(['x']);
      expect(await folder.stat('missing')).toBeUndefined();
      expect(() => folder.entry('../x')).toThrow(UnsafePathError);
    } finally {
      await folder.close();
    }
    expect(readdirSync(path.join(root, 'a/b'))).toEqual(['x']);
    // Without create, a missing level is ENOENT, and nothing is created.
    const err = await rejection(FolderHandle.open({ root, levels: ['a', 'c'] }));
    expect(err).toBeInstanceOf(FileError);
    expect((err as FileError).sysCode).toBe('ENOENT');
    expect(existsSync(path.join(root, 'a/c'))).toBe(false);
  });

  it('refuses a link at any level, and a root that is a link, before creating anything below it', async () => {
    const { root, outside } = folderBesideOutside('drop');
    mkdirSync(path.join(root, 'a'));
    symlinkSync(outside, path.join(root, 'a', 'link'));
    for (const create of [false, true]) {
      const err = await rejection(FolderHandle.open({ root, levels: ['a', 'link', 'deep'] }, { create }));
      expect(err).toBeInstanceOf(UnsafePathError);
      expect((err as Error).message).toBe(`a/link in ${root} is a symbolic link; idsync never follows links there`);
      expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    }
    symlinkSync(outside, path.join(root, 'linked-root'));
    await expect(FolderHandle.open({ root: path.join(root, 'linked-root'), levels: [] })).rejects.toBeInstanceOf(UnsafePathError);
    expect(readdirSync(outside)).toEqual([]);
    // A level that is a file is not a folder (and no link).
    writeFileSync(path.join(root, 'f'), 'x');
    const notDir = await rejection(FolderHandle.open({ root, levels: ['f'] }, { create: true }));
    expect(notDir).toBeInstanceOf(FileError);
    expect((notDir as FileError).sysCode).toBe('ENOTDIR');
  });

  it.runIf(FD_PATHS)('keeps working in the folder it opened when a level is swapped for a link afterwards; verify says so', async () => {
    const { root, outside } = folderBesideOutside('drop');
    mkdirSync(path.join(root, 'p'));
    const folder = await FolderHandle.open({ root, levels: ['p'] });
    try {
      renameSync(path.join(root, 'p'), path.join(root, 'moved'));
      symlinkSync(outside, path.join(root, 'p'));
      const handle = await open(folder.entry('x'), 'wx');
      await handle.close();
      expect(readdirSync(path.join(root, 'moved'))).toEqual(['x']);
      expect(readdirSync(outside)).toEqual([]);
      await expect(folder.verify()).rejects.toThrow(/p in .* was moved or replaced/);
    } finally {
      await folder.close();
    }
  });

  it('placeUnder: the levels of a folder inside a root, or nothing', () => {
    expect(placeUnder('/srv/drop', '/srv/drop/.failed/x')).toEqual({ root: '/srv/drop', levels: ['.failed', 'x'] });
    expect(placeUnder('/srv/drop', '/srv/drop')).toEqual({ root: '/srv/drop', levels: [] });
    expect(placeUnder('/srv/drop', '/srv/dropped')).toBeUndefined();
    expect(placeUnder('/srv/drop', '/srv')).toBeUndefined();
  });
});

describe('openDropped', () => {
  it('opens the file seen in the folder seen, and a path that names that very file afterwards', async () => {
    const { root, outside } = folderBesideOutside('drop');
    mkdirSync(path.join(root, 'p'));
    const file = path.join(root, 'p', 'a.txt');
    writeFileSync(file, 'dropped');
    writeFileSync(path.join(outside, 'a.txt'), 'PRIVATE');
    const ref = { root, levels: ['p'], name: 'a.txt', id: identityOf(lstatSync(file, { bigint: true })), folderId: identityOf(lstatSync(path.dirname(file), { bigint: true })) };
    const opened = await openDropped(ref);
    try {
      expect(opened).toMatchObject({ size: 7, id: ref.id });
      renameSync(path.join(root, 'p'), path.join(root, 'moved'));
      symlinkSync(outside, path.join(root, 'p'));
      if (FD_PATHS) {
        const again = await open(opened.path, 'r');
        expect(await again.readFile('utf8')).toBe('dropped');
        await again.close();
      }
    } finally {
      await opened.close();
    }
    // Now through the link: refused, whatever it leads to.
    await expect(openDropped(ref)).rejects.toThrow(/p in .* is a symbolic link/);
    await expect(readDroppedText({ root, levels: ['p'], name: 'a.txt' }, 100)).rejects.toBeInstanceOf(UnsafePathError);
  });

  it('refuses another folder, another file, a link under the name, and (without blocking) a FIFO', async () => {
    const { root, outside } = folderBesideOutside('drop');
    mkdirSync(path.join(root, 'p'));
    const file = path.join(root, 'p', 'a.txt');
    writeFileSync(file, 'dropped');
    const ref = { root, levels: ['p'], name: 'a.txt', id: identityOf(lstatSync(file, { bigint: true })), folderId: identityOf(lstatSync(path.dirname(file), { bigint: true })) };
    renameSync(path.join(root, 'p'), path.join(root, 'moved'));
    mkdirSync(path.join(root, 'p'));
    writeFileSync(file, 'other');
    await expect(openDropped(ref)).rejects.toThrow(/folder p in .* was replaced since a.txt was seen/);
    await expect(openDropped({ ...ref, folderId: identityOf(lstatSync(path.join(root, 'p'), { bigint: true })) })).rejects.toThrow(/a\.txt was replaced since it was seen/);
    writeFileSync(path.join(outside, 'secret'), 'PRIVATE');
    symlinkSync(path.join(outside, 'secret'), path.join(root, 'p', 'link.txt'));
    await expect(openDropped({ root, levels: ['p'], name: 'link.txt' })).rejects.toThrow(/link\.txt in .* is a symbolic link/);
    // A sidecar read the same way: its size always, its text only when small.
    writeFileSync(path.join(root, 'p', 'a.txt.json'), '{"name":"A"}');
    expect(await readDroppedText({ root, levels: ['p'], name: 'a.txt.json' }, 100)).toEqual({ size: 12, text: '{"name":"A"}' });
    expect(await readDroppedText({ root, levels: ['p'], name: 'a.txt.json' }, 5)).toEqual({ size: 12, text: '' });
    execFileSync('mkfifo', [path.join(root, 'p', 'fifo')]);
    await expect(openDropped({ root, levels: ['p'], name: 'fifo' })).rejects.toThrow(/not a regular file/);
  });
});
