/**
 * At most `max` UTF-16 units of `text`, never ending on half of a surrogate pair: a lone one is
 * not valid UTF-8 for the API and not valid JSON for Redis's cjson (a result holding one could
 * not be read by the job claim's script).
 */
export function cutText(text: string, max: number): string {
  if (text.length <= max) return text;
  const code = text.charCodeAt(max - 1);
  return text.slice(0, code >= 0xd800 && code <= 0xdbff ? max - 1 : max);
}
