import { describe, expect, it } from 'vitest';
import { classify, errorClass, isRetryable, mayHaveBeenProcessed, overloadOf, refusalOf, type Classification } from '../../src/api/classify.ts';
import { endpointOf } from '../../src/api/endpoints.ts';
import { parseRetryAfter, RETRY_AFTER_CAP_MS } from '../../src/api/retry-after.ts';
import { AuthRefusedError, BadContentError, DocumentConflictError, ExistenceCheckError, FileError, HttpStatusError, LedgerWriteError, NetworkError, ProtocolError, TimeoutError, TlsError } from '../../src/errors.ts';

const http = (status: number, method = 'GET', retryAfterMs?: number) => new HttpStatusError({ method, path: '/x', status, retryAfterMs });
const fileErr = (code: string) => new FileError('x', '/f', { cause: Object.assign(new Error(code), { code }) });

describe('classify', () => {
  const table: Array<[string, unknown, Classification]> = [
    ['GET 408', http(408), { kind: 'retry', ambiguous: false }],
    ['GET 429 without Retry-After: a default pause', http(429), { kind: 'retry-after', ms: 2000, ambiguous: false }],
    ['GET 429 + Retry-After', http(429, 'GET', 7000), { kind: 'retry-after', ms: 7000, ambiguous: false }],
    ['GET 500', http(500), { kind: 'retry', ambiguous: false }],
    ['GET 502', http(502), { kind: 'retry', ambiguous: false }],
    ['GET 503 + Retry-After', http(503, 'GET', 2000), { kind: 'retry-after', ms: 2000, ambiguous: false }],
    ['GET 504', http(504), { kind: 'retry', ambiguous: false }],
    ['POST 500 (body went out)', http(500, 'POST'), { kind: 'retry', ambiguous: true }],
    ['POST 503 + Retry-After', http(503, 'POST', 1000), { kind: 'retry-after', ms: 1000, ambiguous: true }],
    ['POST 429 (not processed)', http(429, 'POST'), { kind: 'retry-after', ms: 2000, ambiguous: false }],
    ['POST 408 (not processed)', http(408, 'POST'), { kind: 'retry', ambiguous: false }],
    ['401', http(401), { kind: 'refresh-auth', ambiguous: false }],
    ['400', http(400, 'POST'), { kind: 'permanent', ambiguous: false }],
    ['403', http(403), { kind: 'permanent', ambiguous: false }],
    ['404', http(404), { kind: 'permanent', ambiguous: false }],
    ['409', http(409, 'POST'), { kind: 'permanent', ambiguous: false }],
    ['413', http(413, 'POST'), { kind: 'permanent', ambiguous: false }],
    ['422', http(422, 'POST'), { kind: 'permanent', ambiguous: false }],
    ['418 (other 4xx)', http(418), { kind: 'permanent', ambiguous: false }],
    ['GET reset', new NetworkError({ method: 'GET', path: '/x', sysCode: 'ECONNRESET', requestSent: true }), { kind: 'retry', ambiguous: false }],
    ['POST reset after send', new NetworkError({ method: 'POST', path: '/x', sysCode: 'ECONNRESET', requestSent: true }), { kind: 'retry', ambiguous: true }],
    ['POST refused (nothing sent)', new NetworkError({ method: 'POST', path: '/x', sysCode: 'ECONNREFUSED', requestSent: false }), { kind: 'retry', ambiguous: false }],
    ['POST headers timeout', new TimeoutError({ method: 'POST', path: '/x', phase: 'headers', requestSent: true }), { kind: 'retry', ambiguous: true }],
    ['POST connect timeout', new TimeoutError({ method: 'POST', path: '/x', phase: 'connect', requestSent: false }), { kind: 'retry', ambiguous: false }],
    ['GET body timeout', new TimeoutError({ method: 'GET', path: '/x', phase: 'body', requestSent: true }), { kind: 'retry', ambiguous: false }],
    ['TLS', new TlsError('cert', 'DEPTH_ZERO_SELF_SIGNED_CERT'), { kind: 'fatal', ambiguous: false }],
    ['auth refused', new AuthRefusedError('no', 401), { kind: 'fatal', ambiguous: false }],
    ['the ledger cannot be written (disk full)', new LedgerWriteError('/state/ledger/x', Object.assign(new Error('no space'), { code: 'ENOSPC' })), { kind: 'fatal', ambiguous: false }],
    ['file ENOENT', fileErr('ENOENT'), { kind: 'permanent', ambiguous: false }],
    ['file EACCES', fileErr('EACCES'), { kind: 'permanent', ambiguous: false }],
    ['file EIO', fileErr('EIO'), { kind: 'retry', ambiguous: false }],
    ['protocol', new ProtocolError({ method: 'GET', path: '/x', problem: 'no' }), { kind: 'permanent', ambiguous: false }],
    ['abort', new DOMException('aborted', 'AbortError'), { kind: 'retry', ambiguous: true }],
    ['unknown bug', new TypeError('x is undefined'), { kind: 'permanent', ambiguous: false }],
  ];
  it.each(table)('%s', (_name, err, expected) => {
    expect(classify(err)).toEqual(expected);
  });
});

