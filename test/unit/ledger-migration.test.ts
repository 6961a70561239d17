import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../src/errors.ts';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { LedgerIo } from '../../src/store/ledger/ledger-io.ts';
import { migrateV1 } from '../../src/store/ledger/migration.ts';
import { tempDir } from '../helpers/fixtures.ts';

const API = 'https://acme.example/identities';
const API_KEY = createHash('sha256').update(API).digest('hex').slice(0, 16);

function sha(i: number): string {
  return createHash('sha256').update(`content ${i}`).digest('hex');
}

/** A format-1 ledger file, as idsync wrote them before: one JSON line per step. */
function v1Line(line: Record<string, unknown>): string {
  return `${JSON.stringify({ ...line, at: 1, w: 'oldwrite' })}\n`;
}

/**
 * 5 patterns of history, one per document i (by i % 5), each step of a document written in a
 * separate pass over all documents, so a document's steps lie far apart in the file.
 */
function history(documents: number): { text: string; expected: (i: number) => { state: string; sha256?: string; attempt?: string } | undefined } {
  const passes: string[][] = [[], [], []];
  for (let i = 0; i < documents; i++) {
    const doc = { personId: 'p', publicId: `d${i}` };
    passes[0]!.push(v1Line({ op: 'start', ...doc, sha256: sha(i), attempt: `a${i}` }));
    if (i % 5 === 0) passes[1]!.push(v1Line({ op: 'stored', ...doc, sha256: sha(i), bytes: 5 }));
    if (i % 5 === 2) passes[1]!.push(v1Line({ op: 'abort', ...doc, attempt: `a${i}` }));
    if (i % 5 === 3) passes[2]!.push(v1Line({ op: 'abort', ...doc, attempt: 'another attempt' }));
    if (i % 5 === 4) passes[2]!.push(v1Line({ op: 'stored', ...doc }));
  }
  const text = v1Line({ op: 'header', apiUrl: API }) + passes.map((p) => p.join('')).join('');
  const expected = (i: number) => {
    switch (i % 5) {
      case 0:
      case 4:
        return { state: 'stored', sha256: sha(i) };
      case 2:
        return undefined;
      default:
        return { state: 'started', sha256: sha(i), attempt: `a${i}` };
    }
  };
  return { text, expected };
}

async function expectHistory(ledger: Ledger, documents: number, expected: ReturnType<typeof history>['expected']): Promise<void> {
  for (let i = 0; i < documents; i++) {
    const want = expected(i);
    const got = await ledger.lookup('p', `d${i}`);
    if (want === undefined) expect(got, `d${i}`).toBeUndefined();
    else expect(got, `d${i}`).toMatchObject(want);
  }
}

