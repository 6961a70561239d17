/**
 * What makes an API base URL usable (README, "Configuration"): http(s), no credentials (they
 * come from --username and IDSYNC_PASSWORD), no query or fragment (every API path is appended to
 * it). The one check, used by the settings and by the API client.
 */
export function apiUrlProblem(text: string): string | undefined {
  let u: URL;
  try {
    u = new URL(text);
  } catch {
    return 'must be an http:// or https:// URL, e.g. https://acme.econnectcloud.com/identities';
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return 'must be an http:// or https:// URL, e.g. https://acme.econnectcloud.com/identities';
  if (u.username || u.password) return 'must not carry credentials; use --username and IDSYNC_PASSWORD';
  if (u.search || u.hash) return 'must not have a query string or fragment';
  return undefined;
}
