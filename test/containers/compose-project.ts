import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';

export const REPO_ROOT = new URL('../..', import.meta.url).pathname;

export interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its end, feeding `input` (a Buffer) to its stdin. Never throws on a non-zero exit. */
export function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv; input?: Buffer; timeoutMs?: number; cwd?: string } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: options.cwd ?? REPO_ROOT, env: options.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? 120_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
    child.stdin.on('error', () => {}); // a command that exits without reading its input
    child.stdin.end(options.input);
  });
}

/** Like run, but the stdout as bytes (a tar stream). */
export function runBytes(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: REPO_ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout: Buffer.concat(out), stderr }));
  });
}

export async function must(p: Promise<Run>, what: string): Promise<Run> {
  const r = await p;
  if (r.code !== 0) throw new Error(`${what} exited ${r.code}\n${r.stdout.slice(-3000)}\n${r.stderr.slice(-3000)}`);
  return r;
}

export async function dockerAnswers(): Promise<boolean> {
  const r = await run('docker', ['version', '--format', '{{.Server.Version}}'], { timeoutMs: 15_000 }).catch(() => undefined);
  return r?.code === 0;
}

/**
 * One docker-compose project of this repository's docker-compose.yml under a random name, so runs
 * never meet each other's containers or volumes. Host ports are free ones on loopback.
 */
export class ComposeProject {
  readonly name = `idsyncct${randomBytes(4).toString('hex')}`;
  readonly env: NodeJS.ProcessEnv;

  constructor(settings: Record<string, string>) {
    this.env = {
      PATH: process.env.PATH,
      HOME: process.env.HOME,
      DOCKER_HOST: process.env.DOCKER_HOST,
      COMPOSE_PROJECT_NAME: this.name,
      IDSYNC_REDIS_PUBLISH: '127.0.0.1:',
      IDSYNC_SANDBOX_PUBLISH: '127.0.0.1:',
      ...settings,
    };
  }

  compose(args: string[], options: { input?: Buffer; timeoutMs?: number } = {}): Promise<Run> {
    return run('docker-compose', args, { env: this.env, ...options });
  }

  /** A one-off `cli` container (docker-compose run --rm -T cli ...). */
  cli(args: string[], options: { input?: Buffer; entrypoint?: string; timeoutMs?: number } = {}): Promise<Run> {
    const entry = options.entrypoint ? ['--entrypoint', options.entrypoint] : [];
    return this.compose(['run', '--rm', '-T', ...entry, 'cli', ...args], options);
  }

  async cliBytes(entrypoint: string, args: string[]): Promise<Buffer> {
    const r = await runBytes('docker-compose', ['run', '--rm', '-T', '--entrypoint', entrypoint, 'cli', ...args], this.env);
    if (r.code !== 0) throw new Error(`cli ${entrypoint} exited ${r.code}: ${r.stderr.slice(-2000)}`);
    return r.stdout;
  }

  /** The host address of a published port: "127.0.0.1:49153". */
  async port(service: string, port: number): Promise<string> {
    const r = await must(this.compose(['port', service, String(port)]), `docker-compose port ${service}`);
    return r.stdout.trim();
  }

  /** Container id of replica n of a service (compose's container-number label). */
  async container(service: string, n: number): Promise<string> {
    const r = await must(
      run('docker', ['ps', '-aq', '--filter', `label=com.docker.compose.project=${this.name}`, '--filter', `label=com.docker.compose.service=${service}`, '--filter', `label=com.docker.compose.container-number=${n}`]),
      'docker ps',
    );
    const id = r.stdout.trim();
    if (!id) throw new Error(`no container ${service}_${n} in ${this.name}`);
    return id;
  }

  async containers(service: string): Promise<string[]> {
    const r = await must(run('docker', ['ps', '-q', '--filter', `label=com.docker.compose.project=${this.name}`, '--filter', `label=com.docker.compose.service=${service}`]), 'docker ps');
    return r.stdout.split('\n').filter(Boolean);
  }

  async inspect(container: string, format: string): Promise<string> {
    return (await must(run('docker', ['inspect', '-f', format, container]), 'docker inspect')).stdout.trim();
  }

  /** Container logs (stdout and stderr), optionally only since an ISO time. */
  async logs(container: string, since?: string): Promise<string> {
    const r = await must(run('docker', ['logs', ...(since ? ['--since', since] : []), container]), 'docker logs');
    return r.stdout + r.stderr;
  }

  async waitFor(what: string, test: () => Promise<boolean>, timeoutMs: number): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!(await test())) {
      if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
      await sleep(500);
    }
  }

  async waitHealthy(service: string, timeoutMs = 120_000): Promise<void> {
    await this.waitFor(`${service} healthy`, async () => {
      const ids = await this.containers(service);
      if (ids.length === 0) return false;
      const states = await Promise.all(ids.map((id) => this.inspect(id, '{{if .State.Health}}{{.State.Health.Status}}{{end}}')));
      return states.every((s) => s === 'healthy');
    }, timeoutMs);
  }

  /** Volumes still carrying this project's label. */
  async volumes(): Promise<string[]> {
    const r = await must(run('docker', ['volume', 'ls', '-q', '--filter', `label=com.docker.compose.project=${this.name}`]), 'docker volume ls');
    return r.stdout.split('\n').filter(Boolean);
  }

  async down(): Promise<Run> {
    return this.compose(['--profile', 'cli', 'down', '--volumes', '--remove-orphans', '--timeout', '60'], { timeoutMs: 180_000 });
  }
}

/** pino JSON lines of a log, skipping anything else (banners, plain error lines). */
export function jsonLines(log: string): Array<Record<string, unknown>> {
  const lines: Array<Record<string, unknown>> = [];
  for (const line of log.split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      lines.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a line cut by the log driver
    }
  }
  return lines;
}
