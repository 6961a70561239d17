const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isGuid(text: string): boolean {
  return GUID.test(text);
}

/**
 * Ids starting with 00000000 stand for "does not exist" everywhere in the sandbox, so tests
 * and rehearsals can ask for a missing face, person or photo without seeding anything.
 */
export function isMissingId(id: string): boolean {
  return id.startsWith('00000000');
}

/** A GUID the sandbox serves data for: well-formed and not in the missing range. */
export function isKnownGuid(id: string): boolean {
  return isGuid(id) && !isMissingId(id);
}
