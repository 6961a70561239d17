import { decodeJwt } from 'jose';
import { AuthRefusedError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Clock } from '../pacing/clock.ts';
import { classify } from './classify.ts';

/** A token as issued, with the server's clock at that moment when its answer said (`Date`). */
export interface IssuedToken {
  token: string;
  /** Epoch ms of the answer's `Date` header (whole seconds), when it had a readable one. */
  serverDateMs?: number;
}

/** The two calls a TokenSource needs; the client supplies them (they do the HTTP). */
export interface TokenExchange {
  /** POST authenticate with the password; throws AuthRefusedError when the server says no. */
  login(): Promise<string | IssuedToken>;
  /** GET renewToken with the current, still-valid token. */
  renew(token: string): Promise<string | IssuedToken>;
}

export interface TokenSourceOptions {
  exchange: TokenExchange;
  clock: Clock;
  log: Logger;
  /** Renew this long before expiry; default min(max(30 s, 10 % of lifetime), 50 % of lifetime). */
  renewAheadMs?: number;
}

interface Held {
  token: string;
  /** Local epoch ms when the token stops working, or undefined when `exp` could not be read. */
  expiresAt: number | undefined;
  /** Local epoch ms from which a renewal is due. */
  renewAt: number | undefined;
}

export interface TokenStats {
  logins: number;
  renewals: number;
  refreshesOn401: number;
}

/** Pause before another proactive renewal after one failed for a passing reason (network, 5xx). */
const RENEW_RETRY_MS = 5_000;

/**
 * The one holder of the API token for a process (vendor guide, "Authentication": log in once,
 * exchange the still-valid token via renewToken before it expires, log in again once it has
 * expired). Every operation is single-flight: a hundred callers that find the token due share
 * one login or renewal. No timers: renewal happens on demand, before the call that needs it.
 */
export class TokenSource {
  readonly #exchange: TokenExchange;
  readonly #clock: Clock;
  readonly #log: Logger;
  readonly #renewAheadMs: number | undefined;
  #held: Held | undefined;
  #flight: Promise<string> | undefined;
  #refused: AuthRefusedError | undefined;
  readonly #stats: TokenStats = { logins: 0, renewals: 0, refreshesOn401: 0 };

  constructor(options: TokenSourceOptions) {
    this.#exchange = options.exchange;
    this.#clock = options.clock;
    this.#log = options.log;
    this.#renewAheadMs = options.renewAheadMs;
  }

