import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { extensionFor } from '../../src/sources/content-type.ts';
import { mediaTypeOf, mediaTypeOfFile, signatureOf } from '../../src/sources/media-type.ts';
import { tempDir } from '../helpers/fixtures.ts';

const PDF = Buffer.from('%PDF-1.7\n%\xe2\xe3\xcf\xd3\n', 'latin1');
const JPEG = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0x00, 0x10, 0x4a, 0x46, 0x49, 0x46, 0x00]);
const PNG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d]);
const TIFF_LE = Buffer.from([0x49, 0x49, 0x2a, 0x00, 0x08, 0x00, 0x00, 0x00]);
const TIFF_BE = Buffer.from([0x4d, 0x4d, 0x00, 0x2a, 0x00, 0x00, 0x00, 0x08]);

describe('mediaTypeOf (#17.3)', () => {
  it.each([
    ['scan.pdf', PDF, 'application/pdf'],
    ['photo.jpg', JPEG, 'image/jpeg'],
    ['photo.JPEG', JPEG, 'image/jpeg'],
    ['page.png', PNG, 'image/png'],
    ['page.tif', TIFF_LE, 'image/tiff'],
    ['page.tiff', TIFF_BE, 'image/tiff'],
    ['notes.txt', Buffer.from('hello'), 'text/plain'],
    ['letter.docx', Buffer.from('PK\x03\x04'), 'application/vnd.openxmlformats-officedocument.wordprocessingml.document'],
    // The signature wins over a wrong or missing extension.
    ['scan.jpg', PDF, 'application/pdf'],
    ['scan0001', TIFF_LE, 'image/tiff'],
    ['upload.bin', PNG, 'image/png'],
    // Neither tells.
    ['data', Buffer.from('whatever'), 'application/octet-stream'],
    ['data.unknownext', Buffer.from('whatever'), 'application/octet-stream'],
    // Too short to prove anything: the extension decides.
    ['short.png', Buffer.from([0x89, 0x50]), 'image/png'],
  ])('%s → %s', (name, head, expected) => {
    expect(mediaTypeOf(name, head)).toBe(expected);
  });

  it('uses the extension alone when no bytes are given', () => {
    expect(mediaTypeOf('a.pdf')).toBe('application/pdf');
    expect(mediaTypeOf('a')).toBe('application/octet-stream');
  });

  it('recognises only the known signatures', () => {
    expect(signatureOf(Buffer.from('%PDF'))).toBeUndefined(); // the dash is part of it
    expect(signatureOf(Buffer.from([0xff, 0xd8, 0x00]))).toBeUndefined();
    expect(signatureOf(Buffer.from('II+\0'))).toBeUndefined(); // BigTIFF is not a scan format we promise
    expect(signatureOf(Buffer.alloc(0))).toBeUndefined();
  });

  it('reads the first bytes of a file it is not given, and falls back to the name when it cannot', async () => {
    const dir = tempDir();
    const big = path.join(dir, 'misnamed.jpg');
    writeFileSync(big, Buffer.concat([PDF, Buffer.alloc(2 * 1024 * 1024)]));
    expect(await mediaTypeOfFile(big)).toBe('application/pdf');
    expect(await mediaTypeOfFile(big, JPEG)).toBe('image/jpeg'); // the bytes given are what counts
    expect(await mediaTypeOfFile(path.join(dir, 'gone.png'))).toBe('image/png');
    const tiny = path.join(dir, 'tiny');
    writeFileSync(tiny, 'x');
    expect(await mediaTypeOfFile(tiny)).toBe('application/octet-stream');
  });
});

describe('extensionFor', () => {
  it.each([
    [{ contentType: 'application/pdf' }, '.pdf'],
    [{ contentType: 'image/jpeg' }, '.jpg'],
    [{ contentType: 'image/jpg' }, '.jpg'],
    [{ contentType: 'image/tiff' }, '.tif'],
    [{ contentType: 'image/png' }, '.png'],
    [{ contentType: 'text/plain; charset=utf-8' }, '.txt'],
    [{ contentType: 'Application/PDF' }, '.pdf'],
    [{ contentType: 'image/heic' }, '.heic'],
    [{ contentType: 'application/vnd.openxmlformats-officedocument.spreadsheetml.sheet' }, '.xlsx'],
    [{ contentType: 'application/octet-stream' }, '.bin'],
    [{ contentType: 'x-unknown/thing' }, '.bin'],
    [{}, '.bin'],
    // The server's file name wins when it has a plain extension.
    [{ contentType: 'application/octet-stream', fileName: 'Scan.PDF' }, '.pdf'],
    [{ contentType: 'image/png', fileName: 'weird.name with space' }, '.png'],
  ])('%j → %s', (meta, expected) => {
    expect(extensionFor(meta)).toBe(expected);
  });
});
