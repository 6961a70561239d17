import { chmodSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { classify } from '../../src/api/classify.ts';
import { UnsafePathError } from '../../src/errors.ts';
import { identityOf, type FileRef } from '../../src/folder-handle.ts';
import { freeName, moveIntoFolder, numberedName, removeFileAndSidecar } from '../../src/outputs/no-clobber-move.ts';
import { folderBesideOutside, rejection, tempDir } from '../helpers/fixtures.ts';

/** A drop folder `root/drop` with `root/outside` beside it (a folder of idsync's user). */
function setup(): { drop: string; outside: string } {
  const { root: drop, outside } = folderBesideOutside('drop');
  return { drop, outside };
}

/** The ref of `drop/<levels>/<name>` as the watch takes it: with the file's and its folder's identities now. */
function refOf(drop: string, rel: string): FileRef {
  const levels = rel.split('/').slice(0, -1);
  const file = path.join(drop, rel);
  return { root: drop, levels, name: path.basename(rel), id: identityOf(lstatSync(file, { bigint: true })), folderId: identityOf(lstatSync(path.dirname(file), { bigint: true })) };
}

describe('name clashes', () => {
  it('numbers names before the extension', () => {
    expect(numberedName('scan.pdf', 0)).toBe('scan.pdf');
    expect(numberedName('scan.pdf', 2)).toBe('scan (2).pdf');
    expect(numberedName('archive.tar.gz', 1)).toBe('archive.tar (1).gz');
    expect(numberedName('README', 1)).toBe('README (1)');
  });

  it('picks the first name whose file, sidecar and error note are all free', () => {
    const taken = new Set(['scan.pdf', 'scan (1).pdf.error.json', 'scan (2).pdf.json']);
    expect(freeName('scan.pdf', (n) => taken.has(n))).toBe('scan (3).pdf');
    expect(freeName('other.pdf', (n) => taken.has(n))).toBe('other.pdf');
  });

  it('never overwrites: a folder move takes the next free name, with the sidecar and the note', async () => {
    const { drop } = setup();
    mkdirSync(path.join(drop, 'p'));
    const src = path.join(drop, 'p', 'scan.pdf');
    writeFileSync(src, 'new');
    writeFileSync(`${src}.json`, '{"name":"N"}');
    const first = await moveIntoFolder(refOf(drop, 'p/scan.pdf'), { root: drop, levels: ['.done', 'p'] }, { sidecar: 'scan.pdf.json' });
    expect(first).toBe(path.join(drop, '.done/p/scan.pdf'));
    writeFileSync(src, 'newer');
    writeFileSync(`${src}.json`, '{"name":"N2"}');
    const moved = await moveIntoFolder(refOf(drop, 'p/scan.pdf'), { root: drop, levels: ['.done', 'p'] }, { sidecar: 'scan.pdf.json', note: '{"reason":"x"}\n' });
    expect(path.basename(moved)).toBe('scan (1).pdf');
    expect(readFileSync(moved, 'utf8')).toBe('newer');
    expect(readFileSync(`${moved}.json`, 'utf8')).toBe('{"name":"N2"}');
    expect(readFileSync(`${moved}.error.json`, 'utf8')).toBe('{"reason":"x"}\n');
    expect(readFileSync(first, 'utf8')).toBe('new');
    expect(readFileSync(`${first}.json`, 'utf8')).toBe('{"name":"N"}');
    expect(existsSync(src)).toBe(false);
    expect(readdirSync(path.join(drop, 'p'))).toEqual([]);
  });
});

describe('moves in a folder others may write into', () => {
  it('never moves into a link planted at any level of the destination, nor creates anything through it', async () => {
    const { drop, outside } = setup();
    writeFileSync(path.join(drop, 'authorized_keys'), 'ssh-ed25519 AAAA attacker\n');
    symlinkSync(outside, path.join(drop, '.failed'));
    const err = await rejection(moveIntoFolder(refOf(drop, 'authorized_keys'), { root: drop, levels: ['.failed'] }, { note: '{}' }));
    expect(err).toBeInstanceOf(UnsafePathError);
    expect((err as Error).message).toMatch(/\.failed in .* is a symbolic link/);
    expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    // Deeper: .failed is real, its person folder a link.
    renameSync(path.join(drop, '.failed'), path.join(drop, 'old-link'));
    mkdirSync(path.join(drop, '.failed'));
    symlinkSync(outside, path.join(drop, '.failed', 'p'));
    await expect(moveIntoFolder(refOf(drop, 'authorized_keys'), { root: drop, levels: ['.failed', 'p', 'deeper'] })).rejects.toBeInstanceOf(UnsafePathError);
    expect(readdirSync(outside)).toEqual([]);
    expect(readFileSync(path.join(drop, 'authorized_keys'), 'utf8')).toContain('attacker');
  });

  it('never moves (or removes) a file through a source folder swapped for a link, nor one that is not the file seen', async () => {
    const { drop, outside } = setup();
    mkdirSync(path.join(drop, 'p'));
    writeFileSync(path.join(drop, 'p', 'id_rsa'), 'decoy');
    const seen = refOf(drop, 'p/id_rsa');
    writeFileSync(path.join(outside, 'id_rsa'), 'PRIVATE');
    renameSync(path.join(drop, 'p'), path.join(drop, 'elsewhere'));
    symlinkSync(outside, path.join(drop, 'p'));
    const dest = { root: drop, levels: ['.processed', 'p'] };
    await expect(moveIntoFolder(seen, dest)).rejects.toThrow(/p in .* is a symbolic link/);
    await expect(removeFileAndSidecar(seen)).rejects.toBeInstanceOf(UnsafePathError);
    // Without identities the link is refused all the same.
    await expect(moveIntoFolder({ root: drop, levels: ['p'], name: 'id_rsa' }, dest)).rejects.toBeInstanceOf(UnsafePathError);

    // A real folder put in its place: not the folder seen.
    renameSync(path.join(drop, 'p'), path.join(drop, 'link'));
    mkdirSync(path.join(drop, 'p'));
    writeFileSync(path.join(drop, 'p', 'id_rsa'), 'other');
    await expect(moveIntoFolder(seen, dest)).rejects.toThrow(/folder p in .* was replaced/);
    // The folder seen, but another file under the name.
    const otherFolder = refOf(drop, 'p/id_rsa');
    await expect(moveIntoFolder({ ...otherFolder, id: seen.id }, dest)).rejects.toThrow(/was replaced since it was seen/);
    await expect(removeFileAndSidecar({ ...otherFolder, id: seen.id })).rejects.toThrow(/was replaced since it was seen/);
    // And a link under the file's own name.
    symlinkSync(path.join(outside, 'id_rsa'), path.join(drop, 'p', 'key'));
    await expect(moveIntoFolder({ root: drop, levels: ['p'], name: 'key' }, dest)).rejects.toThrow(/is a symbolic link/);

    expect(readFileSync(path.join(outside, 'id_rsa'), 'utf8')).toBe('PRIVATE');
    expect(existsSync(path.join(drop, '.processed', 'p'))).toBe(false);
    expect(readFileSync(path.join(drop, 'p', 'id_rsa'), 'utf8')).toBe('other');
  });

  it('a sidecar that is a link stays where it is; the file moves', async () => {
    const { drop, outside } = setup();
    mkdirSync(path.join(drop, 'p'));
    writeFileSync(path.join(drop, 'p', 'a.pdf'), 'a');
    writeFileSync(path.join(outside, 'secret.json'), '{}');
    symlinkSync(path.join(outside, 'secret.json'), path.join(drop, 'p', 'a.pdf.json'));
    const moved = await moveIntoFolder(refOf(drop, 'p/a.pdf'), { root: drop, levels: ['.failed', 'p'] }, { sidecar: 'a.pdf.json' });
    expect(readdirSync(path.dirname(moved))).toEqual(['a.pdf']);
    expect(lstatSync(path.join(drop, 'p', 'a.pdf.json')).isSymbolicLink()).toBe(true);
    expect(readFileSync(path.join(outside, 'secret.json'), 'utf8')).toBe('{}');
  });

  // /dev/shm is a tmpfs on Linux: another device than the temp dir, so link() fails with EXDEV.
  const otherDevice = existsSync('/dev/shm') && statSync('/dev/shm').dev !== statSync(tempDir()).dev;
  it.runIf(otherDevice)('across file systems it copies into a new file (content and mode), then removes the source', async () => {
    const { drop } = setup();
    const elsewhere = mkdtempSync('/dev/shm/idsync-move-');
    try {
      mkdirSync(path.join(drop, 'p'));
      writeFileSync(path.join(drop, 'p', 'a.pdf'), 'x'.repeat(300_000));
      chmodSync(path.join(drop, 'p', 'a.pdf'), 0o640);
      writeFileSync(path.join(elsewhere, 'a.pdf'), 'taken');
      const moved = await moveIntoFolder(refOf(drop, 'p/a.pdf'), { root: elsewhere, levels: [] });
      expect(path.basename(moved)).toBe('a (1).pdf');
      expect(readFileSync(moved, 'utf8')).toBe('x'.repeat(300_000));
      expect(statSync(moved).mode & 0o777).toBe(0o640);
      expect(readFileSync(path.join(elsewhere, 'a.pdf'), 'utf8')).toBe('taken');
      expect(readdirSync(path.join(drop, 'p'))).toEqual([]);
    } finally {
      rmSync(elsewhere, { recursive: true, force: true });
    }
  });

  it('removes the file seen and its sidecar; a file already gone is no error', async () => {
    const { drop } = setup();
    mkdirSync(path.join(drop, 'p'));
    writeFileSync(path.join(drop, 'p', 'a.pdf'), 'a');
    writeFileSync(path.join(drop, 'p', 'a.pdf.json'), '{}');
    const ref = refOf(drop, 'p/a.pdf');
    await removeFileAndSidecar(ref, 'a.pdf.json');
    expect(readdirSync(path.join(drop, 'p'))).toEqual([]);
    await removeFileAndSidecar(ref, 'a.pdf.json');
    await removeFileAndSidecar({ ...ref, levels: ['gone'] });
  });
});
