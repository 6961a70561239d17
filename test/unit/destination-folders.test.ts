import { mkdirSync, realpathSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { destinationFolder } from '../../src/commands/watch/destination-folders.ts';
import { ConfigError } from '../../src/errors.ts';
import { tempDir } from '../helpers/fixtures.ts';

function setup() {
  const base = realpathSync(tempDir());
  const dir = path.join(base, 'drop');
  const outside = path.join(base, 'outside');
  mkdirSync(dir);
  mkdirSync(outside);
  return { base, dir, outside };
}

describe('the processed and failed folders of a watch', () => {
  it('inside the drop folder: walked from it, level by level; a link or a file there refuses the start', () => {
    const { base, dir, outside } = setup();
    expect(destinationFolder(dir, dir, undefined, '.failed', '--failed-dir')).toEqual({ root: dir, levels: ['.failed'] });
    expect(destinationFolder(dir, dir, path.join(dir, 'done', 'x'), '.processed', '--processed-dir')).toEqual({ root: dir, levels: ['done', 'x'] });
    symlinkSync(outside, path.join(dir, '.failed'));
    expect(() => destinationFolder(dir, dir, undefined, '.failed', '--failed-dir')).toThrow(ConfigError);
    expect(() => destinationFolder(dir, dir, undefined, '.failed', '--failed-dir')).toThrow(`${path.join(dir, '.failed')} is a symbolic link (to ${outside})`);
    // Given through a link to the drop folder, or deeper than the link: the same.
    symlinkSync(dir, path.join(base, 'alias'));
    expect(() => destinationFolder(dir, path.join(base, 'alias'), path.join(base, 'alias', '.failed', 'sub'), '.failed', '--failed-dir')).toThrow(/\.failed is a symbolic link/);
    writeFileSync(path.join(dir, '.processed'), 'a file');
    expect(() => destinationFolder(dir, dir, undefined, '.processed', '--processed-dir')).toThrow(/\.processed is not a folder/);
    expect(() => destinationFolder(dir, dir, dir, '.processed', '--processed-dir')).toThrow(/is the watched folder itself/);
  });

  it('outside: its real path, levels not there yet created at the first move; one that leads into the drop folder is judged as inside', () => {
    const { base, dir, outside } = setup();
    symlinkSync(outside, path.join(base, 'out-link'));
    expect(destinationFolder(dir, dir, path.join(base, 'out-link', 'done', 'today'), '.processed', '--processed-dir')).toEqual({ root: outside, levels: ['done', 'today'] });
    expect(destinationFolder(dir, dir, outside, '.processed', '--processed-dir')).toEqual({ root: outside, levels: [] });
    mkdirSync(path.join(dir, 'kept'));
    symlinkSync(path.join(dir, 'kept'), path.join(base, 'into-drop'));
    expect(destinationFolder(dir, dir, path.join(base, 'into-drop', 'x'), '.processed', '--processed-dir')).toEqual({ root: dir, levels: ['kept', 'x'] });
  });
});
