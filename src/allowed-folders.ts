import { realpathSync, statSync } from 'node:fs';
import { realpath } from 'node:fs/promises';
import path from 'node:path';
import { ConfigError, NotAllowedError } from './errors.ts';

/** The operator's settings that confine a process's files (README, "Confining workers"). */
export type AllowSetting = '--allow-read' | '--allow-write';

/**
 * Whether `real` is `root` or lies below it by whole path segments: /data admits /data/a and
 * never /data2. Both must be real paths (links and `..` resolved): this compares strings only.
 */
export function isWithin(root: string, real: string): boolean {
  if (real === root) return true;
  const base = root.endsWith(path.sep) ? root : root + path.sep;
  return real.startsWith(base);
}

/**
 * The folders a process may read from (--allow-read) or write into (--allow-write), as real
 * paths. Jobs are signed, but whoever can sign them (anyone with the API password) could still
 * name any file or folder; these settings are the operator's own bound, held by each worker
 * whatever a job says. Every check goes by real paths, so neither a link nor `..` leads out.
 */
export class AllowedFolders {
  readonly setting: AllowSetting;
  readonly roots: readonly string[];

  constructor(setting: AllowSetting, roots: readonly string[]) {
    if (roots.length === 0) throw new Error(`${setting} needs at least one folder`);
    this.setting = setting;
    this.roots = roots;
  }

  /**
   * The settings' folders, resolved against `base`: each must exist and be a folder (else a
   * ConfigError naming the setting, exit 2), and is kept as its real path.
   */
  static resolve(setting: AllowSetting, paths: readonly string[], base: string, origin: string = setting): AllowedFolders {
    const roots = paths.map((p) => {
      const abs = path.resolve(base, p);
      let real: string;
      try {
        real = realpathSync(abs);
      } catch (err) {
        throw new ConfigError(`${origin}: ${abs} cannot be used (${(err as NodeJS.ErrnoException).code ?? String(err)}); give existing folders`, setting);
      }
      if (!statSync(real).isDirectory()) throw new ConfigError(`${origin}: ${abs} is not a folder`, setting);
      return real;
    });
    return new AllowedFolders(setting, [...new Set(roots)]);
  }

  /** Whether a real path lies in one of the folders. */
  admits(real: string): boolean {
    return this.roots.some((root) => isWithin(root, real));
  }

  /** What the report says of a path kept out: the path, the real one where it differs, the setting. */
  refusal(shown: string, real: string, what = ''): NotAllowedError {
    const really = real === shown ? '' : ` (really ${real})`;
    return new NotAllowedError(`${what}${shown}${really} lies outside ${this.setting} (${this.roots.join(', ')}); nothing read or written`, real, this.setting);
  }

  /** Throws NotAllowedError unless the real path lies in one of the folders. */
  check(shown: string, real: string, what = ''): void {
    if (!this.admits(real)) throw this.refusal(shown, real, what);
  }

  /**
   * At a command's start: `what shown` (whose real path is `real`) must lie inside, else a
   * ConfigError (exit 2) naming `flag`, before anything is made or sent; `fix` says what to do.
   */
  requireAtStart(what: string, shown: string, real: string, fix: string, flag: string): void {
    if (this.admits(real)) return;
    const really = real === path.resolve(shown) ? '' : ` (really ${real})`;
    throw new ConfigError(`${what} ${shown}${really} lies outside ${this.setting} (${this.roots.join(', ')}): ${fix}`, flag);
  }

  /** check() by the path's real path, or the one it will have once created (realPathToBe). */
  async checkPath(shown: string, what = ''): Promise<void> {
    this.check(shown, await AllowedFolders.realPathToBe(shown), what);
  }

  /**
   * A path that may not exist yet (an --out to be created): the real path of its deepest existing
   * folder with the missing levels after it, which is where creating it would put it.
   */
  static async realPathToBe(p: string): Promise<string> {
    const missing: string[] = [];
    let current = path.resolve(p);
    for (;;) {
      try {
        return path.join(await realpath(current), ...missing.reverse());
      } catch (err) {
        const parent = path.dirname(current);
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === current) throw err;
        missing.push(path.basename(current));
        current = parent;
      }
    }
  }
}

/** --out (made or not yet) must lie inside --allow-write, by its real path; ConfigError (exit 2) naming both otherwise. */
export async function requireOutInside(outDir: string, allowed: AllowedFolders): Promise<void> {
  let real: string;
  try {
    real = await AllowedFolders.realPathToBe(outDir);
  } catch (err) {
    throw new ConfigError(`--out ${outDir} cannot be checked: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, '--out');
  }
  allowed.requireAtStart('--out', outDir, real, 'give an --out inside it, or allow it', '--out');
}
