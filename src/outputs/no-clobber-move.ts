import { constants, existsSync } from 'node:fs';
import { copyFile, link, mkdir, rm, unlink, writeFile } from 'node:fs/promises';
import path from 'node:path';

/** `scan.pdf`, 2 → `scan (2).pdf`; n = 0 is the name itself. */
export function numberedName(fileName: string, n: number): string {
  if (n === 0) return fileName;
  const ext = path.extname(fileName);
  const stem = ext && ext !== fileName ? fileName.slice(0, -ext.length) : fileName;
  return `${stem} (${n})${stem === fileName ? '' : ext}`;
}

/**
 * The first of `scan.pdf`, `scan (1).pdf`, … for which none of the companion names
 * (`<name>`, `<name>.json`, `<name>.error.json`) is taken, so a file, its sidecar and its
 * error note always keep matching names.
 */
export function freeName(fileName: string, taken: (name: string) => boolean, companions: readonly string[] = ['', '.json', '.error.json']): string {
  for (let n = 0; n < 100_000; n++) {
    const candidate = numberedName(fileName, n);
    if (!companions.some((suffix) => taken(candidate + suffix))) return candidate;
  }
  throw new Error(`no free name for ${fileName}`);
}

/**
 * Moves `src` to `dest` only if nothing is there: link() fails with EEXIST instead of
 * replacing (rename() would silently overwrite). Across file systems (EXDEV) it copies with
 * COPYFILE_EXCL, then removes the source. Throws EEXIST when `dest` is taken.
 */
export async function moveExclusive(src: string, dest: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  try {
    await link(src, dest);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // EXDEV: another device; EPERM/ENOTSUP: a file system without hard links (some SMB/FAT).
    if (code !== 'EXDEV' && code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS') throw err;
    await copyFile(src, dest, constants.COPYFILE_EXCL);
  }
  await unlink(src);
}

/** Writes a new file; never replaces one. */
export async function writeExclusive(dest: string, text: string): Promise<void> {
  await mkdir(path.dirname(dest), { recursive: true });
  await writeFile(dest, text, { flag: 'wx' });
}

/**
 * Moves a file (and its sidecar, when there is one) into `destDir` under a free name, and
 * writes `<name>.error.json` beside it when a note is given. When another process takes the
 * chosen name meanwhile, the exclusive move fails and the next free name is tried.
 * Returns the new path of the file.
 */
export async function moveIntoFolder(file: string, destDir: string, options: { sidecar?: string; note?: string } = {}): Promise<string> {
  await mkdir(destDir, { recursive: true });
  const base = path.basename(file);
  for (let tries = 0; tries < 20; tries++) {
    const dest = path.join(destDir, freeName(base, (name) => existsSync(path.join(destDir, name))));
    try {
      await moveExclusive(file, dest);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') continue;
      throw err;
    }
    if (options.sidecar) {
      try {
        await moveExclusive(options.sidecar, `${dest}.json`);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      }
    }
    if (options.note !== undefined) await writeExclusive(`${dest}.error.json`, options.note);
    return dest;
  }
  throw new Error(`cannot find a free name for ${base} in ${destDir}`);
}

export async function removeFileAndSidecar(file: string, sidecar?: string): Promise<void> {
  await rm(file, { force: true });
  if (sidecar) await rm(sidecar, { force: true });
}
