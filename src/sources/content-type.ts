import path from 'node:path';
import { extension } from 'mime-types';

/** Types servers send whose registered spelling differs (mime-types knows only the registered one). */
const ALIASES: Record<string, string> = {
  'image/jpg': 'image/jpeg',
  'image/pjpeg': 'image/jpeg',
};

/**
 * The extension a downloaded document gets when the manifest names no output: from the
 * server's file name (Content-Disposition) when it has a plain one, else from Content-Type
 * (mime-types, which gives .jpg for image/jpeg and .tif for image/tiff), else `.bin`. The API
 * does not promise either header (docs/api-contract.md, "Unknowns").
 */
export function extensionFor(meta: { contentType?: string; fileName?: string }): string {
  const fromName = meta.fileName ? path.extname(meta.fileName).toLowerCase() : '';
  if (/^\.[a-z0-9]{1,8}$/.test(fromName)) return fromName;
  const type = meta.contentType?.split(';')[0]?.trim().toLowerCase();
  const ext = type ? extension(ALIASES[type] ?? type) : false;
  return ext ? `.${ext}` : '.bin';
}
