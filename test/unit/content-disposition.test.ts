import { describe, expect, it } from 'vitest';
import { fileNameFromContentDisposition } from '../../src/api/content-disposition.ts';

describe('fileNameFromContentDisposition', () => {
  it.each([
    ['attachment; filename="id card.pdf"', 'id card.pdf'],
    ['attachment; filename=plain.txt', 'plain.txt'],
    ["attachment; filename=\"fallback.pdf\"; filename*=UTF-8''na%C3%AFve%20caf%C3%A9.pdf", 'naïve café.pdf'],
    ['attachment; filename="../../etc/passwd"', 'passwd'],
    ['attachment; filename="C:\\\\Windows\\\\evil.exe"', 'evil.exe'],
    ['attachment; filename=".."', undefined],
    ['attachment; filename="a\u0007b:c?.txt"', 'a_b_c_.txt'],
    ['inline', undefined],
  ])('%j → %j', (header, expected) => {
    expect(fileNameFromContentDisposition(header)).toBe(expected);
  });
  it('absent → undefined', () => expect(fileNameFromContentDisposition(undefined)).toBeUndefined());
});
