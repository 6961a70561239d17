import path from 'node:path';
import { describe, expect, inject, it } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { runDemo } from '../../src/commands/demo.ts';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

describe('idsync demo (the README quick start)', () => {
  it('imports the samples, exports them back byte-identical, and a rerun sends nothing; twice in a row', async () => {
    const dir = tempDir();
    for (const round of [1, 2]) {
      const lines: string[] = [];
      const code = await runDemo({
        root: REPO_ROOT,
        stateDir: path.join(dir, 'state'),
        redisUrl: inject('redisUrl'),
        log: silentLogger(),
        signal: new AbortController().signal,
        out: (l) => lines.push(l),
        reportsDir: path.join(dir, 'reports'),
        exportDir: path.join(dir, 'export'),
      });
      expect(code, lines.join('\n')).toBe(0);
      expect(lines.join('\n')).toContain('36/36 documents came back byte-identical');
      // A second demo starts a fresh sandbox: nothing there reads as uploaded twice.
      expect(lines.join('\n'), `round ${round}`).toContain('the sandbox holds 36 documents from 36 uploads');
    }
  }, 60_000);
});
