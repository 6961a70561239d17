import { existsSync } from 'node:fs';
import path from 'node:path';

/**
 * The checkout's root (the folder holding idsync's package.json), found by walking up from this
 * module: the same answer whether the sources run through tsx or from bin/idsync.js's bundle.
 */
export function packageRoot(): string {
  let dir = import.meta.dirname;
  for (;;) {
    if (existsSync(path.join(dir, 'package.json')) && existsSync(path.join(dir, 'bin', 'idsync.js'))) return dir;
    const up = path.dirname(dir);
    if (up === dir) throw new Error(`cannot find idsync's package.json above ${import.meta.dirname}`);
    dir = up;
  }
}
