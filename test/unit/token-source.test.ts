import { describe, expect, it } from 'vitest';
import { UnsecuredJWT } from 'jose';
import { TokenSource, type TokenExchange } from '../../src/api/token-source.ts';
import { AuthRefusedError, HttpStatusError, NetworkError } from '../../src/errors.ts';
import { ManualClock } from '../../src/pacing/clock.ts';
import { silentLogger } from '../../src/log.ts';

/** Tokens whose iat/exp follow the manual clock; the exchange counts calls and can be made to fail. */
function setup(lifetimeS: number | undefined = 600) {
  const clock = new ManualClock(1_800_000_000_000);
  let n = 0;
  const make = () => {
    const now = Math.floor(clock.now() / 1000);
    const jwt = new UnsecuredJWT({ n: ++n }).setIssuedAt(now);
    if (lifetimeS !== undefined) jwt.setExpirationTime(now + lifetimeS);
    return jwt.encode();
  };
  const calls = { login: 0, renew: 0 };
  const behaviour: { login?: () => Promise<string>; renew?: (t: string) => Promise<string> } = {};
  const exchange: TokenExchange = {
    async login() {
      calls.login++;
      await new Promise((r) => setTimeout(r, 5));
      return behaviour.login ? behaviour.login() : make();
    },
    async renew(token) {
      calls.renew++;
      await new Promise((r) => setTimeout(r, 5));
      return behaviour.renew ? behaviour.renew(token) : make();
    },
  };
  const source = new TokenSource({ exchange, clock, log: silentLogger() });
  return { clock, calls, behaviour, source };
}

describe('TokenSource', () => {
  it('logs in once for 100 concurrent callers', async () => {
    const { source, calls } = setup();
    const tokens = await Promise.all(Array.from({ length: 100 }, () => source.get()));
    expect(new Set(tokens).size).toBe(1);
    expect(calls).toEqual({ login: 1, renew: 0 });
  });

  it('renews ahead of expiry (10 % = 60 s before a 10 min token), once for many callers', async () => {
    const { source, calls, clock } = setup(600);
    const first = await source.get();
    clock.advance(539_000);
    expect(await source.get()).toBe(first);
    clock.advance(2_000);
    const renewed = await Promise.all(Array.from({ length: 50 }, () => source.get()));
    expect(new Set(renewed).size).toBe(1);
    expect(renewed[0]).not.toBe(first);
    expect(calls).toEqual({ login: 1, renew: 1 });
  });

  it('short tokens renew at half their lifetime, not 30 s ahead', async () => {
    const { source, calls, clock } = setup(2);
    await source.get();
    clock.advance(900);
    await source.get();
    expect(calls.renew).toBe(0);
    clock.advance(200);
    await source.get();
    expect(calls.renew).toBe(1);
  });

  it('logs in again once the token has expired (renewal cannot help then)', async () => {
    const { source, calls, clock } = setup(60);
    await source.get();
    clock.advance(61_000);
    await Promise.all(Array.from({ length: 100 }, () => source.get()));
    expect(calls).toEqual({ login: 2, renew: 0 });
  });

  it('100 callers rejected with the same token share exactly one refresh', async () => {
    const { source, calls, behaviour } = setup();
    const token = await source.get();
    behaviour.renew = () => Promise.reject(new HttpStatusError({ method: 'GET', path: '/api/v1/renewToken', status: 401 }));
    const fresh = await Promise.all(Array.from({ length: 100 }, () => source.refreshAfterRejection(token)));
    expect(new Set(fresh).size).toBe(1);
    expect(fresh[0]).not.toBe(token);
    expect(calls).toEqual({ login: 2, renew: 1 });
    expect(source.stats()).toEqual({ logins: 2, renewals: 0, refreshesOn401: 1 });
    // A late caller with the old token gets the new one without another refresh.
    expect(await source.refreshAfterRejection(token)).toBe(fresh[0]);
    expect(calls).toEqual({ login: 2, renew: 1 });
  });

  it('refused credentials are fatal and remembered: no retry storm', async () => {
    const { source, calls, behaviour } = setup();
    behaviour.login = () => Promise.reject(new AuthRefusedError('refused', 401));
    const results = await Promise.allSettled(Array.from({ length: 20 }, () => source.get()));
    expect(results.every((r) => r.status === 'rejected' && r.reason instanceof AuthRefusedError)).toBe(true);
    await expect(source.get()).rejects.toBeInstanceOf(AuthRefusedError);
    expect(calls.login).toBe(1);
  });

  it('keeps the current token when a proactive renewal fails for a passing reason', async () => {
    const { source, calls, clock, behaviour } = setup(600);
    const first = await source.get();
    clock.advance(580_000);
    behaviour.renew = () => Promise.reject(new NetworkError({ method: 'GET', path: '/r', sysCode: 'ECONNRESET', requestSent: true }));
    expect(await source.get()).toBe(first);
    expect(await source.get()).toBe(first); // no second attempt within 5 s
    expect(calls.renew).toBe(1);
    delete behaviour.renew;
    clock.advance(5_000);
    expect(await source.get()).not.toBe(first);
    expect(calls.renew).toBe(2);
  });

  it('works when exp cannot be read: never renews on its own, refreshes on 401', async () => {
    const { source, calls, clock, behaviour } = setup();
    behaviour.login = async () => 'not-a-jwt';
    const t = await source.get();
    clock.advance(86_400_000);
    expect(await source.get()).toBe(t);
    expect(calls).toEqual({ login: 1, renew: 0 });
    behaviour.renew = async () => 'renewed-opaque';
    expect(await source.refreshAfterRejection(t)).toBe('renewed-opaque');
  });

  it('one caller aborting does not fail the shared login', async () => {
    const { source } = setup();
    const controller = new AbortController();
    const aborted = source.get(controller.signal);
    const other = source.get();
    controller.abort(new Error('stop'));
    await expect(aborted).rejects.toThrow('stop');
    await expect(other).resolves.toMatch(/\./);
  });
});
