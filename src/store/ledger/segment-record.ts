import { KEY_BYTES } from './document-key.ts';
import { textDigest, digestForm, type DocState } from './document-state.ts';

/**
 * One document in a segment file, 68 bytes:
 *
 *   0  key         16  first 16 bytes of sha256("personId/publicId"); records are sorted by it
 *   16 flags        1  bits 0-1 state (0 tombstone, 1 started, 2 stored),
 *                      bits 2-3 sha256 form, bits 4-5 attempt form (0 none, 1 binary, 2 text, 3 digest)
 *   17 sha length   1  bytes of a text sha256
 *   18 att length   1  bytes of a text attempt
 *   19 reserved     1
 *   20 sha256      32  the content's sha256 (binary when it is 64 lowercase hex digits, else text)
 *   52 attempt     16  the start's attempt (binary when a lowercase UUID, else text up to 16 bytes)
 *
 * A tombstone hides the document in older segments (an abort took its start back).
 */
export const RECORD_BYTES = 68;

const STATE_CODES = { started: 1, stored: 2 } as const;
const FORM_NONE = 0;
const FORM_BINARY = 1;
const FORM_TEXT = 2;
const FORM_DIGEST = 3;
const SHA_AT = 20;
const ATTEMPT_AT = 52;
const HEX64 = /^[0-9a-f]{64}$/;
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** Writes key and state (undefined: a tombstone) into `out` at `at`. */
export function encodeRecord(key: Buffer, state: DocState | undefined, out: Buffer, at: number): void {
  out.fill(0, at, at + RECORD_BYTES);
  key.copy(out, at, 0, KEY_BYTES);
  if (!state) return;
  let flags: number = STATE_CODES[state.state];
  if (state.sha256 !== undefined) {
    const form = encodeText(state.sha256, HEX64, 32, out, at + SHA_AT, (s, to) => out.write(s, to, 'hex'));
    flags |= form.form << 2;
    out[at + 17] = form.length;
  }
  if (state.attempt !== undefined) {
    const form = encodeText(state.attempt, UUID, 16, out, at + ATTEMPT_AT, (s, to) => {
      // 8-4-4-4-12 hex digits: the groups written one after another, 16 bytes.
      out.write(s.slice(0, 8), to, 'hex');
      out.write(s.slice(9, 13), to + 4, 'hex');
      out.write(s.slice(14, 18), to + 6, 'hex');
      out.write(s.slice(19, 23), to + 8, 'hex');
      out.write(s.slice(24), to + 10, 'hex');
    });
    flags |= form.form << 4;
    out[at + 18] = form.length;
  }
  out[at + 16] = flags;
}

function encodeText(value: string, binaryForm: RegExp, room: number, out: Buffer, at: number, writeBinary: (s: string, at: number) => void): { form: number; length: number } {
  if (binaryForm.test(value)) {
    writeBinary(value, at);
    return { form: FORM_BINARY, length: 0 };
  }
  const text = Buffer.from(value, 'utf8');
  if (text.length <= room) {
    text.copy(out, at);
    return { form: FORM_TEXT, length: text.length };
  }
  textDigest(value).copy(out, at);
  return { form: FORM_DIGEST, length: 0 };
}

/** The state of the record at `at`; undefined for a tombstone. */
export function decodeRecord(buffer: Buffer, at: number): DocState | undefined {
  const flags = buffer[at + 16]!;
  const code = flags & 3;
  if (code === 0) return undefined;
  const state: DocState = { state: code === STATE_CODES.stored ? 'stored' : 'started' };
  const sha256 = decodeText((flags >> 2) & 3, buffer, at + SHA_AT, 32, buffer[at + 17]!, (b) => b.toString('hex'));
  if (sha256 !== undefined) state.sha256 = sha256;
  const attempt = decodeText((flags >> 4) & 3, buffer, at + ATTEMPT_AT, 16, buffer[at + 18]!, (b) => {
    const hex = b.toString('hex');
    return `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`;
  });
  if (attempt !== undefined) state.attempt = attempt;
  return state;
}

function decodeText(form: number, buffer: Buffer, at: number, room: number, length: number, fromBinary: (b: Buffer) => string): string | undefined {
  switch (form) {
    case FORM_NONE:
      return undefined;
    case FORM_BINARY:
      return fromBinary(buffer.subarray(at, at + room));
    case FORM_TEXT:
      return buffer.toString('utf8', at, at + length);
    default:
      return digestForm(buffer.subarray(at, at + 16));
  }
}

/** Whether the record at `at` is a tombstone. */
export function isTombstone(buffer: Buffer, at: number): boolean {
  return (buffer[at + 16]! & 3) === 0;
}
