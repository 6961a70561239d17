import { ApiUnreachableError, ApiUnusableError, HttpStatusError, NetworkError, ProtocolError, TimeoutError } from '../errors.ts';

/** Socket codes in words; the code itself stays in the message for searching. */
const CAUSE: Record<string, string> = {
  ECONNREFUSED: 'connection refused',
  ENOTFOUND: 'host name not found (DNS)',
  EAI_AGAIN: 'host name lookup failed (DNS did not answer)',
  EHOSTUNREACH: 'no route to the host',
  ENETUNREACH: 'network unreachable',
  EADDRNOTAVAIL: 'address not available',
  ECONNRESET: 'the connection was reset',
  ETIMEDOUT: 'the connection timed out',
  EPIPE: 'the connection broke',
  UND_ERR_SOCKET: 'the connection broke',
  UND_ERR_CLOSED: 'the connection was closed',
};

const PREFIX_HINT =
  "the URL's path prefix is probably missing or wrong: cloud URLs end in /identities (https://<customer>.econnectcloud.com/identities), on-premise ones have none (https://host:5009)";

/** The URL with its host and port spelled out when the port is the scheme's default. */
function target(apiUrl: string): string {
  const url = new URL(apiUrl);
  return url.port ? apiUrl : `${apiUrl} (${url.hostname}:${url.protocol === 'https:' ? '443' : '80'})`;
}

function afterTries(tries: number): string {
  return tries > 1 ? ` (the last of ${tries} tries)` : '';
}

/**
 * The first login failed for good (after its retries): an error that says why the run cannot
 * start (exit 2), in terms of the URL the user gave. Errors that already say so (credentials,
 * certificate) and anything unforeseen pass through unchanged.
 */
export function loginFailure(err: unknown, apiUrl: string, tries: number): unknown {
  const where = `the API at ${apiUrl}`;
  if (err instanceof NetworkError || (err instanceof TimeoutError && err.phase === 'connect')) {
    const code = err instanceof NetworkError ? (err.sysCode ?? 'network error') : 'UND_ERR_CONNECT_TIMEOUT';
    const cause = err instanceof NetworkError ? (CAUSE[code] ?? 'the connection failed') : 'no answer to the connection attempt';
    return new ApiUnreachableError(`cannot reach the API at ${target(apiUrl)}: ${cause} (${code})${afterTries(tries)}; check --api-url and that the server is up and reachable from here`, code, { cause: err });
  }
  if (err instanceof TimeoutError) {
    return new ApiUnreachableError(`${where} took the connection but did not answer the login in time (${err.phase})${afterTries(tries)}; check --api-url and the server`, undefined, { cause: err });
  }
  if (err instanceof HttpStatusError) {
    const excerpt = err.bodyExcerpt ? `: ${JSON.stringify(err.bodyExcerpt)}` : '';
    if (err.status === 404) return new ApiUnusableError(`${where} answered 404 to the login (${err.method} ${err.path}); ${PREFIX_HINT}`, { cause: err });
    if (err.status >= 500) {
      return new ApiUnusableError(`${where} answered ${err.status} to the login${afterTries(tries)}${excerpt}; the server (or a proxy in front of it) is failing: try again later`, { cause: err });
    }
    return new ApiUnusableError(`${where} answered ${err.status} to the login (${err.method} ${err.path})${excerpt}; is --api-url the address of the Identities API?`, { cause: err });
  }
  if (err instanceof ProtocolError) {
    return new ApiUnusableError(`${where} answered the login with something that is not a login answer: ${err.problem}; is --api-url the address of the Identities API (not of a web page or a login portal)?`, { cause: err });
  }
  return err;
}
