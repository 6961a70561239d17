import { afterEach, describe, expect, it } from 'vitest';
import { readableStack } from '../../src/readable-stack.ts';

const KEY = Symbol.for('idsync.sourceMappedStack');
const globals = globalThis as Record<symbol, unknown>;

describe('readableStack', () => {
  afterEach(() => {
    delete globals[KEY];
  });

  it('returns the stack as it is when no bundle registered a mapper (tsx maps its own)', () => {
    expect(readableStack('Error: x\n    at f (/a/main.cjs:1:2)')).toBe('Error: x\n    at f (/a/main.cjs:1:2)');
  });

  it('maps through the mapper bin/idsync.js registers, and only when asked', () => {
    const calls: string[] = [];
    globals[KEY] = (s: string) => {
      calls.push(s);
      return s.replace('/a/main.cjs:1:2', '/src/x.ts:10:3');
    };
    const err = new Error('x');
    void err.stack;
    expect(calls).toEqual([]);
    expect(readableStack('Error: x\n    at f (/a/main.cjs:1:2)')).toBe('Error: x\n    at f (/src/x.ts:10:3)');
    expect(calls).toHaveLength(1);
  });

  it('a mapper that fails leaves the stack unmapped rather than losing it', () => {
    globals[KEY] = () => {
      throw new Error('map unreadable');
    };
    expect(readableStack('Error: y')).toBe('Error: y');
  });
});
