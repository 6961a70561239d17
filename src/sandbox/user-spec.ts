import { UsageError } from '../errors.ts';
import { PERMISSIONS, parsePermission, type Permission } from './permissions.ts';
import type { SandboxUser } from './sandbox-context.ts';

/** `NAME:PASSWORD[:PERM,...]` from `--user`; permissions default to all four. */
export function parseUserSpec(spec: string): SandboxUser {
  const first = spec.indexOf(':');
  if (first <= 0) throw new UsageError(`--user ${JSON.stringify(spec)}: expected NAME:PASSWORD[:PERMISSION,...]`);
  const username = spec.slice(0, first);
  const rest = spec.slice(first + 1);
  const last = rest.lastIndexOf(':');
  const password = last === -1 ? rest : rest.slice(0, last);
  if (!password) throw new UsageError(`--user ${username}: the password must not be empty`);
  if (last === -1) return { username, password, permissions: [...PERMISSIONS] };
  const permissions: Permission[] = [];
  for (const name of rest.slice(last + 1).split(',').filter((s) => s.trim())) {
    const p = parsePermission(name);
    if (!p) throw new UsageError(`--user ${username}: unknown permission ${JSON.stringify(name)} (use add-files, read-files, read-detections, read-identity or the full names)`);
    if (!permissions.includes(p)) permissions.push(p);
  }
  return { username, password, permissions };
}
