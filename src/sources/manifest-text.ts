import { isUtf8 } from 'node:buffer';
import iconv from 'iconv-lite';
import { ManifestError } from '../errors.ts';

/** How a manifest's bytes become text: strict UTF-8 unless an encoding is named (--encoding). */
export interface ManifestTextOptions {
  /** An iconv-lite encoding name (latin1, cp1252, utf-16le, …); absent or UTF-8 = strict UTF-8. */
  encoding?: string | undefined;
}

const REPLACEMENT = '\uFFFD';
const REPLACEMENT_UTF8 = Buffer.from(REPLACEMENT, 'utf8');
const NEWLINE = 0x0a;

/** Whether iconv-lite knows the name (the config refuses other names before a run starts). */
export function encodingExists(name: string): boolean {
  return iconv.encodingExists(name);
}

function isUtf8Name(encoding: string | undefined): boolean {
  return encoding === undefined || /^utf-?8$/i.test(encoding.trim());
}

function countNewlines(buf: Buffer, end = buf.length): number {
  let n = 0;
  for (let i = buf.indexOf(NEWLINE); i !== -1 && i < end; i = buf.indexOf(NEWLINE, i + 1)) n++;
  return n;
}

function countNewlinesIn(text: string, end = text.length): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < end; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/**
 * Where a chunk's last character may be cut off: the start of a trailing multi-byte sequence
 * that is not complete yet (its lead byte announces more bytes than the chunk has left).
 */
function incompleteTail(buf: Buffer): number {
  for (let back = 1; back <= 3 && back <= buf.length; back++) {
    const byte = buf[buf.length - back]!;
    if ((byte & 0xc0) === 0x80) continue; // a continuation byte: look further back
    const length = byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1;
    return length > back ? buf.length - back : buf.length;
  }
  return buf.length;
}

/**
 * Where the first character that is not valid UTF-8 starts (error path only: O(n log n)).
 * Searched for as the longest prefix that decodes with an unfinished last character allowed (a
 * prefix of a valid one stays valid); the character the bad byte broke starts at that unfinished one.
 */
function firstInvalidByte(buf: Buffer): number {
  const valid = (end: number) => {
    try {
      new TextDecoder('utf-8', { fatal: true }).decode(buf.subarray(0, end), { stream: true });
      return true;
    } catch {
      return false;
    }
  };
  let lo = 0;
  let hi = buf.length;
  while (lo < hi) {
    const mid = Math.ceil((lo + hi) / 2);
    if (valid(mid)) lo = mid;
    else hi = mid - 1;
  }
  return incompleteTail(buf.subarray(0, lo));
}

/**
 * Turns a manifest's bytes, chunk by chunk, into UTF-8 for the CSV parser, and stops at the
 * first line whose text is not what the file meant. Without an encoding the bytes must be valid
 * UTF-8: a Latin-1 `José` read as UTF-8 would reach the server as `Jos\uFFFD` and, stored under a
 * publicId derived from the file, could never be corrected by a rerun (#15.9). With one, iconv-lite
 * decodes, and a byte the encoding leaves undefined (it becomes U+FFFD) stops the run the same way.
 * A U+FFFD already in the file is refused too: it is the mark of a name mangled earlier.
 *
 * Memory holds at most the last incomplete character between chunks.
 */
export class ManifestTextDecoder {
  readonly #file: string;
  readonly #encoding: string | undefined;
  readonly #iconv: iconv.DecoderStream | undefined;
  /** Newlines before the current chunk: the line number of a problem is this plus those before it in the chunk. */
  #lines = 0;
  #carry: Buffer | undefined;
  #started = false;
  /** The file began with a UTF-16 byte order mark (Excel's "Unicode text"). */
  #utf16: 'utf-16le' | 'utf-16be' | undefined;

