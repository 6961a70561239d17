import { randomBytes } from 'node:crypto';
import { readFile, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { syncDir } from './ledger-io.ts';

/** Redis deployments remembered per API; a state dir moved between more than this forgets the oldest. */
const KEPT = 16;
const FILE = 'redis-epochs.json';

/**
 * The Redis states (their epochs, ApiStore.epoch) this state dir has worked with for one API,
 * newest last. When Redis answers with an epoch not among them although some are, the Redis state
 * this state dir relied on is gone (Redis emptied or replaced, another --redis-prefix): what Redis
 * says was never stored may have been stored from elsewhere. A file beside the ledger's journals,
 * replaced whole; two processes writing at once can drop an entry, which only makes a later run
 * check the server once more.
 */
export async function epochsSeen(dir: string): Promise<string[]> {
  try {
    const data = JSON.parse(await readFile(path.join(dir, FILE), 'utf8')) as { epochs?: unknown };
    return Array.isArray(data.epochs) ? data.epochs.filter((e): e is string => typeof e === 'string') : [];
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return [];
    // Unreadable: treated as "some Redis was seen", so the run checks the server rather than trusts.
    return ['unreadable'];
  }
}

export async function noteEpoch(dir: string, epoch: string): Promise<void> {
  const seen = (await epochsSeen(dir)).filter((e) => e !== epoch && e !== 'unreadable');
  const epochs = [...seen, epoch].slice(-KEPT);
  const tmp = path.join(dir, `${FILE}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    await writeFile(tmp, `${JSON.stringify({ epochs })}\n`, { mode: 0o600, flush: true });
    await rename(tmp, path.join(dir, FILE));
    await syncDir(dir);
  } finally {
    await rm(tmp, { force: true });
  }
}
