import { createHash } from 'node:crypto';
import type { Readable } from 'node:stream';

export interface ParsedPart {
  name: string;
  fileName?: string;
  contentType?: string;
  bytes: number;
  sha256: string;
  /** Kept for text parts and small files (≤ keepLimit bytes). */
  data?: Buffer;
}

/**
 * A minimal streaming multipart/form-data parser for the test server: hashes parts as
 * they pass and keeps only small ones, so a 50 MB upload does not sit in the test's memory.
 */
export async function parseMultipart(stream: Readable, boundary: string, keepLimit = 1 << 20): Promise<ParsedPart[]> {
  const delimiter = Buffer.from(`\r\n--${boundary}`);
  const parts: ParsedPart[] = [];
  let buf: Buffer = Buffer.from('\r\n');
  type State = 'preamble' | 'after-delimiter' | 'headers' | 'data' | 'done';
  let state = 'preamble' as State;
  let current: { part: ParsedPart; hash: ReturnType<typeof createHash>; chunks: Buffer[] | undefined } | undefined;

  const emit = (data: Buffer) => {
    if (!current || data.length === 0) return;
    current.hash.update(data);
    current.part.bytes += data.length;
    if (current.chunks) {
      current.chunks.push(data);
      if (current.part.bytes > keepLimit) current.chunks = undefined;
    }
  };
  const finish = () => {
    if (!current) return;
    current.part.sha256 = current.hash.digest('hex');
    if (current.chunks) current.part.data = Buffer.concat(current.chunks);
    parts.push(current.part);
    current = undefined;
  };

  const step = (): boolean => {
    switch (state) {
      case 'preamble': {
        const i = buf.indexOf(delimiter);
        if (i < 0) return false;
        buf = buf.subarray(i + delimiter.length);
        state = 'after-delimiter';
        return true;
      }
      case 'after-delimiter': {
        if (buf.length < 2) return false;
        const two = buf.subarray(0, 2).toString();
        buf = buf.subarray(2);
        state = two === '--' ? 'done' : 'headers';
        return true;
      }
      case 'headers': {
        const i = buf.indexOf('\r\n\r\n');
        if (i < 0) return false;
        const lines = buf.subarray(0, i).toString('utf8').split('\r\n');
        buf = buf.subarray(i + 4);
        const part: ParsedPart = { name: '', bytes: 0, sha256: '' };
        for (const line of lines) {
          const [key, ...rest] = line.split(':');
          const value = rest.join(':').trim();
          if (key?.toLowerCase() === 'content-disposition') {
            part.name = /\bname="([^"]*)"/.exec(value)?.[1] ?? '';
            const fn = /\bfilename="([^"]*)"/.exec(value)?.[1];
            if (fn !== undefined) part.fileName = fn;
          } else if (key?.toLowerCase() === 'content-type') part.contentType = value;
        }
        current = { part, hash: createHash('sha256'), chunks: [] };
        state = 'data';
        return true;
      }
      case 'data': {
        const i = buf.indexOf(delimiter);
        if (i >= 0) {
          emit(buf.subarray(0, i));
          finish();
          buf = buf.subarray(i + delimiter.length);
          state = 'after-delimiter';
          return true;
        }
        const keep = delimiter.length - 1;
        if (buf.length > keep) {
          emit(Buffer.from(buf.subarray(0, buf.length - keep)));
          buf = Buffer.from(buf.subarray(buf.length - keep));
        }
        return false;
      }
      case 'done':
        return false;
    }
  };

  for await (const chunk of stream) {
    buf = buf.length === 0 ? (chunk as Buffer) : Buffer.concat([buf, chunk as Buffer]);
    while (step()) {
      /* keep parsing */
    }
  }
  if (state !== 'done') throw new Error(`multipart body ended early (state ${state})`);
  return parts;
}
