import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';
import { createLogger, scrubSecrets } from '../../src/log.ts';

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
