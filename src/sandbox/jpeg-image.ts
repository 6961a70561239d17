import { hash32 } from './seeded-random.ts';

/**
 * Valid baseline JPEGs without an image library: one 8x8 grey block whose shade is derived
 * from the label, plus a COM segment carrying the label itself. Bytes are deterministic and
 * distinct per label, and every decoder accepts them.
 *
 * Layout: SOI, APP0 (JFIF), COM, DQT (all ones), SOF0 (8x8, 1 component), DHT DC (one code:
 * category 8), DHT AC (one code: EOB), SOS, 2 bytes of entropy data, EOI.
 */
const HEAD = Buffer.from([
  0xff, 0xd8,
  0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00,
]);

const TABLES = Buffer.concat([
  Buffer.from([0xff, 0xdb, 0x00, 0x43, 0x00]),
  Buffer.alloc(64, 1),
  Buffer.from([0xff, 0xc0, 0x00, 0x0b, 0x08, 0x00, 0x08, 0x00, 0x08, 0x01, 0x01, 0x11, 0x00]),
  // DC table 0: a single 1-bit code "0" for category 8.
  Buffer.from([0xff, 0xc4, 0x00, 0x14, 0x00, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x08]),
  // AC table 0: a single 1-bit code "0" for EOB (0x00).
  Buffer.from([0xff, 0xc4, 0x00, 0x14, 0x10, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x00]),
  Buffer.from([0xff, 0xda, 0x00, 0x08, 0x01, 0x01, 0x00, 0x00, 0x3f, 0x00]),
]);

const EOI = Buffer.from([0xff, 0xd9]);

/** A JPEG whose bytes depend only on `label` (keep it under ~60 KB: it goes into a COM segment). */
export function jpegFor(label: string): Buffer {
  const text = Buffer.from(label, 'utf8').subarray(0, 65000);
  const com = Buffer.alloc(4);
  com.writeUInt16BE(0xfffe, 0);
  com.writeUInt16BE(text.length + 2, 2);
  // DC value 128..255 (category 8, positive): the block's grey level, 144..159.
  const dc = 128 + (hash32(label) & 0x7f);
  // Bits: "0" (DC code) + 8 bits of dc + "0" (EOB), then padded with ones. No byte can be 0xFF.
  const bits = (0 << 15) | (dc << 7) | (0 << 6) | 0x3f;
  const scan = Buffer.from([(bits >> 8) & 0xff, bits & 0xff]);
  return Buffer.concat([HEAD, com, text, TABLES, scan, EOI]);
}