describe('errorClass and isRetryable: what the report says of a failure (#16)', () => {
  const check = (cause: unknown) => new ExistenceCheckError('0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d', cause);
  it.each([
    ['401 (after the refresh)', http(401), 'E_UNAUTHORIZED', true],
    ['403', http(403, 'POST'), 'E_FORBIDDEN', false],
    ['404', http(404), 'E_NOT_FOUND', false],
    ['408', http(408), 'E_TIMEOUT', true],
    ['409', http(409, 'POST'), 'E_CONFLICT', false],
    ['413', http(413, 'POST'), 'E_TOO_LARGE', false],
    ['429', http(429), 'E_THROTTLED', true],
    ['400', http(400, 'POST'), 'E_BAD_REQUEST', false],
    ['422', http(422, 'POST'), 'E_BAD_REQUEST', false],
    ['418', http(418), 'E_HTTP_STATUS', false],
    ['500', http(500, 'POST'), 'E_SERVER', true],
    ['503', http(503), 'E_SERVER', true],
    ['reset', new NetworkError({ method: 'GET', path: '/x', sysCode: 'ECONNRESET', requestSent: false }), 'E_NETWORK', true],
    ['timeout', new TimeoutError({ method: 'GET', path: '/x', phase: 'headers', requestSent: true }), 'E_TIMEOUT', true],
    ['conflict', new DocumentConflictError('id', 'a'.repeat(64), 'b'.repeat(64)), 'E_CONFLICT', false],
    ['bad content', new BadContentError({ method: 'GET', path: '/x', expected: 'a JPEG photo', excerpt: '<html>', problem: 'other content' }), 'E_BAD_CONTENT', false],
    ['check answered 503', check(http(503)), 'E_CHECK_FAILED', true],
    ['check answered 403', check(http(403)), 'E_CHECK_FAILED', false],
    ['check reset', check(new NetworkError({ method: 'GET', path: '/x', sysCode: 'ECONNRESET', requestSent: true })), 'E_CHECK_FAILED', true],
    ['a bug', new TypeError('x is undefined'), 'E_INTERNAL', false],
  ])('%s → %s, retryable %s', (_name, err, cls, retryable) => {
    expect(errorClass(err)).toBe(cls);
    expect(isRetryable(err)).toBe(retryable);
  });

  it('an HttpStatusError keeps its own code: only the report names its class', () => {
    expect(http(403).code).toBe('E_HTTP_STATUS');
  });

  it("a failed existence check is never in doubt: it is a GET and nothing was sent", () => {
    expect(classify(check(http(500, 'GET')))).toEqual({ kind: 'retry', ambiguous: false });
    expect(check(http(503)).message).toBe('could not check whether document 0b1d2c3e-4f50-4a6b-8c7d-9e0f1a2b3c4d exists before sending it, so nothing was sent: GET /x answered 503');
  });

  it('refusalOf finds the 401/403 behind a failure, also behind a check', () => {
    expect(refusalOf(http(403))?.status).toBe(403);
    expect(refusalOf(check(http(403)))?.status).toBe(403);
    expect(refusalOf(http(401))?.status).toBe(401);
    expect(refusalOf(http(404))).toBeUndefined();
    expect(refusalOf(new AuthRefusedError('no', 403))).toBeUndefined();
  });
});

describe('endpointOf', () => {
  it.each([
    ['POST', '/identities/api/v1/people/fileDocuments/upload', '/api/v1/people/fileDocuments/upload', 'Add Identity Files'],
    ['GET', '/identities/api/v1/people/p-1/fileDocuments/d-2/data', '/api/v1/people/{personId}/fileDocuments/{documentId}/data', 'Read Identity Files'],
    ['GET', '/api/v1/people/detections/personId/p-1', '/api/v1/people/detections/personId/{personId}', 'Read Detections'],
    ['GET', '/api/v1/people/detections/faceId/f-1', '/api/v1/people/detections/faceId/{faceId}', 'Read Detections'],
    ['GET', '/api/v1/people?tagId=t', '/api/v1/people', 'Read All Identity'],
    ['GET', '/api/v1/people/p-1', '/api/v1/people/{personId}', 'Read All Identity'],
    ['GET', '/api/v1/people/enrollmentPhoto/f-1', '/api/v1/people/enrollmentPhoto/{faceId}', undefined],
    ['GET', '/api/v1/people/detectionPhoto/f-1/d-1', '/api/v1/people/detectionPhoto/{faceId}/{detectionId}', undefined],
    ['POST', '/x/api/v1/authenticate', '/api/v1/authenticate', undefined],
    ['GET', '/api/v1/renewToken', '/api/v1/renewToken', undefined],
    ['DELETE', '/api/v1/people/p-1', 'other', undefined],
  ])('%s %s → %s (%s)', (method, path, template, permission) => {
    expect(endpointOf(method, path)).toEqual(permission ? { template, permission } : { template });
  });
});

