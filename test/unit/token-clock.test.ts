import { UnsecuredJWT } from 'jose';
import { describe, expect, it } from 'vitest';
import { localExpiry, TokenSource, type IssuedToken } from '../../src/api/token-source.ts';
import { silentLogger } from '../../src/log.ts';
import { ManualClock } from '../../src/pacing/clock.ts';

const HOUR = 3_600_000;

function jwt(claims: { iat?: number; exp?: number }): string {
  const t = new UnsecuredJWT({});
  if (claims.iat !== undefined) t.setIssuedAt(claims.iat);
  if (claims.exp !== undefined) t.setExpirationTime(claims.exp);
  return t.encode();
}

/** A server whose clock is `skewMs` off ours, issuing `lifetimeS` tokens with its Date header. */
function skewedServer(clock: ManualClock, skewMs: number, lifetimeS: number, options: { iat?: boolean; date?: boolean } = {}) {
  const calls = { login: 0, renew: 0 };
  const issue = (): IssuedToken => {
    const serverNow = clock.now() + skewMs;
    const sec = Math.floor(serverNow / 1000);
    const token = jwt({ ...(options.iat === false ? {} : { iat: sec }), exp: sec + lifetimeS });
    return options.date === false ? { token } : { token, serverDateMs: sec * 1000 };
  };
  return {
    calls,
    exchange: {
      login: async () => (calls.login++, issue()),
      renew: async () => (calls.renew++, issue()),
    },
  };
}

describe('token expiry by the server clock (issue #15)', () => {
  it('a server 5 h behind with 1 h tokens: one login for a steady stream of requests, then a renewal, never a login storm', async () => {
    const clock = new ManualClock(1_800_000_000_000);
    const server = skewedServer(clock, -5 * HOUR, 3600);
    const source = new TokenSource({ exchange: server.exchange, clock, log: silentLogger() });
    for (let i = 0; i < 200; i++) {
      await source.get();
      clock.advance(15_000); // 200 requests over 50 minutes
    }
    expect(server.calls).toEqual({ login: 1, renew: 0 });
    clock.advance(5 * 60_000); // 55 min: inside the renew-ahead window (10 % = 6 min)
    await source.get();
    expect(server.calls).toEqual({ login: 1, renew: 1 });
  });

  it('the same with a server 5 h ahead, and with no iat (Date alone)', async () => {
    for (const [skew, iat] of [
      [5 * HOUR, true],
      [-5 * HOUR, false],
    ] as const) {
      const clock = new ManualClock(1_800_000_000_000);
      const server = skewedServer(clock, skew, 3600, { iat });
      const source = new TokenSource({ exchange: server.exchange, clock, log: silentLogger() });
      for (let i = 0; i < 100; i++) {
        await source.get();
        clock.advance(30_000);
      }
      expect(server.calls).toEqual({ login: 1, renew: 0 });
    }
  });

  it('localExpiry: the earlier of Date→exp and iat→exp on our clock; exp on our clock only without both', () => {
    const now = 1_800_000_000_000;
    const serverNow = now - 5 * HOUR;
    const sec = serverNow / 1000;
    // Fresh token: both say an hour from now.
    expect(localExpiry(jwt({ iat: sec, exp: sec + 3600 }), now, serverNow)).toBe(now + HOUR);
    // A token issued 55 min ago on the server (renewToken gave the old one back): its Date says 5 min left.
    expect(localExpiry(jwt({ iat: sec - 3300, exp: sec + 300 }), now, serverNow)).toBe(now + 300_000);
    // No Date: the lifetime from iat.
    expect(localExpiry(jwt({ iat: sec, exp: sec + 3600 }), now)).toBe(now + HOUR);
    // Neither: exp read on our own clock (long past here).
    expect(localExpiry(jwt({ exp: sec + 3600 }), now)).toBe((sec + 3600) * 1000);
    expect(localExpiry('not a jwt', now, serverNow)).toBeUndefined();
  });
});
