import path from 'node:path';

const BY_TYPE: Record<string, string> = {
  'application/pdf': '.pdf',
  'image/jpeg': '.jpg',
  'image/jpg': '.jpg',
  'image/png': '.png',
  'image/tiff': '.tif',
  'image/gif': '.gif',
  'image/webp': '.webp',
  'image/bmp': '.bmp',
  'text/plain': '.txt',
  'text/csv': '.csv',
  'application/json': '.json',
  'application/xml': '.xml',
  'text/xml': '.xml',
  'application/zip': '.zip',
  'application/msword': '.doc',
  'application/vnd.openxmlformats-officedocument.wordprocessingml.document': '.docx',
};

/**
 * The extension a downloaded document gets when the manifest names no output: from the
 * server's file name (Content-Disposition) when it has a plain one, else from Content-Type,
 * else `.bin`. The API does not promise either header (econnect-api.md, Unknowns).
 */
export function extensionFor(meta: { contentType?: string; fileName?: string }): string {
  const fromName = meta.fileName ? path.extname(meta.fileName).toLowerCase() : '';
  if (/^\.[a-z0-9]{1,8}$/.test(fromName)) return fromName;
  const type = meta.contentType?.split(';')[0]?.trim().toLowerCase();
  return (type && BY_TYPE[type]) || '.bin';
}
