import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { freeName, moveExclusive, moveIntoFolder, numberedName } from '../../src/outputs/no-clobber-move.ts';
import { tempDir } from '../helpers/fixtures.ts';

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

  it('never overwrites: an exclusive move fails on a taken name, a folder move takes the next free one', async () => {
    const dir = tempDir();
    const src = path.join(dir, 'scan.pdf');
    const dest = path.join(dir, 'done', 'scan.pdf');
    writeFileSync(src, 'new');
    writeFileSync(`${src}.json`, '{"name":"N"}');
    await moveExclusive(src, dest);
    writeFileSync(src, 'newer');
    await expect(moveExclusive(src, dest)).rejects.toMatchObject({ code: 'EEXIST' });
    expect(readFileSync(dest, 'utf8')).toBe('new');
    writeFileSync(`${src}.json`, '{"name":"N2"}');
    const moved = await moveIntoFolder(src, path.join(dir, 'done'), { sidecar: `${src}.json`, note: '{"reason":"x"}\n' });
    expect(path.basename(moved)).toBe('scan (1).pdf');
    expect(readFileSync(moved, 'utf8')).toBe('newer');
    expect(readFileSync(`${moved}.json`, 'utf8')).toBe('{"name":"N2"}');
    expect(readFileSync(`${moved}.error.json`, 'utf8')).toBe('{"reason":"x"}\n');
    expect(readFileSync(dest, 'utf8')).toBe('new');
    expect(existsSync(src)).toBe(false);
  });
});
