/**
 * Deterministic numbers: a seeded PRNG for fault injection (reproducible rehearsals) and a
 * string hash for data that must be the same on every run (photos, detections, people).
 */

/** mulberry32: tiny, fast, good enough to decide which request fails. Returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** FNV-1a, 32 bits: a stable hash of a string. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** A GUID derived from a string, stable across runs (version nibble 4, variant 10xx so it looks like any GUID). */
export function derivedGuid(text: string): string {
  const next = mulberry32(hash32(text));
  const hex: string[] = [];
  for (let i = 0; i < 32; i++) hex.push(Math.floor(next() * 16).toString(16));
  hex[12] = '4';
  hex[16] = ((parseInt(hex[16] ?? '0', 16) & 0x3) | 0x8).toString(16);
  // Never derive an id in the "missing" range (00000000-...): it would 404 by design.
  if (hex.slice(0, 8).every((c) => c === '0')) hex[0] = '1';
  const s = hex.join('');
  return `${s.slice(0, 8)}-${s.slice(8, 12)}-${s.slice(12, 16)}-${s.slice(16, 20)}-${s.slice(20)}`;
}
