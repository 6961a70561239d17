import { IdsyncError, NetworkError, systemCode, TimeoutError, TlsError } from '../errors.ts';

/**
 * Turns what undici and node:net/tls throw into the typed errors of src/errors.ts, so that
 * classify() only ever sees our own classes. Certificate problems become TlsError with the fix.
 */

/** OpenSSL / Node codes that mean "the server's certificate could not be verified". */
const CERT_CODE = /^(UNABLE_TO_|CERT_|DEPTH_ZERO_SELF_SIGNED_CERT$|SELF_SIGNED_CERT_IN_CHAIN$|ERR_TLS_CERT_ALTNAME_INVALID$|HOSTNAME_MISMATCH$|INVALID_CA$|INVALID_PURPOSE$|PATH_LENGTH_EXCEEDED$)/;
/** Failures in the TLS handshake itself (wrong protocol on the port, no shared cipher, …). */
const HANDSHAKE_CODE = /^(ERR_SSL_|EPROTO$|ERR_TLS_)/;
/** Errors raised before a connection existed: nothing can have reached the server. */
const CONNECT_PHASE_CODES = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'EADDRNOTAVAIL']);

const ERRNO_CODE = /^E[A-Z0-9]+$/;
const UNDICI_SOCKET_CODES = new Set(['UND_ERR_SOCKET', 'UND_ERR_CLOSED', 'UND_ERR_DESTROYED', 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH']);

/** The most telling code in an error and its causes (undici wraps socket errors). */
function codesOf(err: unknown): string[] {
  const codes: string[] = [];
  let current: unknown = err;
  for (let depth = 0; current && depth < 5; depth++) {
    const code = systemCode(current);
    if (code) codes.push(code);
    current = (current as { cause?: unknown }).cause;
  }
  return codes;
}

/** The error in a chain that carries `code` (undici may wrap Node's). */
function findCode(err: unknown, code: string): Record<string, unknown> | undefined {
  let current: unknown = err;
  for (let depth = 0; current && depth < 5; depth++) {
    if (systemCode(current) === code) return current as Record<string, unknown>;
    current = (current as { cause?: unknown }).cause;
  }
  return undefined;
}

/**
 * A certificate that is valid but made out for other names: trusting another CA would not help,
 * so the message says which names it has (Node puts the peer certificate on the error).
 */
function nameMismatch(origin: string, code: string, cause: unknown): TlsError {
  const err = findCode(cause, code);
  const names = (err?.cert as { subjectaltname?: unknown; subject?: { CN?: unknown } } | undefined)?.subjectaltname;
  const commonName = (err?.cert as { subject?: { CN?: unknown } } | undefined)?.subject?.CN;
  const host = typeof err?.host === 'string' ? err.host : new URL(origin).hostname;
  const has = typeof names === 'string' && names !== '' ? `is made out for ${names}` : typeof commonName === 'string' ? `is made out for ${commonName}` : 'is made out for other names';
  return new TlsError(
    `the server's TLS certificate at ${origin} ${has}, not for ${host}: the name does not match (${code}). ` +
      `Use a host name in --api-url that the certificate names, or have the certificate reissued for ${host}; --ca-file does not change this.`,
    code,
    { cause },
  );
}

export function tlsErrorFor(origin: string, code: string, cause: unknown): TlsError {
  if (code === 'ERR_TLS_CERT_ALTNAME_INVALID' || code === 'HOSTNAME_MISMATCH') return nameMismatch(origin, code, cause);
  if (CERT_CODE.test(code)) {
    return new TlsError(
      `the server's TLS certificate at ${origin} could not be verified (${code}). If the server uses a private or self-signed CA, ` +
        `pass its certificate with --ca-file PATH (PEM; added to the system CAs). As a last resort, --insecure turns verification off.`,
      code,
      { cause },
    );
  }
  return new TlsError(
    `the TLS handshake with ${origin} failed (${code}). Check that --api-url uses the right scheme and port (https vs http).`,
    code,
    { cause },
  );
}

export interface RequestContext {
  method: string;
  /** Path without query string (queries may carry ids that do not belong in reports). */
  path: string;
  origin: string;
  /** True once the request may have left (connected): decides `requestSent`. */
  connected?: boolean;
}

export function toTransportError(err: unknown, ctx: RequestContext): unknown {
  if (err instanceof IdsyncError) return err;
  if ((err as { name?: unknown } | null)?.name === 'AbortError') return err;
  const codes = codesOf(err);
  const first = codes[0];
  if (first === 'UND_ERR_ABORTED') return err;
  const tls = codes.find((c) => CERT_CODE.test(c) || HANDSHAKE_CODE.test(c));
  if (tls) return tlsErrorFor(ctx.origin, tls, err);
  const method = ctx.method;
  const path = ctx.path;
  if (first === 'UND_ERR_CONNECT_TIMEOUT') return new TimeoutError({ method, path, phase: 'connect', requestSent: false, cause: err });
  if (first === 'UND_ERR_HEADERS_TIMEOUT') return new TimeoutError({ method, path, phase: 'headers', requestSent: true, cause: err });
  if (first === 'UND_ERR_BODY_TIMEOUT') return new TimeoutError({ method, path, phase: 'body', requestSent: true, cause: err });
  // Only socket-level failures become NetworkError; anything else (bad arguments, bugs) stays as thrown.
  const sysCode = codes.find((c) => ERRNO_CODE.test(c)) ?? codes.find((c) => UNDICI_SOCKET_CODES.has(c));
  if (sysCode === undefined) return err;
  const beforeConnect = codes.some((c) => CONNECT_PHASE_CODES.has(c));
  return new NetworkError({ method, path, sysCode, requestSent: !beforeConnect && (ctx.connected ?? true), cause: err });
}
