import { execFile } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT, tempDir } from '../helpers/fixtures.ts';

const run = promisify(execFile);
const DEPCRUISE = path.join(REPO_ROOT, 'node_modules', '.bin', 'depcruise');
const CONFIG = path.join(REPO_ROOT, '.dependency-cruiser.cjs');

/** Runs the layer check (what `npm run lint` runs) over a tree of tiny modules. */
async function check(files: Record<string, string>): Promise<{ code: number; output: string }> {
  const dir = tempDir('layers');
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, file)), { recursive: true });
    writeFileSync(path.join(dir, file), text);
  }
  try {
    const { stdout } = await run(DEPCRUISE, ['--config', CONFIG, 'src', 'jobs'], { cwd: dir });
    return { code: 0, output: stdout };
  } catch (err) {
    const e = err as { code: number; stdout: string };
    return { code: e.code, output: e.stdout };
  }
}

describe('the layer rules of `npm run lint`', () => {
  it('bite on an upward import (the store reaching into the engine, the bottom into jobs)', async () => {
    const r = await check({
      'src/engine/session.ts': 'export const x = 1;\n',
      'src/store/run-store.ts': "import { x } from '../engine/session.ts';\nexport const y = x;\n",
      'src/errors.ts': "import { z } from '../jobs/upload.ts';\nexport const e = z;\n",
      'jobs/upload.ts': 'export const z = 1;\n',
    });
    expect(r.code).not.toBe(0);
    expect(r.output).toContain('middle-imports-engine');
    expect(r.output).toContain('src/store/run-store.ts → src/engine/session.ts');
    expect(r.output).toContain('bottom-imports-up');
  }, 30_000);

  it('pass on downward imports, and on the repository itself', async () => {
    const r = await check({
      'src/engine/session.ts': "import { y } from '../store/run-store.ts';\nexport const x = y;\n",
      'src/store/run-store.ts': "import { e } from '../errors.ts';\nexport const y = e;\n",
      'src/errors.ts': 'export const e = 1;\n',
      'jobs/upload.ts': "import { y } from '../src/store/run-store.ts';\nexport const z = y;\n",
    });
    expect(r).toMatchObject({ code: 0 });
    await expect(run(DEPCRUISE, ['--config', CONFIG, 'src', 'jobs'], { cwd: REPO_ROOT })).resolves.toBeTruthy();
  }, 30_000);
});
