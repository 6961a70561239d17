import { existsSync, mkdirSync, realpathSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { isTempName, partFileName, removeStaleParts, STALE_PART_MS } from '../../src/outputs/part-files.ts';
import { tempDir } from '../helpers/fixtures.ts';

const NOW = 1_800_000_000_000;

function file(p: string, ageMs: number): string {
  mkdirSync(path.dirname(p), { recursive: true });
  writeFileSync(p, 'x');
  const t = (NOW - ageMs) / 1000;
  utimesSync(p, t, t);
  return p;
}

describe('removeStaleParts (issue #15: .part files left by kill -9)', () => {
  it('removes old idsync temp files at any depth, keeps fresh ones, other names, and everything behind links', async () => {
    const base = realpathSync(tempDir());
    const out = path.join(base, 'out');
    const outside = path.join(base, 'outside');
    const old = STALE_PART_MS + 60_000;
    const gone = [
      file(path.join(out, 'enrollment', '.f1.jpg.0123456789ab.part'), old),
      file(path.join(out, 'documents', 'p', '.d1.bin.a1b2c3d4e5f6.part'), old),
      file(path.join(out, 'enrollment', '.f2.incoming-00aa11bb22cc.jpg'), old),
      file(path.join(out, 'index.csv.ffeeddccbbaa.part'), old),
    ];
    const kept = [
      file(path.join(out, 'enrollment', '.f3.jpg.0123456789ab.part'), 60_000), // a worker's live download
      file(path.join(out, 'enrollment', 'f1.jpg'), old),
      file(path.join(out, 'notes.part'), old),
      file(path.join(out, '.cache.part'), old),
      file(path.join(out, '.x.jpg.0123456789ab.part.bak'), old),
      file(path.join(outside, '.f9.jpg.0123456789ab.part'), old),
    ];
    symlinkSync(outside, path.join(out, 'linked'));
    symlinkSync(path.join(outside, '.f9.jpg.0123456789ab.part'), path.join(out, '.link.jpg.0123456789ab.part'));

    const r = await removeStaleParts(out, STALE_PART_MS, { now: NOW });
    expect(r.removed.sort()).toEqual(gone.sort());
    expect(r.complete).toBe(true);
    for (const f of gone) expect(existsSync(f)).toBe(false);
    for (const f of kept) expect(existsSync(f)).toBe(true);
    expect(existsSync(path.join(out, '.link.jpg.0123456789ab.part'))).toBe(true);
  });

  it('is bounded: stops after maxEntries and maxDepth and says so', async () => {
    const out = realpathSync(tempDir());
    for (let i = 0; i < 20; i++) file(path.join(out, `f${i}.jpg`), 0);
    file(path.join(out, 'a', 'b', 'c', '.deep.jpg.0123456789ab.part'), STALE_PART_MS * 2);
    const few = await removeStaleParts(out, STALE_PART_MS, { now: NOW, maxEntries: 5 });
    expect(few).toMatchObject({ scanned: 5, complete: false });
    const shallow = await removeStaleParts(out, STALE_PART_MS, { now: NOW, maxDepth: 2 });
    expect(shallow).toMatchObject({ removed: [], complete: false });
    const all = await removeStaleParts(out, STALE_PART_MS, { now: NOW });
    expect(all.removed).toEqual([path.join(out, 'a', 'b', 'c', '.deep.jpg.0123456789ab.part')]);
  });

  it('a missing --out is nothing to clean', async () => {
    expect(await removeStaleParts(path.join(tempDir(), 'nope'), STALE_PART_MS)).toEqual({ removed: [], scanned: 0, complete: true });
  });

  it('knows the names the client gives its temp files, and no others', () => {
    expect(isTempName(partFileName('x.jpg'))).toBe(true);
    expect(isTempName(partFileName('Ausweis (1).pdf'))).toBe(true);
    expect(isTempName('x.jpg.0123456789ab.part')).toBe(false);
    expect(isTempName('.x.jpg.0123456789AB.part')).toBe(false);
  });
});
