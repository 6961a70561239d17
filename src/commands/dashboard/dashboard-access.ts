import { createHash, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { isIP } from 'node:net';
import { ConfigError, UsageError } from '../../errors.ts';

/**
 * Who may see the dashboard. It shows personal data (person ids, file names, error texts), so it
 * listens on loopback unless a token guards it: `--auth-token-file FILE`, checked in constant time
 * as a bearer token (`Authorization: Bearer T`) or as the password of basic auth (any user name),
 * which is what a browser asks for.
 */

export const DEFAULT_LISTEN = '127.0.0.1:8080';

export interface ListenAddress {
  host: string;
  port: number;
}

/** `HOST:PORT` or `[IPv6]:PORT`; port 0 takes a free one. */
export function parseListen(text: string): ListenAddress {
  const m = /^\[([^\]]+)\]:(\d+)$/.exec(text) ?? /^([^:[\]]+):(\d+)$/.exec(text);
  const port = m ? Number(m[2]) : Number.NaN;
  if (!m || !Number.isInteger(port) || port < 0 || port > 65_535) throw new UsageError(`--listen ${JSON.stringify(text)} is not HOST:PORT (e.g. 127.0.0.1:8080, [::1]:8080)`);
  return { host: m[1]!, port };
}

/** Whether an address (or `localhost`) reaches this machine only. */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  return isIP(h) === 4 && h.startsWith('127.');
}

/** Reads the token (a trailing newline is dropped); a short one is refused, a file others can read is warned about. */
export function readAuthToken(file: string): { token: string; warning?: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    throw new ConfigError(`--auth-token-file ${file} cannot be read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, '--auth-token-file');
  }
  const token = text.replace(/\r?\n$/, '');
  if (token.length < 16 || /\s/.test(token)) throw new ConfigError(`--auth-token-file ${file} must hold one token of at least 16 characters without spaces (e.g. \`openssl rand -hex 24 > ${file}\`)`, '--auth-token-file');
  const mode = statSync(file).mode & 0o077;
  return { token, ...(mode !== 0 ? { warning: `--auth-token-file ${file} can be read by other users (chmod 600 it)` } : {}) };
}

/** Refuses to show personal data beyond this machine without a token. */
export function checkExposure(listen: ListenAddress, token: string | undefined): void {
  if (!isLoopback(listen.host) && token === undefined) {
    throw new UsageError(
      `the dashboard shows personal data: it listens on a loopback address (127.0.0.1, ::1, localhost) unless --auth-token-file FILE guards it; refusing ${listen.host}. ` +
        'Give a token file (browsers log in with any user name and the token as password), or reach it through an SSH tunnel: ssh -L 8080:127.0.0.1:8080 HOST',
    );
  }
}

const digest = (s: string) => createHash('sha256').update(s).digest();

/** Whether an Authorization header carries the token (bearer, or basic auth's password), compared in constant time. */
export function authorized(header: string | undefined, token: string): boolean {
  if (!header) return false;
  let given: string | undefined;
  const bearer = /^Bearer\s+(\S+)$/i.exec(header);
  const basic = /^Basic\s+([A-Za-z0-9+/=]+)$/i.exec(header);
  if (bearer) given = bearer[1];
  else if (basic) {
    const decoded = Buffer.from(basic[1]!, 'base64').toString('utf8');
    const colon = decoded.indexOf(':');
    given = colon >= 0 ? decoded.slice(colon + 1) : undefined;
  }
  // Equal-length digests: the comparison takes the same time whatever was sent.
  return given !== undefined && timingSafeEqual(digest(given), digest(token));
}

/**
 * Without a token, a page on loopback could still be read by a web site through DNS rebinding (a
 * name of the attacker's that resolves to 127.0.0.1): only requests naming this machine in their
 * Host header are answered.
 */
export function hostAllowed(hostHeader: string | undefined, listen: ListenAddress): boolean {
  if (!hostHeader) return false;
  const host = hostHeader.replace(/:\d+$/, '');
  return isLoopback(host) || host.replace(/^\[|\]$/g, '') === listen.host.replace(/^\[|\]$/g, '');
}
