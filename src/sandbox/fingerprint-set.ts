/**
 * A set of 64-bit fingerprints in one typed array (open addressing, linear probing): at most 16
 * bytes a member (the table doubles at half full) and no object per member for the GC to trace,
 * so a sandbox that has received millions of uploads stays small and quick.
 */
export class FingerprintSet {
  /** Pairs of 32-bit halves; (0, 0) marks an empty slot. */
  #slots: Uint32Array;
  #mask: number;
  #size = 0;

  constructor(initialSlots = 1024) {
    let slots = 16;
    while (slots < initialSlots) slots *= 2;
    this.#slots = new Uint32Array(2 * slots);
    this.#mask = slots - 1;
  }

  get size(): number {
    return this.#size;
  }

  /**
   * Adds the first 8 bytes of `fingerprint`; false when they were there already. (A fingerprint of
   * eight zero bytes is taken for 00…01: sha256-derived ones collide that way with a chance of 2^-63.)
   */
  add(fingerprint: Uint8Array): boolean {
    const view = new DataView(fingerprint.buffer, fingerprint.byteOffset, 8);
    const hi = view.getUint32(0);
    const lo = hi === 0 && view.getUint32(4) === 0 ? 1 : view.getUint32(4);
    if (!this.#insert(hi, lo)) return false;
    this.#size++;
    if (this.#size * 2 > this.#mask + 1) this.#grow();
    return true;
  }

  #insert(hi: number, lo: number): boolean {
    const slots = this.#slots;
    for (let i = lo & this.#mask; ; i = (i + 1) & this.#mask) {
      const h = slots[2 * i]!;
      const l = slots[2 * i + 1]!;
      if (h === 0 && l === 0) {
        slots[2 * i] = hi;
        slots[2 * i + 1] = lo;
        return true;
      }
      if (h === hi && l === lo) return false;
    }
  }

  #grow(): void {
    const old = this.#slots;
    this.#slots = new Uint32Array(old.length * 2);
    this.#mask = old.length - 1;
    for (let i = 0; i < old.length; i += 2) if (old[i] !== 0 || old[i + 1] !== 0) this.#insert(old[i]!, old[i + 1]!);
  }
}
