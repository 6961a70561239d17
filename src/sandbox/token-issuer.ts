import { randomBytes } from 'node:crypto';
import { SignJWT, jwtVerify } from 'jose';
import type { Permission } from './permissions.ts';

export interface TokenClaims {
  username: string;
  permissions: Permission[];
  /** seconds since epoch */
  exp: number;
  /** revocation generation the token was issued in */
  gen: number;
}

export type TokenCheck = { ok: true; claims: TokenClaims } | { ok: false; reason: 'missing' | 'invalid' | 'expired' | 'revoked' };

const CACHE_LIMIT = 20_000;

/**
 * Real HS256 JWTs carrying `exp`, checked against the injected clock. Revocation bumps a
 * generation counter: every token issued before it becomes invalid at once. With
 * `revokeEverySeconds` the counter also moves by itself as the clock passes each period.
 */
export class TokenIssuer {
  private readonly secret = new Uint8Array(randomBytes(32));
  private generation = 0;
  private nextAutoRevokeMs: number | undefined;
  private revokeEveryMs: number | undefined;
  /** Verified tokens, so the hot path skips the HMAC. Entries still get exp/gen checks. */
  private readonly verified = new Map<string, TokenClaims>();

  constructor(
    private readonly now: () => number,
    private readonly ttlSeconds: number,
  ) {}

  async issue(username: string, permissions: Permission[]): Promise<string> {
    this.tick();
    const nowSec = Math.floor(this.now() / 1000);
    return new SignJWT({ perms: permissions, gen: this.generation, jti: randomBytes(8).toString('hex') })
      .setProtectedHeader({ alg: 'HS256', typ: 'JWT' })
      .setSubject(username)
      .setIssuedAt(nowSec)
      .setExpirationTime(nowSec + this.ttlSeconds)
      .setIssuer('idsync-sandbox')
      .sign(this.secret);
  }

  /** Checks an `Authorization` header value. */
  async check(authorization: string | undefined): Promise<TokenCheck> {
    this.tick();
    const match = /^Bearer\s+(\S+)\s*$/i.exec(authorization ?? '');
    if (!match) return { ok: false, reason: 'missing' };
    const token = match[1]!;
    let claims = this.verified.get(token);
    if (!claims) {
      try {
        // exp is checked below against the injected clock, not by jose against the wall clock.
        const { payload } = await jwtVerify(token, this.secret, { algorithms: ['HS256'], issuer: 'idsync-sandbox', currentDate: new Date(this.now()) });
        claims = { username: String(payload.sub), permissions: (payload.perms ?? []) as Permission[], exp: Number(payload.exp), gen: Number(payload.gen) };
      } catch (err) {
        return { ok: false, reason: (err as { code?: string }).code === 'ERR_JWT_EXPIRED' ? 'expired' : 'invalid' };
      }
      if (this.verified.size >= CACHE_LIMIT) this.verified.clear();
      this.verified.set(token, claims);
    }
    if (claims.gen < this.generation) return { ok: false, reason: 'revoked' };
    if (claims.exp * 1000 <= this.now()) return { ok: false, reason: 'expired' };
    return { ok: true, claims };
  }

  /** Every outstanding token becomes invalid. */
  revokeAll(): void {
    this.generation++;
    this.verified.clear();
  }

  setRevokeEvery(seconds: number | undefined): void {
    this.revokeEveryMs = seconds && seconds > 0 ? seconds * 1000 : undefined;
    this.nextAutoRevokeMs = this.revokeEveryMs ? this.now() + this.revokeEveryMs : undefined;
  }

  private tick(): void {
    if (this.revokeEveryMs === undefined || this.nextAutoRevokeMs === undefined) return;
    const now = this.now();
    if (now < this.nextAutoRevokeMs) return;
    this.revokeAll();
    const periods = Math.floor((now - this.nextAutoRevokeMs) / this.revokeEveryMs) + 1;
    this.nextAutoRevokeMs += periods * this.revokeEveryMs;
  }
}
