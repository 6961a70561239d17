import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { freePort } from '../../src/store/redis/free-port.ts';
import { ensureRedisServer } from '../../src/store/redis/redis-binary.ts';

export interface TestRedis {
  url: string;
  port: number;
  password: string;
  dir: string;
  process: ChildProcess;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/**
 * A redis-server of its own on a free port, configured from a file (no password in its argv),
 * for the suite and for tests that need their own (cluster nodes, a replica, a restart).
 */
export async function startTestRedis(dir: string, options: { port?: number; password?: string; conf?: string[]; binary?: string; tls?: { ca: string } } = {}): Promise<TestRedis> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const password = options.password ?? randomBytes(12).toString('hex');
  const binary = options.binary ?? ensureRedisServer({ allowInstall: true, say: (line) => console.log(`[test redis] ${line}`) });
  for (let attempt = 0; ; attempt++) {
    const port = options.port ?? (await freePort());
    const conf = path.join(dir, `redis-${port}.conf`);
    writeFileSync(
      conf,
      [`port ${port}`, 'bind 127.0.0.1', `dir ${dir}`, `requirepass ${password}`, `masterauth ${password}`, 'save ""', 'appendonly no', 'maxmemory-policy noeviction', `logfile ${path.join(dir, `redis-${port}.log`)}`, ...(options.conf ?? [])].join('\n'),
      { mode: 0o600 },
    );
    const child = spawn(binary, [conf], { stdio: 'ignore' });
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    const url = `${options.tls ? 'rediss' : 'redis'}://:${password}@127.0.0.1:${port}`;
    for (let i = 0; i < 100; i++) {
      const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, ...(options.tls ? { tls: { ca: readFileSync(options.tls.ca, 'utf8') } } : {}) });
      probe.on('error', () => {});
      const up = await probe.connect().then(() => probe.ping(), () => undefined).finally(() => probe.disconnect());
      if (up === 'PONG') {
        return {
          url,
          port,
          password,
          dir,
          process: child,
          async stop(signal = 'SIGTERM') {
            if (child.exitCode === null && child.signalCode === null) child.kill(signal);
            await exited;
          },
        };
      }
      if (child.exitCode !== null) break;
      await sleep(50);
    }
    child.kill('SIGKILL');
    if (attempt >= 2 || options.port) throw new Error(`redis-server would not start on port ${port} (see ${dir})`);
  }
}

export interface TestCluster {
  nodes: TestRedis[];
  /** REDIS_URL at one of the nodes (any works). */
  url(node?: number): string;
  stop(): Promise<void>;
}

/** A Redis Cluster of `masters` nodes on free ports (redis-cli --cluster create), with a password. */
export async function startTestCluster(dir: string, masters = 3): Promise<TestCluster> {
  const password = randomBytes(12).toString('hex');
  const nodes: TestRedis[] = [];
  for (let i = 0; i < masters; i++) {
    const port = await freePort();
    nodes.push(await startTestRedis(path.join(dir, `node-${i}`), { port, password, conf: ['cluster-enabled yes', `cluster-config-file nodes-${port}.conf`, 'cluster-node-timeout 2000'] }));
  }
  const cli = execFileSync('redis-cli', ['-a', password, '--no-auth-warning', '--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes'], { encoding: 'utf8' });
  if (!/All 16384 slots covered/.test(cli)) throw new Error(`cluster create failed: ${cli}`);
  for (let i = 0; i < 100; i++) {
    const probe = new Redis(nodes[0]!.url);
    const info = String(await probe.call('CLUSTER', 'INFO'));
    probe.disconnect();
    if (/cluster_state:ok/.test(info)) break;
    await sleep(100);
  }
  return {
    nodes,
    url: (node = 0) => nodes[node]!.url,
    async stop() {
      await Promise.all(nodes.map((n) => n.stop()));
    },
  };
}

export interface TestSentinels {
  master: TestRedis;
  replica: TestRedis;
  sentinels: ChildProcess[];
  sentinelPorts: number[];
  /** REDIS_URL of the deployment: redis+sentinel://…/mymaster */
  url: string;
  /** The master's port as the sentinels see it now. */
  masterPort(): Promise<number>;
  stop(): Promise<void>;
}

/** A master, a replica and three redis-sentinel processes watching them as `mymaster`. */
export async function startTestSentinels(dir: string): Promise<TestSentinels> {
  const password = randomBytes(12).toString('hex');
  const master = await startTestRedis(path.join(dir, 'master'), { password });
  const replica = await startTestRedis(path.join(dir, 'replica'), { password, conf: [`replicaof 127.0.0.1 ${master.port}`] });
  const sentinels: ChildProcess[] = [];
  const sentinelPorts: number[] = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const sdir = path.join(dir, `sentinel-${i}`);
    mkdirSync(sdir, { recursive: true });
    const conf = path.join(sdir, 'sentinel.conf');
    writeFileSync(
      conf,
      [
        `port ${port}`,
        'bind 127.0.0.1',
        `dir ${sdir}`,
        `logfile ${path.join(sdir, 'sentinel.log')}`,
        `sentinel monitor mymaster 127.0.0.1 ${master.port} 2`,
        `sentinel auth-pass mymaster ${password}`,
        'sentinel down-after-milliseconds mymaster 1000',
        'sentinel failover-timeout mymaster 5000',
        'sentinel parallel-syncs mymaster 1',
      ].join('\n'),
      { mode: 0o600 },
    );
    sentinels.push(spawn('redis-sentinel', [conf], { stdio: 'ignore' }));
    sentinelPorts.push(port);
  }
  const masterPort = async () => {
    const s = new Redis({ host: '127.0.0.1', port: sentinelPorts[0]!, lazyConnect: true, maxRetriesPerRequest: 1 });
    s.on('error', () => {});
    try {
      await s.connect();
      const [, port] = (await s.call('SENTINEL', 'get-master-addr-by-name', 'mymaster')) as [string, string];
      return Number(port);
    } finally {
      s.disconnect();
    }
  };
  // The sentinels know each other and the replica before the deployment is used.
  for (let i = 0; i < 100; i++) {
    try {
      const s = new Redis({ host: '127.0.0.1', port: sentinelPorts[0]!, lazyConnect: true, maxRetriesPerRequest: 1 });
      s.on('error', () => {});
      await s.connect();
      const replicas = (await s.call('SENTINEL', 'replicas', 'mymaster')) as unknown[];
      const others = (await s.call('SENTINEL', 'sentinels', 'mymaster')) as unknown[];
      s.disconnect();
      if (replicas.length >= 1 && others.length >= 2) break;
    } catch {
      // not up yet
    }
    await sleep(100);
  }
  return {
    master,
    replica,
    sentinels,
    sentinelPorts,
    url: `redis+sentinel://:${password}@${sentinelPorts.map((p) => `127.0.0.1:${p}`).join(',')}/mymaster`,
    masterPort,
    async stop() {
      for (const s of sentinels) s.kill('SIGTERM');
      await Promise.all([master.stop(), replica.stop()]);
    },
  };
}
