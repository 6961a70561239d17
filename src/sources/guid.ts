const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(value: string): boolean {
  return GUID.test(value);
}

/** The API's GUIDs are case-insensitive; lower case keeps ledger keys and file names stable. */
export function normalizeGuid(value: string): string {
  return value.trim().toLowerCase();
}
