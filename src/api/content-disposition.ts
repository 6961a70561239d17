import path from 'node:path';
import { parse } from 'content-disposition';

/**
 * The file name a Content-Disposition header proposes, made safe to use as a single path
 * component: the server is not trusted to choose folders (`../../etc/x`) or odd characters.
 * Parsed by the `content-disposition` package (quoted strings, RFC 8187 `filename*`, which wins
 * over `filename`); a header it cannot parse proposes no name.
 */
export function fileNameFromContentDisposition(header: string | string[] | undefined): string | undefined {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return undefined;
  let name: string | undefined;
  try {
    name = parse(value).parameters.filename;
  } catch {
    return undefined;
  }
  return name === undefined ? undefined : sanitizeFileName(name);
}

export function sanitizeFileName(name: string): string | undefined {
  const base = path.posix.basename(name.replace(/\\/g, '/'));
  // eslint-disable-next-line no-control-regex
  const cleaned = base.replace(/[\u0000-\u001f\u007f<>:"|?*]/g, '_').replace(/^[.\s]+|[.\s]+$/g, '').slice(0, 200);
  return cleaned === '' ? undefined : cleaned;
}
