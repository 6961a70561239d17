/**
 * The processes a benchmark talks to: a redis-server of its own, the sandbox as a separate
 * `idsync sandbox` process, idsync itself as the real CLI, and peak-RSS sampling of any of them.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO = path.resolve(import.meta.dirname, '../..');
export const IDSYNC_BIN = path.join(REPO, 'bin/idsync.js');
export const USER = 'migrator';
export const PASSWORD = 'bench-password-1';

import { freePort } from '../../src/store/redis/free-port.ts';

export { freePort };

/** VmHWM (peak RSS, bytes) of a live process, or undefined once it is gone. */
export function peakRss(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** Samples VmHWM every 50 ms until stopped; VmHWM never decreases, so the last sample is the peak seen. */
export function rssSampler(pid: number): { stop(): number } {
  let peak = 0;
  const t = setInterval(() => {
    const v = peakRss(pid);
    if (v !== undefined) peak = Math.max(peak, v);
  }, 50);
  return {
    stop() {
      clearInterval(t);
      const v = peakRss(pid);
      if (v !== undefined) peak = Math.max(peak, v);
      return peak;
    },
  };
}

export interface Exited {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  ms: number;
  peakRss: number;
}

/** Spawns a command, collects its output and the peak RSS of the spawned process itself. */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; onStderr?: (chunk: string, child: ChildProcess) => void } = {}): Promise<Exited> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { cwd: options.cwd ?? REPO, env: { ...process.env, ...options.env }, stdio: ['ignore', 'pipe', 'pipe'] });
    const sampler = rssSampler(child.pid!);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += String(d)));
    child.stderr!.on('data', (d) => {
      stderr += String(d);
      options.onStderr?.(String(d), child);
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 600_000);
    child.on('error', reject);
    // 'exit' fires before /proc/<pid> goes away only for zombies; take the last sample first.
    child.on('exit', (code, signal) => {
      const ms = performance.now() - t0;
      clearTimeout(timer);
      const peak = sampler.stop();
      child.stdout!.on('end', () => {});
      setImmediate(() => resolve({ code, signal, stdout, stderr, ms, peakRss: peak }));
    });
  });
}

export interface RedisServer {
  url: string;
  port: number;
  pid: number;
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** A throwaway redis-server (no persistence: it only holds the benchmark's queues). */
export async function startRedis(dir: string): Promise<RedisServer> {
  const port = await freePort();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--maxmemory-policy', 'noeviction'], { stdio: 'ignore' });
  const { Redis } = await import('ioredis');
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1 });
  client.on('error', () => {});
  for (let i = 0; ; i++) {
    try {
      await client.connect();
      await client.ping();
      break;
    } catch {
      if (i > 100) throw new Error('redis-server did not start');
      client.disconnect();
      await sleep(50);
    }
  }
  return {
    url,
    port,
    pid: child.pid!,
    flush: async () => {
      await client.flushall();
    },
    stop: async () => {
      client.disconnect();
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    },
  };
}

export interface SandboxProcess {
  url: string;
  origin: string;
  caFile?: string;
  pid: number;
  admin<T>(method: string, p: string, body?: unknown): Promise<T>;
  token(): Promise<string>;
  stop(): Promise<void>;
}

/** `idsync sandbox` in its own process, so it does not share an event loop with the client under test. */
export async function startSandboxProcess(options: { dir: string; tls?: boolean; latencyMs?: number; extra?: string[] }): Promise<SandboxProcess> {
  const args = [IDSYNC_BIN, 'sandbox', '--user', `${USER}:${PASSWORD}`, '--admin', '--dir', options.dir, '--log-level', 'warn'];
  if (options.tls) args.push('--tls');
  if (options.latencyMs) args.push('--latency', String(options.latencyMs));
  args.push(...(options.extra ?? []));
  const child = spawn(process.execPath, args, { cwd: REPO, stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  const banner = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d) => {
      out += String(d);
      if (out.includes('Ctrl-C stops it')) resolve(out);
    });
    child.once('exit', (code) => reject(new Error(`sandbox exited ${code}: ${out}`)));
  });
  child.stdout!.resume();
  const url = /^url: (\S+)/m.exec(banner)![1]!;
  const caFile = /^ca-file: (\S+)/m.exec(banner)?.[1];
  const origin = new URL(url).origin;
  // Node's fetch cannot take a CA per call; admin calls go through undici with the sandbox CA.
  const { Agent, request } = await import('undici');
  const dispatcher = new Agent({ connect: caFile ? { ca: readFileSync(caFile, 'utf8') } : {} });
  const call = async (method: string, full: string, body?: unknown) => {
    const res = await request(full, {
      method: method as 'GET',
      dispatcher,
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? null : JSON.stringify(body),
    });
    const text = await res.body.text();
    if (res.statusCode >= 300) throw new Error(`${method} ${full}: ${res.statusCode} ${text}`);
    return text ? JSON.parse(text) : undefined;
  };
  return {
    url,
    origin,
    ...(caFile ? { caFile } : {}),
    pid: child.pid!,
    admin: (method, p, body) => call(method, origin + p, body),
    token: async () => ((await call('POST', `${url}/api/v1/authenticate`, { username: USER, password: PASSWORD })) as { token: string }).token,
    stop: async () => {
      await dispatcher.close().catch(() => {});
      if (child.exitCode !== null || child.signalCode !== null) return;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGINT');
      await exited;
    },
  };
}

/** Environment for the idsync CLI against a sandbox and a Redis. */
export function idsyncEnv(s: SandboxProcess, redisUrl: string, stateDir: string, reportDir: string): NodeJS.ProcessEnv {
  return {
    IDSYNC_API_URL: s.url,
    IDSYNC_USERNAME: USER,
    IDSYNC_PASSWORD: PASSWORD,
    REDIS_URL: redisUrl,
    IDSYNC_STATE_DIR: stateDir,
    IDSYNC_REPORT_DIR: reportDir,
    IDSYNC_LOG_FORMAT: 'json',
    IDSYNC_LOG_LEVEL: 'info',
    ...(s.caFile ? { IDSYNC_CA_FILE: s.caFile } : {}),
  };
}
