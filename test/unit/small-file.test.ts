import { createHash, randomBytes } from 'node:crypto';
import { chmodSync, symlinkSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { EmptyFileError, FileError } from '../../src/errors.ts';
import { classify } from '../../src/api/classify.ts';
import { ASYNC_AFTER_SLOW_READ_MS, READ_ONCE_MAX_BYTES, SLOW_READ_MS, SmallFileReader } from '../../src/sources/small-file.ts';
import { tempDir } from '../helpers/fixtures.ts';

const EXT4 = 0xef53;
const NFS = 0x6969;
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

function file(bytes: number): { file: string; body: Buffer } {
  const body = randomBytes(bytes);
  const f = path.join(tempDir('idsync-small'), 'f.bin');
  writeFileSync(f, body);
  return { file: f, body };
}

describe('SmallFileReader', () => {
  it('refuses a file emptied since validation, on both read paths (issue #15, item 6): permanent, never uploaded empty', async () => {
    for (const fsType of [() => EXT4, () => NFS]) {
      const { file: f } = file(0);
      const err = await new SmallFileReader({ fsType }).read(f).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(EmptyFileError);
      expect((err as EmptyFileError).code).toBe('E_FILE_EMPTY');
      expect(classify(err)).toEqual({ kind: 'permanent', ambiguous: false });
    }
  });

  it('reads a small file on a local filesystem synchronously, with its content and hash', async () => {
    const { file: f, body } = file(64 * 1024);
    const r = new SmallFileReader({ fsType: () => EXT4 });
    const got = await r.read(f);
    expect(got).toEqual({ sha256: sha(body), bytes: body.length, data: body });
    expect([r.syncReads, r.asyncReads]).toEqual([1, 0]);
  });

  it('keeps the thread pool on network or unknown filesystems', async () => {
    const { file: f, body } = file(1000);
    for (const fsType of [() => NFS, () => undefined]) {
      const r = new SmallFileReader({ fsType });
      expect((await r.read(f)).sha256).toBe(sha(body));
      expect([r.syncReads, r.asyncReads]).toEqual([0, 1]);
    }
  });

  it('reads a symlink through the thread pool even in a local folder (it may lead to a share)', async () => {
    const { file: target, body } = file(100);
    const link = path.join(tempDir('idsync-small'), 'link.bin');
    symlinkSync(target, link);
    const r = new SmallFileReader({ fsType: () => EXT4 });
    expect((await r.read(link)).sha256).toBe(sha(body));
    expect([r.syncReads, r.asyncReads]).toEqual([0, 1]);
  });

  it('asks the filesystem type once per folder', async () => {
    const { file: f } = file(10);
    let asked = 0;
    const r = new SmallFileReader({ fsType: () => (asked++, EXT4) });
    await r.read(f);
    await r.read(f);
    expect(asked).toBe(1);
  });

  it('after a slow synchronous read, reads through the thread pool for a while, then tries again', async () => {
    const { file: f } = file(10);
    let now = 0;
    const r = new SmallFileReader({ fsType: () => EXT4, now: () => now });
    // The clock moves by more than SLOW_READ_MS while the read runs: the next reads go async.
    let tick = 0;
    const slow = new SmallFileReader({ fsType: () => EXT4, now: () => (tick += SLOW_READ_MS + 1) });
    await slow.read(f);
    await slow.read(f);
    expect([slow.syncReads, slow.asyncReads]).toEqual([1, 1]);

    await r.read(f);
    expect(r.syncReads).toBe(1);
    now = ASYNC_AFTER_SLOW_READ_MS * 2;
    await r.read(f);
    expect(r.syncReads).toBe(2);
  });

  it('hashes a file over the limit by streaming, without keeping its content', async () => {
    const { file: f, body } = file(READ_ONCE_MAX_BYTES + 1);
    for (const fsType of [() => EXT4, () => NFS]) {
      const got = await new SmallFileReader({ fsType }).read(f);
      expect(got).toEqual({ sha256: sha(body), bytes: body.length });
    }
  });

  it('turns a missing or unreadable file into a FileError naming it, either way', async () => {
    const missing = path.join(tempDir('idsync-small'), 'gone.bin');
    for (const fsType of [() => EXT4, () => NFS]) {
      const err = await new SmallFileReader({ fsType }).read(missing).catch((e: unknown) => e);
      expect(err).toBeInstanceOf(FileError);
      expect((err as Error).message).toBe(`cannot read ${missing}: ENOENT`);
    }
    if (process.getuid?.() !== 0) {
      const { file: f } = file(10);
      chmodSync(f, 0o000);
      await expect(new SmallFileReader({ fsType: () => EXT4 }).read(f)).rejects.toThrow(/EACCES/);
    }
  });

  it('finds the real filesystem type on Linux by default', async () => {
    const { file: f } = file(10);
    const r = new SmallFileReader();
    await r.read(f);
    expect(r.syncReads + r.asyncReads).toBe(1);
  });
});