describe('Ledger migration from the one-file format', () => {
  it('converts a format-1 file at open, keeps it as .migrated, and answers as the old file did', async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'ledger'));
    const v1 = path.join(dir, 'ledger', `${API_KEY}.jsonl`);
    const { text, expected } = history(500);
    // A damaged line in the middle and a torn last line, as a crash leaves them.
    const lines = text.split('\n').filter(Boolean);
    lines.splice(200, 0, '{"op":"stored","personId":"p","publi');
    writeFileSync(v1, `${lines.join('\n')}\n{"op":"stored","personId":"p","publicId":"d1"`);
    const before = readFileSync(v1);
    let damaged = 0;
    const ledger = await Ledger.open(dir, API, { log: { info: () => undefined, warn: () => damaged++ } as never });
    expect(existsSync(v1)).toBe(false);
    expect(readFileSync(`${v1}.migrated`)).toEqual(before);
    await expectHistory(ledger, 500, expected);
    expect(damaged).toBe(1); // one warning for the damaged line (the torn last one is never read)
    expect(await ledger.lookup('p', 'd1')).toMatchObject({ state: 'started' }); // the torn stored never counted
    const stats = await ledger.stats();
    expect(stats.segments).toBe(1);
    expect(stats.documents).toBe(400);
    expect(stats.recentDocuments).toBe(0);
    // It goes on as any ledger.
    await ledger.stored('p', 'd1', sha(1));
    await ledger.close();
    const again = await Ledger.open(dir, API);
    expect(await again.state('p', 'd1')).toBe('stored');
    expect(await again.state('p', 'd2')).toBeUndefined();
    await again.close();
  });

  it('streams a long file a chunk of documents at a time; steps of one document in different chunks fold in order', async () => {
    const dir = tempDir();
    const ledgerRoot = path.join(dir, 'ledger');
    const target = path.join(ledgerRoot, API_KEY);
    mkdirSync(target, { recursive: true });
    const v1 = path.join(ledgerRoot, `${API_KEY}.jsonl`);
    const { text, expected } = history(5_000);
    writeFileSync(v1, text);
    const manifest = await migrateV1({ v1File: v1, dir: target, apiUrl: API, io: new LedgerIo(true), now: () => 1, chunkDocuments: 700 });
    // 8,000 steps in chunks of at most 700 documents: more folds than segments left after merging.
    expect(manifest.nextSegment).toBeGreaterThan(10);
    expect(manifest.documents).toBe(4_000);
    expect(readdirSync(target).filter((f) => f.endsWith('.seg'))).toHaveLength(manifest.segments.length);
    const ledger = await Ledger.open(dir, API);
    await expectHistory(ledger, 5_000, expected);
    expect((await ledger.stats()).documents).toBe(4_000);
    await ledger.close();
  });

  it('starts again from the renamed file when a conversion was killed half-way', async () => {
    const dir = tempDir();
    const target = path.join(dir, 'ledger', API_KEY);
    mkdirSync(target, { recursive: true });
    const v1 = path.join(dir, 'ledger', `${API_KEY}.jsonl`);
    const { text, expected } = history(300);
    // Killed after the rename, with a segment named and another half-written, and no manifest.
    writeFileSync(`${v1}.migrating`, text);
    writeFileSync(path.join(target, 'seg-00000001.seg'), 'garbage');
    writeFileSync(path.join(target, 'seg-00000002.seg.tmp'), 'garbage');
    const ledger = await Ledger.open(dir, API);
    await expectHistory(ledger, 300, expected);
    expect(existsSync(`${v1}.migrating`)).toBe(false);
    expect(existsSync(`${v1}.migrated`)).toBe(true);
    expect(readdirSync(target).filter((f) => f.endsWith('.tmp'))).toEqual([]);
    await ledger.close();
    // Killed after the manifest was in place but before the last rename: open finishes it.
    renameSync(`${v1}.migrated`, `${v1}.migrating`);
    const again = await Ledger.open(dir, API);
    expect(existsSync(`${v1}.migrated`)).toBe(true);
    await expectHistory(again, 300, expected);
    await again.close();
  });

  it('converts once when two processes open the old file at the same time', async () => {
    const dir = tempDir();
    mkdirSync(path.join(dir, 'ledger'));
    const v1 = path.join(dir, 'ledger', `${API_KEY}.jsonl`);
    const { text, expected } = history(2_000);
    writeFileSync(v1, text);
    const [a, b] = await Promise.all([Ledger.open(dir, API), Ledger.open(dir, API)]);
    await expectHistory(a, 2_000, expected);
    await expectHistory(b, 2_000, expected);
    expect((await a.stats()).documents).toBe(1_600);
    await Promise.all([a.close(), b.close()]);
  });
});

describe('Ledger state dir errors', () => {
  it('a state dir that cannot be created is a ConfigError naming the path, the cause and --state-dir', async () => {
    const dir = tempDir();
    const blocker = path.join(dir, 'not-a-folder');
    writeFileSync(blocker, 'x');
    const stateDir = path.join(blocker, 'state');
    const err = await Ledger.open(stateDir, API).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).code).toBe('E_CONFIG');
    expect((err as ConfigError).setting).toBe('--state-dir');
    expect((err as Error).message).toContain(stateDir);
    expect((err as Error).message).toContain('ENOTDIR');
    expect((err as Error).message).toContain('--state-dir');
  });

  it('a full disk while the ledger is created is a ConfigError too', async () => {
    const dir = tempDir();
    const full = Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' });
    const err = await Ledger.open(dir, API, { writeFault: () => ({ written: 0, error: full }) }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/ENOSPC.*--state-dir/);
  });
});
