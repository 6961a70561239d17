import { describe, expect, it } from 'vitest';
import { exitCodeForError } from '../../src/engine/outcome.ts';
import { loginFailure } from '../../src/api/login-failure.ts';
import { tlsErrorFor } from '../../src/api/transport-error.ts';
import { ApiUnreachableError, ApiUnusableError, AuthRefusedError, HttpStatusError, NetworkError, ProtocolError, TimeoutError, TlsError } from '../../src/errors.ts';

const URL_ = 'https://x.example:5009';
const PATH = '/api/v1/authenticate';

describe('loginFailure: why a run cannot start (issue #15, could-not-start errors)', () => {
  it.each([
    ['ECONNREFUSED', 'connection refused'],
    ['ENOTFOUND', 'host name not found (DNS)'],
    ['EAI_AGAIN', 'host name lookup failed (DNS did not answer)'],
    ['EHOSTUNREACH', 'no route to the host'],
  ])('%s: unreachable, naming host, port and cause, exit 2', (code, words) => {
    const err = loginFailure(new NetworkError({ method: 'POST', path: PATH, sysCode: code, requestSent: false }), URL_, 5);
    expect(err).toBeInstanceOf(ApiUnreachableError);
    expect((err as Error).message).toBe(
      `cannot reach the API at ${URL_}: ${words} (${code}) (the last of 5 tries); check --api-url and that the server is up and reachable from here`,
    );
    expect(exitCodeForError(err)).toBe(2);
  });

  it('a connect timeout is unreachable too; the default port is named', () => {
    const err = loginFailure(new TimeoutError({ method: 'POST', path: PATH, phase: 'connect', requestSent: false }), 'https://acme.example/identities', 1);
    expect(err).toBeInstanceOf(ApiUnreachableError);
    expect((err as Error).message).toContain('cannot reach the API at https://acme.example/identities (acme.example:443): no answer to the connection attempt');
  });

  it('404: the path prefix is probably missing', () => {
    const err = loginFailure(new HttpStatusError({ method: 'POST', path: PATH, status: 404 }), URL_, 1);
    expect(err).toBeInstanceOf(ApiUnusableError);
    expect((err as Error).message).toMatch(/answered 404 to the login .*path prefix is probably missing or wrong: cloud URLs end in \/identities/);
    expect(exitCodeForError(err)).toBe(2);
  });

  it('5xx after the retries: what came back', () => {
    const err = loginFailure(new HttpStatusError({ method: 'POST', path: PATH, status: 503, bodyExcerpt: 'Service Unavailable' }), URL_, 3);
    expect((err as Error).message).toBe(`the API at ${URL_} answered 503 to the login (the last of 3 tries): "Service Unavailable"; the server (or a proxy in front of it) is failing: try again later`);
    expect(exitCodeForError(err)).toBe(2);
  });

  it('200 with HTML: not a login answer, with what came', () => {
    const protocol = new ProtocolError({ method: 'POST', path: PATH, problem: 'the body is not JSON: "<html>Sign in</html>" (Content-Type text/html)' });
    const err = loginFailure(protocol, URL_, 1);
    expect(err).toBeInstanceOf(ApiUnusableError);
    expect((err as Error).message).toContain('not a login answer: the body is not JSON: "<html>Sign in</html>" (Content-Type text/html)');
    expect(exitCodeForError(err)).toBe(2);
  });

  it('refused credentials, certificate problems and the unforeseen pass through', () => {
    const refused = new AuthRefusedError('no', 401);
    const tls = new TlsError('bad cert');
    const bug = new TypeError('x');
    expect(loginFailure(refused, URL_, 1)).toBe(refused);
    expect(loginFailure(tls, URL_, 1)).toBe(tls);
    expect(loginFailure(bug, URL_, 1)).toBe(bug);
  });
});

describe('tlsErrorFor: a certificate for another name', () => {
  it('says the name does not match and which names the certificate has, not "pass --ca-file"', () => {
    const nodeErr = Object.assign(new Error("Hostname/IP does not match certificate's altnames"), {
      code: 'ERR_TLS_CERT_ALTNAME_INVALID',
      host: '127.0.0.2',
      cert: { subjectaltname: 'IP Address:127.0.0.1, DNS:localhost' },
    });
    const err = tlsErrorFor('https://127.0.0.2:5009', 'ERR_TLS_CERT_ALTNAME_INVALID', { cause: nodeErr });
    expect(err.message).toBe(
      "the server's TLS certificate at https://127.0.0.2:5009 is made out for IP Address:127.0.0.1, DNS:localhost, not for 127.0.0.2: the name does not match (ERR_TLS_CERT_ALTNAME_INVALID). " +
        'Use a host name in --api-url that the certificate names, or have the certificate reissued for 127.0.0.2; --ca-file does not change this.',
    );
    expect(err.message).not.toMatch(/pass its certificate with --ca-file/);
  });
});
