import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { FileError } from '../errors.ts';

/** sha256 and size of a file, streamed (memory does not grow with the file). */
export async function hashFile(file: string): Promise<{ sha256: string; bytes: number }> {
  const hash = createHash('sha256');
  let bytes = 0;
  try {
    for await (const chunk of createReadStream(file, { highWaterMark: 1 << 20 })) {
      hash.update(chunk as Buffer);
      bytes += (chunk as Buffer).length;
    }
  } catch (err) {
    throw new FileError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, file, { cause: err });
  }
  return { sha256: hash.digest('hex'), bytes };
}
