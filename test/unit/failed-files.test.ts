import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, rmdirSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { returnFailedFiles } from '../../src/commands/watch/failed-files.ts';
import { silentLogger } from '../../src/log.ts';
import { tempDir } from '../helpers/fixtures.ts';

function setup() {
  const base = realpathSync(tempDir());
  const drop = path.join(base, 'drop');
  const outside = path.join(base, 'outside');
  mkdirSync(path.join(drop, '.failed'), { recursive: true });
  mkdirSync(outside);
  return { drop, outside, failed: { root: drop, levels: ['.failed'] } };
}

describe('watch --retry-failed (returnFailedFiles)', () => {
  it('puts files back with their sidecars, removes their notes and emptied folders', async () => {
    const { drop, failed } = setup();
    mkdirSync(path.join(drop, '.failed', 'p'));
    writeFileSync(path.join(drop, '.failed', 'p', 'a.pdf'), 'a');
    writeFileSync(path.join(drop, '.failed', 'p', 'a.pdf.json'), '{"name":"A"}');
    writeFileSync(path.join(drop, '.failed', 'p', 'a.pdf.error.json'), '{}');
    writeFileSync(path.join(drop, '.failed', 'stray.pdf'), 's');
    expect(await returnFailedFiles(failed, drop, silentLogger())).toEqual({ returned: 2, left: 0 });
    expect(readdirSync(path.join(drop, 'p')).sort()).toEqual(['a.pdf', 'a.pdf.json']);
    expect(readFileSync(path.join(drop, 'stray.pdf'), 'utf8')).toBe('s');
    expect(readdirSync(path.join(drop, '.failed'))).toEqual([]);
  });

  it('never follows a link planted in the failed folder, nor puts a file back through a link in the drop folder', async () => {
    const { drop, outside, failed } = setup();
    // A link in .failed to a folder of the watch's user: its files must not come into the drop folder (and be uploaded).
    writeFileSync(path.join(outside, 'id_rsa'), 'PRIVATE');
    symlinkSync(outside, path.join(drop, '.failed', 'q'));
    symlinkSync(path.join(outside, 'id_rsa'), path.join(drop, '.failed', 'key.pdf'));
    // A person folder of the drop folder made a link: the file going back there stays in .failed.
    mkdirSync(path.join(drop, '.failed', 'p'));
    writeFileSync(path.join(drop, '.failed', 'p', 'a.pdf'), 'a');
    symlinkSync(outside, path.join(drop, 'p'));
    expect(await returnFailedFiles(failed, drop, silentLogger())).toEqual({ returned: 0, left: 1 });
    expect(readdirSync(outside)).toEqual(['id_rsa']);
    expect(readFileSync(path.join(drop, '.failed', 'p', 'a.pdf'), 'utf8')).toBe('a');
    expect(existsSync(path.join(drop, 'q'))).toBe(false);
    expect(existsSync(path.join(drop, 'key.pdf'))).toBe(false);
    // The failed folder itself a link: refused as a whole.
    const other = setup();
    const linked = path.join(other.drop, '.failed');
    rmdirSync(linked);
    symlinkSync(outside, linked);
    await expect(returnFailedFiles(other.failed, other.drop, silentLogger())).rejects.toThrow(/\.failed in .* is a symbolic link/);
    expect(readdirSync(other.drop)).toEqual(['.failed']);
  });
});