  stats(): TokenStats {
    return { ...this.#stats };
  }

  /**
   * Whether the login holds, without a request (health checks): refused credentials are not; an
   * expired token is, since the next request logs in again with the password.
   */
  state(): { ok: boolean; detail: string } {
    if (this.#refused) return { ok: false, detail: this.#refused.message };
    const held = this.#held;
    if (!held) return { ok: false, detail: 'not logged in (yet)' };
    if (held.expiresAt === undefined) return { ok: true, detail: 'logged in (token expiry unreadable)' };
    const left = held.expiresAt - this.#clock.now();
    return { ok: true, detail: left > 0 ? `logged in; token valid for ${Math.round(left / 1000)} s more` : 'logged in; the token expired and is renewed by the next request' };
  }

  /** A token fit to send now: logs in or renews first when needed. */
  async get(signal?: AbortSignal): Promise<string> {
    if (this.#refused) throw this.#refused;
    const held = this.#held;
    const now = this.#clock.now();
    if (held && !this.#flight && (held.renewAt === undefined || now < held.renewAt)) return held.token;
    return this.#join(signal, () => this.#refresh(false));
  }

  /** Forces a fresh login now (used at start to verify the credentials). */
  async login(signal?: AbortSignal): Promise<string> {
    if (this.#refused) throw this.#refused;
    return this.#join(signal, () => this.#login());
  }

  /**
   * The server answered 401 to `rejected`. The first caller refreshes (renewal, else a new
   * login); later callers holding the same rejected token share that refresh or, if it is
   * already done, get the new token at once.
   */
  async refreshAfterRejection(rejected: string, signal?: AbortSignal): Promise<string> {
    if (this.#refused) throw this.#refused;
    if (this.#held && this.#held.token !== rejected && !this.#flight) return this.#held.token;
    return this.#join(signal, () => {
      if (this.#held && this.#held.token !== rejected) return Promise.resolve(this.#held.token);
      this.#stats.refreshesOn401++;
      return this.#refresh(true);
    });
  }

  /** Runs `start` unless a flight is already out, and waits for it (or the caller's own abort). */
  #join(signal: AbortSignal | undefined, start: () => Promise<string>): Promise<string> {
    if (!this.#flight) {
      // The shared flight never takes a caller's signal: one caller giving up must not fail the rest.
      const flight = start().finally(() => {
        if (this.#flight === flight) this.#flight = undefined;
      });
      this.#flight = flight;
    }
    const flight = this.#flight;
    if (!signal) return flight;
    if (signal.aborted) return Promise.reject(signal.reason);
    return new Promise<string>((resolve, reject) => {
      const onAbort = () => reject(signal.reason);
      signal.addEventListener('abort', onAbort, { once: true });
      flight.then(
        (t) => {
          signal.removeEventListener('abort', onAbort);
          resolve(t);
        },
        (e: unknown) => {
          signal.removeEventListener('abort', onAbort);
          reject(e);
        },
      );
    });
  }

  async #refresh(rejectedByServer: boolean): Promise<string> {
    const held = this.#held;
    const now = this.#clock.now();
    const expired = held?.expiresAt !== undefined && now >= held.expiresAt;
    if (!held || expired) return this.#login();
    try {
      const issued = await this.#exchange.renew(held.token);
      this.#stats.renewals++;
      return this.#hold(issued, 'renewed');
    } catch (err) {
      const kind = classify(err).kind;
      // A rejected or revoked token cannot be renewed: log in again with the password.
      if (rejectedByServer || kind === 'refresh-auth' || kind === 'permanent') {
        this.#log.debug({ code: (err as { code?: string }).code }, 'token renewal refused; logging in again');
        return this.#login();
      }
      // A passing failure (network, 5xx): the current token still works until it expires.
      this.#log.warn({ code: (err as { code?: string }).code }, 'token renewal failed; keeping the current token for now');
      held.renewAt = Math.min(now + RENEW_RETRY_MS, held.expiresAt ?? Infinity);
      return held.token;
    }
  }

  async #login(): Promise<string> {
    try {
      const issued = await this.#exchange.login();
      this.#stats.logins++;
      return this.#hold(issued, 'logged in');
    } catch (err) {
      if (err instanceof AuthRefusedError) {
        // Remembered: every later call fails at once instead of hammering authenticate.
        this.#refused = err;
        this.#held = undefined;
      }
      throw err;
    }
  }

  #hold(issued: string | IssuedToken, what: string): string {
    const { token, serverDateMs } = typeof issued === 'string' ? { token: issued, serverDateMs: undefined } : issued;
    const now = this.#clock.now();
    const expiresAt = localExpiry(token, now, serverDateMs);
    let renewAt: number | undefined;
    if (expiresAt !== undefined) {
      const lifetime = Math.max(0, expiresAt - now);
      const ahead = this.#renewAheadMs ?? Math.min(Math.max(30_000, lifetime * 0.1), lifetime * 0.5);
      renewAt = expiresAt - Math.min(ahead, lifetime);
    }
    this.#held = { token, expiresAt, renewAt };
    if (expiresAt === undefined) this.#log.debug(`${what}; token expiry unreadable, relying on 401 answers`);
    else this.#log.debug({ validForMs: expiresAt - now, renewInMs: (renewAt ?? now) - now }, what);
    return token;
  }
}

/**
 * When the token stops working, on the local clock. `exp` is a time on the SERVER's clock, which
 * may be hours off ours (issue #15: a server behind by more than the token's lifetime made every
 * token look expired on arrival, and idsync logged in every few requests). So the remaining life
 * is measured on the server's clock, from its `Date` at issue to `exp`, and the lifetime from
 * `iat` to `exp`; each is added to our own clock and the earlier one wins. Only without either
 * is `exp` read on the local clock.
 */
export function localExpiry(token: string, now: number, serverDateMs?: number): number | undefined {
  let exp: unknown;
  let iat: unknown;
  try {
    ({ exp, iat } = decodeJwt(token));
  } catch {
    return undefined;
  }
  if (typeof exp !== 'number' || !Number.isFinite(exp)) return undefined;
  const expMs = exp * 1000;
  const estimates: number[] = [];
  if (serverDateMs !== undefined && Number.isFinite(serverDateMs)) estimates.push(now + (expMs - serverDateMs));
  if (typeof iat === 'number' && Number.isFinite(iat) && iat <= exp) estimates.push(now + (exp - iat) * 1000);
  return estimates.length > 0 ? Math.min(...estimates) : expMs;
}
