/**
 * What a photo endpoint must send: JPEG bytes. A proxy's HTML login page, a JSON error or an
 * empty body answered with 200 must never be saved as `.jpg` (issue #15, item 5).
 */

/** Bytes needed to tell a JPEG: SOI (FF D8) and the first marker's FF. */
export const JPEG_SIGNATURE_BYTES = 3;

/**
 * Content-Types a JPEG may come with. Absent and the generic `application/octet-stream` say
 * nothing either way (the signature decides); image/jpg and image/pjpeg are seen in the wild for
 * the same bytes. Text, HTML, JSON and other images are refused at once.
 */
const JPEG_OR_UNSAID = new Set(['image/jpeg', 'image/jpg', 'image/pjpeg', 'application/octet-stream']);

export function isJpegContentType(contentType: string | undefined): boolean {
  if (contentType === undefined || contentType.trim() === '') return true;
  return JPEG_OR_UNSAID.has(contentType.split(';', 1)[0]!.trim().toLowerCase());
}

export function hasJpegSignature(start: Buffer): boolean {
  return start.length >= JPEG_SIGNATURE_BYTES && start[0] === 0xff && start[1] === 0xd8 && start[2] === 0xff;
}
