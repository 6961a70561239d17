/**
 * docs/reliability.md names, for every attack and fault, the test that proves its outcome: each
 * named test file must exist and hold a test of that name, or the page would claim coverage that
 * is gone.
 */
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../helpers/fixtures.ts';

const doc = readFileSync(path.join(REPO_ROOT, 'docs/reliability.md'), 'utf8');

/** `test/…test.ts`: "name"; "name"… as the page writes them. */
function references(text: string): Array<{ file: string; name: string }> {
  const refs: Array<{ file: string; name: string }> = [];
  for (const m of text.matchAll(/`(test\/[\w/.-]+\.test\.ts)`((?:[:;]\s*"[^"]+")+)/g)) {
    for (const n of m[2]!.matchAll(/"([^"]+)"/g)) refs.push({ file: m[1]!, name: n[1]! });
  }
  return refs;
}

/**
 * Whether a test file could name a test `name`: a string literal holding it (compared without its
 * escapes, \' in 'person\'s'), or a template literal (`mid-run: ${how}`) that makes it.
 */
function names(source: string): (name: string) => boolean {
  const plain = source.replace(/\\(.)/g, '$1');
  const templates = [...source.matchAll(/`([^`]*\$\{[^`]*)`/g)].map(
    (m) => new RegExp(`^${m[1]!.split(/\$\{[^}]*\}/).map((part) => part.replace(/[.*+?^$()|[\]\\{}]/g, '\\$&')).join('.+')}$`),
  );
  return (name) => plain.includes(name) || templates.some((t) => t.test(name));
}

describe('docs/reliability.md', () => {
  const refs = references(doc);

  it('names tests (at least one per row of its attacks and faults table)', () => {
    const rows = doc.split('\n').filter((l) => l.startsWith('| ') && !l.startsWith('| attack') && !l.startsWith('| scenario') && l.includes('`test/'));
    expect(rows.length).toBeGreaterThan(15);
    expect(refs.length).toBeGreaterThanOrEqual(rows.length);
  });

  it('every test it names exists under that name', () => {
    const missing = refs.filter(({ file, name }) => {
      const source = path.join(REPO_ROOT, file);
      return !existsSync(source) || !names(readFileSync(source, 'utf8'))(name);
    });
    expect(missing).toEqual([]);
  });

  it('knows a test named by a template, and misses one that is not there', () => {
    const has = names("it('plain one', …); it(`failover: ${how}`, …); it('person\\'s window', …)");
    expect(has('plain one')).toBe(true);
    expect(has('failover: SIGKILL')).toBe(true);
    expect(has("person's window")).toBe(true);
    expect(has('plain two')).toBe(false);
  });

  it('reads every name of a row', () => {
    expect(references('`test/unit/a.test.ts`: "one"; "two"')).toEqual([
      { file: 'test/unit/a.test.ts', name: 'one' },
      { file: 'test/unit/a.test.ts', name: 'two' },
    ]);
  });
});
