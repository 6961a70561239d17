import { describe, expect, it } from 'vitest';
import { cutText } from '../../src/text.ts';
import { defaultDocumentName } from '../../src/sources/drop-convention.ts';

/** No lone surrogate (String.prototype.isWellFormed, which this project's TypeScript lib predates). */
const wellFormed = (text: string) => !/[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/.test(text);

describe('cutText', () => {
  it('keeps short text whole and never ends on half of a surrogate pair', () => {
    expect(cutText('abc', 5)).toBe('abc');
    expect(cutText('abcdef', 3)).toBe('abc');
    expect(cutText('ab😀cd', 3)).toBe('ab'); // the emoji would be cut in half: left out whole
    expect(cutText('ab😀cd', 4)).toBe('ab😀');
    const cut = cutText(`${'x'.repeat(9)}😀`, 10);
    expect(cut).toBe('x'.repeat(9));
    // Well-formed UTF-16 (no lone surrogate): what Redis's cjson and the API can read.
    expect(wellFormed(cut)).toBe(true);
    expect(wellFormed(`${'x'.repeat(9)}😀`.slice(0, 10))).toBe(false); // what a plain cut would give
  });

  it('is what document names from file names are cut with', () => {
    const name = defaultDocumentName(`${'x'.repeat(254)}😀.pdf`); // 255 units would end mid-emoji
    expect(name).toBe('x'.repeat(254));
  });
});
