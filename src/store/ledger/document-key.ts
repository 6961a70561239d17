import { hash } from 'node:crypto';

/** The bytes of a document's key in segment files: the first 16 bytes of sha256("personId/publicId"). */
export const KEY_BYTES = 16;

export function ledgerKey(personId: string, publicId: string): string {
  return `${personId}/${publicId}`;
}

/**
 * A fixed-size, uniformly spread key: segment files sort and bucket by it. 128 bits keep the
 * chance of two of 10^8 documents sharing one below 10^-22.
 */
export function documentKey(key: string): Buffer {
  // The one-shot form: a Hash object per key cost twice as much (folds hash every document).
  return hash('sha256', key, 'buffer').subarray(0, KEY_BYTES);
}

/** Compares two keys stored at offsets of two buffers, without slicing. */
export function compareKeys(a: Buffer, aAt: number, b: Buffer, bAt: number): number {
  for (let i = 0; i < KEY_BYTES; i += 4) {
    const x = a.readUInt32BE(aAt + i);
    const y = b.readUInt32BE(bAt + i);
    if (x !== y) return x < y ? -1 : 1;
  }
  return 0;
}
