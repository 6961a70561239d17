import { describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/load.ts';

/**
 * An invalid setting's error echoes the value read ("(got …)"), but never a URL's password:
 * stderr goes to journald and CI logs.
 */
function messageOf(fn: () => unknown): string {
  try {
    fn();
  } catch (err) {
    return String((err as Error).message);
  }
  throw new Error('expected a ConfigError');
}

describe('a refused URL setting does not echo its password', () => {
  it('an API URL refused for carrying credentials does not print them', () => {
    const msg = messageOf(() => loadConfig({ env: { HOME: '/tmp', IDSYNC_API_URL: 'https://bob:Hunter2Secret@acme.example/identities' }, cwd: '/tmp' }));
    expect(msg).toMatch(/must not carry credentials/);
    expect(msg).not.toContain('Hunter2Secret');
  });

  it('a Redis URL with a mistyped scheme does not print its password', () => {
    const msg = messageOf(() => loadConfig({ flags: { redisUrl: 'redis:/:Hunter2Secret@10.0.0.7:6379' }, env: { HOME: '/tmp' }, cwd: '/tmp' }));
    expect(msg).toMatch(/--redis-url must be/);
    expect(msg).not.toContain('Hunter2Secret');
  });
});