describe('parseRetryAfter', () => {
  const now = Date.UTC(2025, 0, 1, 12, 0, 0);
  it.each([
    ['120', 120_000],
    ['0', 0],
    [' 5 ', 5_000],
    ['Wed, 01 Jan 2025 12:00:30 GMT', 30_000],
    ['Wed, 01 Jan 2025 11:00:00 GMT', 0],
    ['99999', RETRY_AFTER_CAP_MS],
    ['soon', undefined],
    ['', undefined],
    ['-5', undefined],
  ] as const)('%j → %s', (value, expected) => {
    expect(parseRetryAfter(value, now)).toBe(expected);
  });
  it('absent → undefined', () => expect(parseRetryAfter(undefined, now)).toBeUndefined());
});

describe('mayHaveBeenProcessed (after an upload failed)', () => {
  it.each([
    ['a 4xx answer: refused, not stored', new HttpStatusError({ method: 'POST', path: '/u', status: 400 }), false],
    ['a 429 answer', new HttpStatusError({ method: 'POST', path: '/u', status: 429 }), false],
    ['a 5xx after the body went out', new HttpStatusError({ method: 'POST', path: '/u', status: 502 }), true],
    ['a reset after sending', new NetworkError({ method: 'POST', path: '/u', sysCode: 'ECONNRESET', requestSent: true }), true],
    ['connection refused', new NetworkError({ method: 'POST', path: '/u', sysCode: 'ECONNREFUSED', requestSent: false }), false],
    ['a timeout after sending', new TimeoutError({ method: 'POST', path: '/u', phase: 'headers', requestSent: true }), true],
    ['an unforeseen error (malformed answer)', Object.assign(new Error('Response does not match the HTTP/1.1 protocol'), { code: 'HPE_INVALID_STATUS' }), true],
  ])('%s → %s', (_name, err, expected) => {
    expect(mayHaveBeenProcessed(err)).toBe(expected);
  });
});

describe('overloadOf (what --concurrency auto counts as "too much at once")', () => {
  const net = (sysCode: string) => new NetworkError({ method: 'GET', path: '/x', sysCode, requestSent: true });
  const table: Array<[string, unknown, string | undefined]> = [
    ['503', http(503), 'status'],
    ['503 + Retry-After', http(503, 'POST', 2000), 'status'],
    ['429', http(429), 'status'],
    ['504 (a gateway gave up on a busy backend)', http(504), 'status'],
    ['500: a failure, not load', http(500), undefined],
    ['502', http(502), undefined],
    ['404', http(404), undefined],
    ['401', http(401), undefined],
    ['headers timeout', new TimeoutError({ method: 'POST', path: '/x', phase: 'headers', requestSent: true }), 'timeout'],
    ['connect timeout', new TimeoutError({ method: 'GET', path: '/x', phase: 'connect', requestSent: false }), 'timeout'],
    ['body timeout: the answer had come', new TimeoutError({ method: 'GET', path: '/x', phase: 'body', requestSent: true }), undefined],
    ['reset', net('ECONNRESET'), 'connection'],
    ['refused', net('ECONNREFUSED'), 'connection'],
    ['socket closed', net('UND_ERR_SOCKET'), 'connection'],
    ['DNS failure', net('ENOTFOUND'), undefined],
    ['TLS', new TlsError('cert', 'DEPTH_ZERO_SELF_SIGNED_CERT'), undefined],
    ['file error', fileErr('EIO'), undefined],
    ['our own abort', Object.assign(new Error('aborted'), { name: 'AbortError' }), undefined],
  ];
  it.each(table)('%s', (_name, err, expected) => {
    expect(overloadOf(err)).toBe(expected);
  });
});

describe('Redis refusals', () => {
  it('out of memory and a missing ACL permission stop the run; other Redis errors do not', async () => {
    const { classify: c } = await import('../../src/api/classify.ts');
    const reply = (message: string) => Object.assign(new Error(message), { name: 'ReplyError' });
    expect(c(reply("OOM command not allowed when used memory > 'maxmemory'."))).toEqual({ kind: 'fatal', ambiguous: false });
    expect(c(reply('NOPERM this user has no permissions to access one of the keys used as arguments'))).toEqual({ kind: 'fatal', ambiguous: false });
    expect(c(reply('WRONGTYPE Operation against a key holding the wrong kind of value')).kind).toBe('permanent');
  });
});
