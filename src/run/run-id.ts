import { createHash } from 'node:crypto';
import path from 'node:path';

/**
 * A run is "this command, on this manifest's content, in this folder, against this API, into
 * this output": the same command run again is the same run and resumes it.
 */
export function runIdFor(parts: { command: string; apiUrl: string; manifest: string; manifestSha256: string; outDir?: string }): string {
  const h = createHash('sha256');
  h.update(`${parts.command}\n${parts.apiUrl}\n${path.dirname(path.resolve(parts.manifest))}\n${parts.manifestSha256}\n${parts.outDir ?? ''}`);
  return `${parts.command}-${h.digest('hex').slice(0, 16)}`;
}
