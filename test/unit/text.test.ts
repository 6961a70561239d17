import { describe, expect, it } from 'vitest';
import { cutText } from '../../src/text.ts';
import { defaultDocumentName } from '../../src/sources/drop-convention.ts';

describe('cutText', () => {
  it('keeps short text whole and never ends on half of a surrogate pair', () => {
    expect(cutText('abc', 5)).toBe('abc');
    expect(cutText('abcdef', 3)).toBe('abc');
    expect(cutText('ab😀cd', 3)).toBe('ab'); // the emoji would be cut in half: left out whole
    expect(cutText('ab😀cd', 4)).toBe('ab😀');
    expect(() => JSON.parse(JSON.stringify(cutText(`${'x'.repeat(9)}😀`, 10)))).not.toThrow();
  });

  it('is what document names from file names are cut with', () => {
    const name = defaultDocumentName(`${'x'.repeat(254)}😀.pdf`); // 255 units would end mid-emoji
    expect(name).toBe('x'.repeat(254));
  });
});
