/**
 * Tokens out of free text (error bodies, messages). Apart from log.ts so that what prints an
 * error without logging (the CLI's last word, `--help`'s path) does not load pino.
 */

/** A JWT (three base64url segments, the first two starting with `eyJ`), or a bearer credential. */
const TOKEN_PATTERN = /\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*|\b(Bearer\s+)[A-Za-z0-9._~+/=-]{8,}/g;

/** Removes anything that looks like a token from free text (error bodies, messages). */
export function scrubSecrets(text: string): string {
  return text.replace(TOKEN_PATTERN, (_m, bearer: string | undefined) => (bearer ? `${bearer}[redacted]` : '[redacted-jwt]'));
}
