/**
 * A claim's doubt mark must be on the Redis replicas before anything is sent (ReplicaWait): a
 * failover that loses it lets another worker send the document again. Against a real master and
 * replica: a replica that does not confirm (stopped with SIGSTOP: a failover's deposed master
 * sees the same) refuses claims and sends nothing; a replica gone for good is no longer waited
 * for once the grace is over; one that comes back is waited for again.
 */
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { silentLogger } from '../../src/log.ts';
import { ApiStore } from '../../src/store/api-store.ts';
import { uploadOnce } from '../../src/store/document-commit.ts';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { countReplicas, REPLICA_GRACE_MS, REPLICA_RECOUNT_MS } from '../../src/store/redis/replica-wait.ts';
import { AwaitingReplica } from '../../src/store/row-signals.ts';
import { StoredDocuments } from '../../src/store/stored-documents.ts';
import { tempDir } from '../helpers/fixtures.ts';
import { freshKeyPrefix } from '../helpers/job-runs.ts';
import { startTestRedis, type TestRedis } from '../helpers/redis-server.ts';

const P = '3f2504e0-4f89-11d3-9a0c-0305e82c3301';
const SHA = 'a'.repeat(64);
const doc = (publicId: string) => ({ personId: P, publicId, sha256: SHA });

const stops: Array<() => Promise<void>> = [];
afterAll(async () => {
  for (const stop of stops.splice(0)) await stop().catch(() => undefined);
});

async function replicaOf(master: TestRedis, dir: string): Promise<TestRedis> {
  const replica = await startTestRedis(dir, { password: master.password, conf: [`replicaof 127.0.0.1 ${master.port}`] });
  stops.push(() => replica.stop('SIGKILL'));
  const probe = new Redis(master.url);
  try {
    for (let i = 0; countReplicas(await probe.info('replication')) < 1; i++) {
      if (i > 200) throw new Error('the replica did not come online');
      await sleep(50);
    }
  } finally {
    probe.disconnect();
  }
  return replica;
}

describe('countReplicas', () => {
  it('counts replicas online that acknowledged within 10 s', () => {
    const info = [
      'role:master',
      'connected_slaves:4',
      'slave0:ip=127.0.0.1,port=7001,state=online,offset=100,lag=0',
      'slave1:ip=127.0.0.1,port=7002,state=online,offset=90,lag=10',
      'slave2:ip=127.0.0.1,port=7003,state=online,offset=80,lag=11',
      'slave3:ip=127.0.0.1,port=7004,state=wait_bgsave,offset=0,lag=0',
    ].join('\r\n');
    expect(countReplicas(info)).toBe(2);
    expect(countReplicas('role:master\r\nconnected_slaves:0\r\n')).toBe(0);
  });
});

describe('claims wait for the replicas', () => {
  it('a replica that does not confirm refuses the claim (mark and lock given back) until the grace is over', async () => {
    const dir = tempDir('replica-wait');
    const master = await startTestRedis(path.join(dir, 'master'));
    stops.push(() => master.stop());
    const replica = await replicaOf(master, path.join(dir, 'replica'));
    const redis = new Redis(master.url);
    stops.push(async () => redis.disconnect());
    let now = 1_000_000;
    const store = new ApiStore(redis, { apiUrl: 'https://api.example/identities', root: freshKeyPrefix(), lockTtlMs: 5_000 });
    const documents = new StoredDocuments(redis, store.keys, 5_000, 1, { now: () => now, log: silentLogger() });
    const waits = vi.spyOn(redis, 'wait');
    const run = store.run('import-replicas');
    await run.saveMeta({ runId: 'import-replicas', command: 'import', apiUrl: store.apiUrl, input: 'm.csv', createdAt: 0, state: 'running', dense: true });

    const granted = await documents.claim(run, 1, doc('a'));
    expect(granted.state).toBe('claimed');
    if (granted.state === 'claimed') await granted.claim.giveBack();

    // Stopped: connected as far as the master knows, but it confirms nothing.
    replica.process.kill('SIGSTOP');
    try {
      expect((await documents.claim(run, 2, doc('b'))).state).toBe('unreplicated');
      expect(await documents.lookup(P, 'b')).toBeUndefined();
      expect(await redis.keys(`${store.keys.tag}:lock:*`)).toEqual([]);
      now += REPLICA_GRACE_MS - 1;
      expect((await documents.claim(run, 2, doc('b'))).state).toBe('unreplicated');

      // Through the exactly-once upload: nothing sent, the job told to wait (no attempt spent).
      const ledger = await Ledger.open(path.join(dir, 'state'), store.apiUrl);
      let sent = 0;
      await expect(
        uploadOnce({
          run,
          documents,
          ledger,
          row: 3,
          doc: { ...doc('c'), bytes: 1 },
          base: { personId: P, documentId: 'c', file: 'c.txt', bytes: 1, sha256: SHA },
          attempts: 1,
          jobDoubt: false,
          checkExisting: false,
          check: async () => 'absent',
          send: async () => {
            sent++;
          },
          mayHaveReachedServer: () => true,
          markJobInDoubt: async () => undefined,
          now: () => now,
          log: silentLogger(),
        }),
      ).rejects.toBeInstanceOf(AwaitingReplica);
      expect(sent).toBe(0);
      expect(await ledger.lookup(P, 'c')).toBeUndefined();
      await ledger.close();
    } finally {
      replica.process.kill('SIGCONT');
    }
    // Back: claims go through again.
    expect((await documents.claim(run, 4, doc('d'))).state).toBe('claimed');

    // Gone for good: refused during the grace, then counted again (none) and no longer waited for.
    await replica.stop('SIGKILL');
    expect((await documents.claim(run, 5, doc('e'))).state).toBe('unreplicated');
    now += REPLICA_GRACE_MS;
    expect((await documents.claim(run, 5, doc('e'))).state).toBe('claimed');
    waits.mockClear();
    expect((await documents.claim(run, 6, doc('f'))).state).toBe('claimed');
    expect(waits, 'no WAIT for a replica that is not there').not.toHaveBeenCalled();

    // A replica joins: counted at the next recount, and waited for again.
    const second = await replicaOf(master, path.join(dir, 'replica-2'));
    now += REPLICA_RECOUNT_MS;
    expect((await documents.claim(run, 7, doc('g'))).state).toBe('claimed');
    expect(waits).toHaveBeenCalledWith(1, 1000);
    second.process.kill('SIGSTOP');
    try {
      expect((await documents.claim(run, 8, doc('h'))).state).toBe('unreplicated');
    } finally {
      second.process.kill('SIGCONT');
    }
  }, 60_000);
});
