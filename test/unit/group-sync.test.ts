import { describe, expect, it } from 'vitest';
import { GroupSync } from '../../src/outputs/group-sync.ts';

/** A sync whose rounds the test finishes by hand; records which calls each round served. */
function manualSync() {
  const rounds: Array<{ finish: (err?: Error) => void }> = [];
  const sync = new GroupSync(
    () =>
      new Promise<void>((resolve, reject) => {
        rounds.push({ finish: (err) => (err ? reject(err) : resolve()) });
      }),
  );
  return { sync, rounds };
}

const settled = async (p: Promise<void>) => {
  let done = false;
  void p.then(
    () => (done = true),
    () => (done = true),
  );
  await new Promise((r) => setImmediate(r));
  return done;
};

describe('GroupSync', () => {
  it('starts at once when idle; calls made while one runs share the next round, which starts when it ends', async () => {
    const { sync, rounds } = manualSync();
    const first = sync.sync();
    expect(rounds).toHaveLength(1);
    // Asked during round 1: what they wrote may have come after round 1 began, so round 1 does not serve them.
    const second = sync.sync();
    const third = sync.sync();
    expect(second).toBe(third);
    expect(rounds).toHaveLength(1);
    rounds[0]!.finish();
    await first;
    expect(await settled(second)).toBe(false);
    expect(rounds).toHaveLength(2);
    rounds[1]!.finish();
    await Promise.all([second, third]);
    // Idle again: the next call starts a round of its own.
    const fourth = sync.sync();
    expect(rounds).toHaveLength(3);
    rounds[2]!.finish();
    await fourth;
  });

  it('a failed round fails its own callers only; the next round runs', async () => {
    const { sync, rounds } = manualSync();
    const first = sync.sync();
    const second = sync.sync();
    rounds[0]!.finish(new Error('EIO'));
    await expect(first).rejects.toThrow('EIO');
    await new Promise((r) => setImmediate(r));
    expect(rounds).toHaveLength(2);
    rounds[1]!.finish();
    await expect(second).resolves.toBeUndefined();
  });
});
