import { randomBytes } from 'node:crypto';
import { afterEach } from 'vitest';
import { startSandbox, PERMISSIONS, type Sandbox, type SandboxOptions } from '../../src/sandbox/index.ts';

const running: Sandbox[] = [];

afterEach(async () => {
  while (running.length > 0) await running.pop()!.close();
});

/** A sandbox on port 0 with user `migrator` (random password, every permission) and admin on; closed after the test. */
export async function withSandbox(options: SandboxOptions = {}): Promise<Sandbox & { password: string }> {
  const password = randomBytes(8).toString('hex');
  const sandbox = await startSandbox({ admin: true, users: [{ username: 'migrator', password, permissions: [...PERMISSIONS] }], ...options });
  running.push(sandbox);
  return Object.assign(sandbox, { password: sandbox.users[0]!.password });
}

/** The environment that points idsync at sandbox `s`, logged in as `migrator`. */
export function sandboxEnv(s: { url: string; password: string }): { IDSYNC_API_URL: string; IDSYNC_USERNAME: string; IDSYNC_PASSWORD: string } {
  return { IDSYNC_API_URL: s.url, IDSYNC_USERNAME: 'migrator', IDSYNC_PASSWORD: s.password };
}

export async function login(sandbox: Sandbox, username = 'migrator', password = sandbox.users.find((u) => u.username === username)!.password): Promise<string> {
  const res = await fetch(`${sandbox.url}/api/v1/authenticate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ username, password }) });
  if (res.status !== 200) throw new Error(`login answered ${res.status}`);
  return ((await res.json()) as { token: string }).token;
}

export function uploadForm(fields: Record<string, string>, file?: { name: string; bytes: Buffer | string; type?: string }): FormData {
  const form = new FormData();
  for (const [k, v] of Object.entries(fields)) form.append(k, v);
  if (file) form.append('file', new Blob([typeof file.bytes === "string" ? file.bytes : new Uint8Array(file.bytes)], { type: file.type ?? 'application/octet-stream' }), file.name);
  return form;
}
