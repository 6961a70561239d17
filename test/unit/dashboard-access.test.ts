import { chmodSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { authorized, checkExposure, hostAllowed, isLoopback, parseListen, readAuthToken } from '../../src/commands/dashboard/dashboard-access.ts';
import { tempDir } from '../helpers/fixtures.ts';

const TOKEN = 'a'.repeat(12) + 'bcdefghijk';
const basic = (user: string, password: string) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

describe('where the dashboard listens', () => {
  it('reads HOST:PORT and [IPv6]:PORT, and refuses the rest', () => {
    expect(parseListen('127.0.0.1:8080')).toEqual({ host: '127.0.0.1', port: 8080 });
    expect(parseListen('[::1]:0')).toEqual({ host: '::1', port: 0 });
    expect(parseListen('localhost:9')).toEqual({ host: 'localhost', port: 9 });
    for (const bad of ['8080', '127.0.0.1', '127.0.0.1:99999', '::1:80', 'host:port']) expect(() => parseListen(bad), bad).toThrow(/is not HOST:PORT/);
  });

  it('knows loopback from the rest', () => {
    for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', 'LOCALHOST']) expect(isLoopback(h), h).toBe(true);
    for (const h of ['0.0.0.0', '::', '10.0.0.5', 'example.org', '128.0.0.1', 'localhost.example']) expect(isLoopback(h), h).toBe(false);
  });

  it('refuses any other address without a token, and allows it with one', () => {
    expect(() => checkExposure({ host: '0.0.0.0', port: 8080 }, undefined)).toThrow(/personal data.*--auth-token-file/);
    expect(() => checkExposure({ host: '10.0.0.5', port: 8080 }, undefined)).toThrow(/refusing 10\.0\.0\.5/);
    expect(() => checkExposure({ host: '0.0.0.0', port: 8080 }, TOKEN)).not.toThrow();
    expect(() => checkExposure({ host: '127.0.0.1', port: 8080 }, undefined)).not.toThrow();
  });
});

describe('the token', () => {
  it('passes as a bearer token or as basic auth\'s password (any user), nothing else', () => {
    expect(authorized(`Bearer ${TOKEN}`, TOKEN)).toBe(true);
    expect(authorized(basic('anyone', TOKEN), TOKEN)).toBe(true);
    expect(authorized(basic('', TOKEN), TOKEN)).toBe(true);
    expect(authorized(undefined, TOKEN)).toBe(false);
    expect(authorized(`Bearer ${TOKEN}x`, TOKEN)).toBe(false);
    expect(authorized(`Bearer ${TOKEN.slice(1)}`, TOKEN)).toBe(false);
    expect(authorized(basic(TOKEN, 'wrong'), TOKEN)).toBe(false);
    expect(authorized(`Basic ${Buffer.from(TOKEN).toString('base64')}`, TOKEN)).toBe(false);
    expect(authorized(TOKEN, TOKEN)).toBe(false);
  });

  it('is read from its file (a trailing newline dropped); a short one is refused, one others can read is warned about', () => {
    const dir = tempDir();
    const file = path.join(dir, 'token');
    writeFileSync(file, `${TOKEN}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    expect(readAuthToken(file)).toEqual({ token: TOKEN });
    chmodSync(file, 0o644);
    expect(readAuthToken(file).warning).toMatch(/chmod 600/);
    writeFileSync(file, 'short\n');
    expect(() => readAuthToken(file)).toThrow(/at least 16 characters/);
    expect(() => readAuthToken(path.join(dir, 'missing'))).toThrow(/cannot be read \(ENOENT\)/);
  });
});

describe('the Host header without a token (DNS rebinding)', () => {
  it('must name this machine', () => {
    const listen = { host: '127.0.0.1', port: 8080 };
    expect(hostAllowed('127.0.0.1:8080', listen)).toBe(true);
    expect(hostAllowed('localhost:8080', listen)).toBe(true);
    expect(hostAllowed('[::1]:8080', listen)).toBe(true);
    expect(hostAllowed('attacker.example:8080', listen)).toBe(false);
    expect(hostAllowed('attacker.example', listen)).toBe(false);
    expect(hostAllowed(undefined, listen)).toBe(false);
  });
});
