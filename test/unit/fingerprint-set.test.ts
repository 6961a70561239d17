import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { FingerprintSet } from '../../src/sandbox/fingerprint-set.ts';

const fp = (i: number) => createHash('sha256').update(`doc-${i}`).digest();

describe('FingerprintSet', () => {
  it('adds each fingerprint once, through many doublings of its table', () => {
    const set = new FingerprintSet(16);
    for (let i = 0; i < 50_000; i++) expect(set.add(fp(i))).toBe(true);
    expect(set.size).toBe(50_000);
    for (let i = 0; i < 50_000; i += 7) expect(set.add(fp(i))).toBe(false);
    expect(set.add(fp(50_000))).toBe(true);
    expect(set.size).toBe(50_001);
  });

  it('reads the first 8 bytes of a view into a larger buffer, whatever its offset', () => {
    const set = new FingerprintSet();
    const big = Buffer.alloc(64);
    big.write('0102030405060708', 3, 'hex');
    expect(set.add(big.subarray(3, 11))).toBe(true);
    expect(set.add(Buffer.from('0102030405060708ffff', 'hex'))).toBe(false);
    expect(set.add(Buffer.from('0102030405060709', 'hex'))).toBe(true);
  });

  it('keeps eight zero bytes apart from an empty slot', () => {
    const set = new FingerprintSet();
    expect(set.add(Buffer.alloc(8))).toBe(true);
    expect(set.add(Buffer.alloc(8))).toBe(false);
    expect(set.size).toBe(1);
  });
});
