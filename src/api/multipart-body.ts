import { createHash, randomUUID } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { Readable } from 'node:stream';
import { FileChangedError } from '../errors.ts';
import { chunkStreamed } from '../memory.ts';

/** A text part or the file part of a multipart/form-data upload. */
export interface MultipartField {
  name: string;
  value: string;
}

export interface MultipartFile {
  field: string;
  fileName: string;
  contentType: string;
  /** The bytes when already in memory (small files: read once for hash and upload). */
  data?: Buffer;
  /** Otherwise streamed from this open file (closed when the stream ends); `size` must be its length. */
  handle?: FileHandle;
  size: number;
  /**
   * For a streamed file: its path (for the error) and, when known, the sha256 it must have. The
   * bytes are hashed as they go and the last chunk is held back until the size and the hash
   * match, so a file changed since it was hashed never reaches the server complete.
   */
  verify?: { path: string; sha256?: string };
}

export interface MultipartBody {
  contentType: string;
  /** Exact byte length: sent as Content-Length, so the server needs no chunked decoding. */
  length: number;
  /** A fresh body for one attempt (a sent stream cannot be replayed). */
  body: Buffer | Readable;
}

/** Quoting of names as the WHATWG multipart/form-data encoder (and undici's FormData) does it. */
function escapeName(name: string): string {
  return name.replace(/\n/g, '%0A').replace(/\r/g, '%0D').replace(/"/g, '%22');
}

/** Line breaks of text values normalised to CRLF, as FormData serialisation does. */
function normalizeValue(value: string): string {
  return value.replace(/\r(?!\n)|(?<!\r)\n/g, '\r\n');
}

/**
 * Builds a multipart/form-data body by hand instead of through undici's FormData + Blob: the
 * text parts and the part headers are one buffer, a small file is appended in memory (one
 * socket write per upload), a large one is streamed from disk. The FormData/Blob path costs a
 * web-stream read per 64 KB chunk and a dozen small socket writes per upload.
 */
export function multipartBody(fields: MultipartField[], file: MultipartFile): MultipartBody {
  // randomUUID draws from a cached pool of random bytes; randomBytes(16) was a syscall per upload.
  const boundary = `----idsync${randomUUID().replaceAll('-', '')}`;
  let head = '';
  for (const f of fields) {
    head += `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(f.name)}"\r\n\r\n${normalizeValue(f.value)}\r\n`;
  }
  head += `--${boundary}\r\nContent-Disposition: form-data; name="${escapeName(file.field)}"; filename="${escapeName(file.fileName)}"\r\nContent-Type: ${file.contentType}\r\n\r\n`;
  const headBuf = Buffer.from(head, 'utf8');
  const tailBuf = Buffer.from(`\r\n--${boundary}--\r\n`, 'utf8');
  const length = headBuf.length + file.size + tailBuf.length;
  const contentType = `multipart/form-data; boundary=${boundary}`;
  if (file.data) return { contentType, length, body: Buffer.concat([headBuf, file.data, tailBuf], length) };
  const handle = file.handle!;
  const verify = file.verify;
  const changed = (what: string) => new FileChangedError(verify?.path ?? file.fileName, what);
  async function* stream(): AsyncGenerator<Buffer> {
    try {
      yield headBuf;
      const hash = verify?.sha256 ? createHash('sha256') : undefined;
      let read = 0;
      // The last chunk waits until the end of the file proves size and hash: a request cut before
      // its last bytes (and the closing boundary) is never a complete upload for the server.
      let held: Buffer | undefined;
      for await (const chunk of handle.createReadStream({ highWaterMark: 256 * 1024, autoClose: false })) {
        const buf = chunk as Buffer;
        read += buf.length;
        // More than promised in Content-Length: stop here rather than let undici fail on the length.
        if (read > file.size) throw changed(`it grew past the ${file.size} bytes it had`);
        hash?.update(buf);
        chunkStreamed(buf.length);
        if (held) yield held;
        held = buf;
      }
      if (read !== file.size) throw changed(`${read} bytes instead of ${file.size}`);
      if (hash && hash.digest('hex') !== verify!.sha256) throw changed('its content is not what was hashed');
      if (held) yield held;
      yield tailBuf;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }
  // Readable.from: when undici destroys the body (request failed), the generator's finally closes the file.
  return { contentType, length, body: Readable.from(stream(), { objectMode: false }) };
}
