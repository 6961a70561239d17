import { open } from 'node:fs/promises';
import { lookup } from 'mime-types';

/** What an upload says when neither the name nor the first bytes tell. */
export const UNKNOWN_MEDIA_TYPE = 'application/octet-stream';

/** Bytes of a file's start that signatureOf looks at. */
export const SIGNATURE_BYTES = 16;

/** The formats scanners and cameras produce, by their first bytes (their "magic numbers"). */
const SIGNATURES: ReadonlyArray<{ type: string; bytes: readonly number[] }> = [
  { type: 'application/pdf', bytes: [0x25, 0x50, 0x44, 0x46, 0x2d] }, // %PDF-
  { type: 'image/jpeg', bytes: [0xff, 0xd8, 0xff] },
  { type: 'image/png', bytes: [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a] },
  { type: 'image/tiff', bytes: [0x49, 0x49, 0x2a, 0x00] }, // II*\0, little-endian
  { type: 'image/tiff', bytes: [0x4d, 0x4d, 0x00, 0x2a] }, // MM\0*, big-endian
];

/** The media type a file's first bytes prove, or undefined. */
export function signatureOf(head: Uint8Array): string | undefined {
  return SIGNATURES.find(({ bytes }) => bytes.length <= head.length && bytes.every((b, i) => head[i] === b))?.type;
}

/**
 * The media type to upload a file as: what its first bytes prove (a scan saved as `.jpg` that is
 * a PDF is sent as a PDF), else what its extension says (mime-types), else
 * application/octet-stream. The vendor's own examples send the real type (#17.3).
 */
export function mediaTypeOf(fileName: string, head?: Uint8Array): string {
  return (head && signatureOf(head)) || lookup(fileName) || UNKNOWN_MEDIA_TYPE;
}

/**
 * mediaTypeOf for a file on disk: `data` is its content when the caller holds it already;
 * otherwise its first SIGNATURE_BYTES are read. A file that cannot be read here is judged by its
 * name alone (the upload, opening it next, reports what is wrong). `fileName` gives the extension
 * when `file` is a path without one (/proc/self/fd/N, a file held open).
 */
export async function mediaTypeOfFile(file: string, data?: Uint8Array, fileName: string = file): Promise<string> {
  if (data) return mediaTypeOf(fileName, data.subarray(0, SIGNATURE_BYTES));
  let head: Uint8Array | undefined;
  try {
    const handle = await open(file, 'r');
    try {
      const buffer = Buffer.alloc(SIGNATURE_BYTES);
      const { bytesRead } = await handle.read(buffer, 0, SIGNATURE_BYTES, 0);
      head = buffer.subarray(0, bytesRead);
    } finally {
      await handle.close();
    }
  } catch {
    head = undefined;
  }
  return mediaTypeOf(fileName, head);
}
