import { existsSync, lstatSync, readlinkSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../../errors.ts';
import { placeUnder, type FolderPlace } from '../../folder-handle.ts';

/** What the start refuses a destination for, in words an operator acts on. */
function refuse(flag: string, level: string, what: string): never {
  throw new ConfigError(
    `${level} is ${what}: idsync watch does not move files through links or into non-folders inside the watched folder (whoever drops files there could point it at a folder of this user, ~/.ssh say). Remove it (idsync creates the folder itself) or give ${flag} outside the watched folder.`,
    flag,
  );
}

/** Each level below `dir` that exists now must be a real folder: a link or a file there refuses the start. */
function checkLevels(place: FolderPlace, flag: string): void {
  let current = place.root;
  for (const part of place.levels) {
    current = path.join(current, part);
    const st = lstatSync(current, { throwIfNoEntry: false });
    if (!st) return;
    if (st.isSymbolicLink()) {
      let target = '';
      try {
        target = ` (to ${readlinkSync(current)})`;
      } catch {
        // the link's target only makes the message clearer
      }
      refuse(flag, current, `a symbolic link${target}`);
    }
    if (!st.isDirectory()) refuse(flag, current, 'not a folder');
  }
}

/**
 * The processed or failed folder of a watch, as a place the moves walk without following links.
 *
 * Inside the watched folder (the default `.processed` and `.failed`, or a --processed-dir or
 * --failed-dir there), whoever drops files may create or replace it: its root is then the watched
 * folder itself, so every level is opened without following a link at each move (a link planted
 * later fails that move; the file stays), and a level that is a link or not a folder now refuses
 * the start (ConfigError, exit 2). Outside, it is the operator's own choice: its nearest existing
 * folder, links resolved, is the root; the levels below are created at the first move.
 *
 * `dir` is the watched folder's real path, `dirAsGiven` as the operator wrote it.
 */
export function destinationFolder(dir: string, dirAsGiven: string, given: string | undefined, defaultName: string, flag: string): FolderPlace {
  const wanted = given === undefined ? path.join(dir, defaultName) : path.resolve(given);
  for (const base of [dir, path.resolve(dirAsGiven)]) {
    const inside = placeUnder(base, wanted);
    if (!inside) continue;
    if (inside.levels.length === 0) throw new ConfigError(`${flag} ${wanted} is the watched folder itself; give a folder beside it or inside it`, flag);
    const place = { root: dir, levels: inside.levels };
    checkLevels(place, flag);
    return place;
  }
  let existing = wanted;
  while (!existsSync(existing) && path.dirname(existing) !== existing) existing = path.dirname(existing);
  const root = realpathSync(existing);
  const below = path.relative(existing, wanted).split(path.sep).filter((p) => p !== '');
  // Reached through a link elsewhere that leads into the watched folder: judged like one inside.
  const inside = placeUnder(dir, path.join(root, ...below));
  if (inside) {
    if (inside.levels.length === 0) throw new ConfigError(`${flag} ${wanted} is the watched folder itself; give a folder beside it or inside it`, flag);
    const place = { root: dir, levels: inside.levels };
    checkLevels(place, flag);
    return place;
  }
  return { root, levels: below };
}
