import { createHash } from 'node:crypto';
import { open, type FileHandle } from 'node:fs/promises';
import { FileError } from '../errors.ts';

const CHUNK = 256 * 1024;

/**
 * sha256 and size of a file, read through one reused buffer: memory does not grow with the
 * file, and a 1 GB file does not leave a gigabyte of short-lived chunks for the GC to collect.
 */
export async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  try {
    return await sha256OfFile(file);
  } catch (err) {
    throw readError(file, err);
  }
}

/** The FileError for a file that could not be read: its path and the system's code. */
export function readError(file: string, err: unknown): FileError {
  return new FileError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, file, { cause: err });
}

/**
 * The same, with the file system's error as it is (callers word it for their context).
 * `onChunk` sees each chunk read; it must not keep it (the buffer is reused) and may throw to stop.
 */
export async function sha256OfFile(file: string, onChunk?: (chunk: Buffer) => void): Promise<{ sha256: string; bytes: number }> {
  const handle = await open(file, 'r');
  try {
    return await sha256OfHandle(handle, onChunk);
  } finally {
    await handle.close();
  }
}

/** The same for a file already open (read from its start; the handle stays open). */
export async function sha256OfHandle(handle: FileHandle, onChunk?: (chunk: Buffer) => void): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  const buffer = Buffer.allocUnsafe(CHUNK);
  for (;;) {
    const { bytesRead } = await handle.read(buffer, 0, CHUNK, bytes);
    if (bytesRead === 0) break;
    hash.update(buffer.subarray(0, bytesRead));
    onChunk?.(buffer.subarray(0, bytesRead));
    bytes += bytesRead;
  }
  return { sha256: hash.digest('hex'), bytes };
}
