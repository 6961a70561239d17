import { hostname } from 'node:os';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { NetworkError } from '../../src/errors.ts';
import { childLogger, createLogger, scrubSecrets } from '../../src/log.ts';
import { duplicateKeys } from '../helpers/log-lines.ts';

function capture() {
  const lines: string[] = [];
  const stream = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  return { lines, stream, text: () => lines.join('') };
}

const PASSWORD = 'Pa55-word-never-logged';
const JWT = 'eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJtaWdyYXRvciIsImV4cCI6OTk5OTk5OTk5OX0.c2lnbmF0dXJlLXNpZw';

describe('logger redaction', () => {
  it('never prints a password or token put into config, headers or messages', () => {
    const out = capture();
    const log = createLogger({ level: 'trace', destination: out.stream, now: () => 0 });
    const config = loadConfig({ env: { IDSYNC_PASSWORD: PASSWORD, IDSYNC_API_URL: 'https://x.example/identities' } });
    log.info({ config }, 'loaded config');
    log.debug({ headers: { authorization: `Bearer ${JWT}` } }, 'request');
    log.debug({ req: { headers: { authorization: `Bearer ${JWT}` } } }, 'nested request');
    log.debug({ token: JWT, password: PASSWORD }, 'plain fields');
    log.warn(`server said: token ${JWT} is invalid`);
    log.error({ err: new Error(`401 for Authorization: Bearer ${JWT}`) }, 'failed');
    log.child({ runId: 'r1' }).info({ auth: { token: JWT } }, 'child');
    const text = out.text();
    expect(text).not.toContain(PASSWORD);
    expect(text).not.toContain(JWT);
    expect(text).not.toContain('c2lnbmF0dXJlLXNpZw');
    expect(text).toContain('[redacted]');
    expect(text).toContain('https://x.example/identities');
    expect(out.lines).toHaveLength(7);
  });

  it('uses the injected clock', () => {
    const out = capture();
    createLogger({ destination: out.stream, now: () => 1234 }).info('x');
    expect(JSON.parse(out.lines[0]!).time).toBe(1234);
  });

  it('scrubSecrets leaves ordinary text alone', () => {
    expect(scrubSecrets('POST /api/v1/people/fileDocuments/upload answered 500')).toBe('POST /api/v1/people/fileDocuments/upload answered 500');
    expect(scrubSecrets(`Bearer ${JWT}`)).toBe('Bearer [redacted]');
  });
});

describe('calm, machine-readable lines (#16)', () => {
  const failure = () => {
    const cause = Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' });
    return new NetworkError({ method: 'POST', path: '/api/v1/people/fileDocuments/upload', sysCode: 'ECONNRESET', requestSent: true, cause });
  };

  it('carries hostname and pid on every line', () => {
    const out = capture();
    const log = createLogger({ destination: out.stream });
    log.info('a');
    log.child({ runId: 'r' }).warn('b');
    for (const line of out.lines) expect(JSON.parse(line)).toMatchObject({ hostname: hostname(), pid: process.pid });
  });

  it('below debug, an error is its class, code and message with its causes: no stack', () => {
    const out = capture();
    createLogger({ level: 'info', destination: out.stream }).warn({ err: failure() }, 'failed');
    const entry = JSON.parse(out.lines[0]!) as { err: Record<string, unknown> };
    expect(entry.err).toEqual({ type: 'NetworkError', message: 'POST /api/v1/people/fileDocuments/upload failed: ECONNRESET: socket hang up', code: 'E_NETWORK', method: 'POST', path: '/api/v1/people/fileDocuments/upload', sysCode: 'ECONNRESET', requestSent: true });
    expect(out.text()).not.toMatch(/stack|\bat /);
  });

  it('at debug, errors keep their stack', () => {
    const out = capture();
    createLogger({ level: 'debug', destination: out.stream }).debug({ err: failure() }, 'failed');
    expect((JSON.parse(out.lines[0]!) as { err: { stack: string } }).err.stack).toMatch(/NetworkError: POST .*\n\s+at /);
  });

  it('childLogger never binds a key twice', () => {
    const out = capture();
    const session = createLogger({ destination: out.stream }).child({ command: 'import' }).child({ runId: 'import-1' });
    childLogger(session, { runId: 'import-1', jobId: 'r7', row: 7 }).info('job line');
    expect(duplicateKeys(out.lines[0]!)).toEqual([]);
    expect(JSON.parse(out.lines[0]!)).toMatchObject({ runId: 'import-1', jobId: 'r7', row: 7, command: 'import' });
    // What pino does without it: the key twice in one line.
    session.child({ runId: 'import-1' }).info('twice');
    expect(duplicateKeys(out.lines[1]!)).toEqual(['runId']);
  });

  it('pretty lines are one line per event, also with an error', () => {
    const out = capture();
    const log = createLogger({ level: 'info', format: 'pretty', destination: out.stream });
    log.warn({ err: failure(), row: 3, nested: { a: 1 } }, 'job failed for good');
    log.info('next');
    const text = out.text();
    expect(text.split('\n').filter(Boolean)).toHaveLength(2);
    expect(text).toContain('job failed for good');
    expect(text).toContain('ECONNRESET');
    expect(text).not.toMatch(/\bat /);
  });
});