  constructor(file: string, options: ManifestTextOptions = {}) {
    this.#file = file;
    if (!isUtf8Name(options.encoding)) {
      this.#encoding = options.encoding!;
      if (!encodingExists(this.#encoding)) throw new ManifestError(`unknown encoding "${this.#encoding}" for manifest ${file}; use a name like latin1, cp1252 or utf-16le`);
      this.#iconv = iconv.getDecoder(this.#encoding);
    }
  }

  /** The UTF-8 bytes of `chunk` (a view of it when it is UTF-8 already); throws ManifestError. */
  write(chunk: Buffer): Buffer {
    if (this.#iconv) return this.#text(this.#iconv.write(chunk));
    const buf = this.#carry ? Buffer.concat([this.#carry, chunk]) : chunk;
    if (!this.#started && buf.length >= 2) {
      this.#started = true;
      this.#utf16 = buf[0] === 0xff && buf[1] === 0xfe ? 'utf-16le' : buf[0] === 0xfe && buf[1] === 0xff ? 'utf-16be' : undefined;
    }
    const cut = incompleteTail(buf);
    // Copied: the caller may reuse the chunk's memory for the next read.
    this.#carry = cut < buf.length ? Buffer.from(buf.subarray(cut)) : undefined;
    return this.#utf8(buf.subarray(0, cut), false);
  }

  /** What is left at the end of the file; throws ManifestError when it is not whole text. */
  end(): Buffer {
    if (this.#iconv) return this.#text(this.#iconv.end() ?? '');
    const rest = this.#carry ?? Buffer.alloc(0);
    this.#carry = undefined;
    return this.#utf8(rest, true);
  }

  #utf8(buf: Buffer, atEnd: boolean): Buffer {
    const mangled = buf.indexOf(REPLACEMENT_UTF8);
    if (mangled === -1 && isUtf8(buf)) {
      this.#lines += countNewlines(buf);
      return buf;
    }
    // Not at the end, an unfinished last character was held back by write(): only a bad byte fails here.
    const invalid = isUtf8(buf) ? -1 : firstInvalidByte(buf);
    if (invalid !== -1 && (mangled === -1 || invalid < mangled)) {
      const line = this.#lines + countNewlines(buf, invalid) + 1;
      const byte = `byte 0x${buf[invalid]!.toString(16).padStart(2, '0')}${atEnd && invalid >= incompleteTail(buf) ? ' (an unfinished character at the end)' : ''}`;
      if (this.#utf16) {
        throw new ManifestError(`manifest ${this.#file} is UTF-16 (it starts with a UTF-16 byte order mark), not UTF-8: pass --encoding ${this.#utf16}, or save it again as "CSV UTF-8"`);
      }
      throw new ManifestError(
        `manifest ${this.#file} is not valid UTF-8: line ${line} has ${byte}. If it was saved by Excel or an older system, pass --encoding latin1 (or cp1252, the Windows variant), or save it again as "CSV UTF-8"`,
      );
    }
    throw this.#mangledError(this.#lines + countNewlines(buf, mangled) + 1);
  }

  #text(text: string): Buffer {
    const mangled = text.indexOf(REPLACEMENT);
    if (mangled !== -1) {
      const line = this.#lines + countNewlinesIn(text, mangled) + 1;
      // Only a byte the encoding does not define becomes U+FFFD (a U+FFFD written in the file, in UTF-16, too).
      throw new ManifestError(
        `manifest ${this.#file}: line ${line} has a byte that is not a character in ${this.#encoding} (or the character U+FFFD, the mark of text mangled earlier); is the encoding right? cp1252 and latin1 differ in 0x80-0x9f; utf-16le needs an even number of bytes`,
      );
    }
    this.#lines += countNewlinesIn(text);
    return Buffer.from(text, 'utf8');
  }

  #mangledError(line: number): ManifestError {
    return new ManifestError(
      `manifest ${this.#file}: line ${line} holds the character U+FFFD (\uFFFD), which stands for a letter lost by an earlier conversion; correct that line (or export the manifest again from its source) so no mangled name is stored`,
    );
  }
}
