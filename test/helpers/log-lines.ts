import { Writable } from 'node:stream';

/** A pino destination that keeps every line, for tests that read what a run logged. */
export function logCapture(): { stream: Writable; lines: string[]; text: () => string } {
  const lines: string[] = [];
  let pending = '';
  const stream = new Writable({
    write(chunk, _enc, cb) {
      pending += String(chunk);
      let end: number;
      while ((end = pending.indexOf('\n')) >= 0) {
        lines.push(pending.slice(0, end));
        pending = pending.slice(end + 1);
      }
      cb();
    },
  });
  return { stream, lines, text: () => lines.join('\n') };
}

/**
 * Keys that occur twice in one object of a JSON text (JSON.parse keeps the last one silently;
 * Elasticsearch and OpenSearch refuse such a document). Assumes valid JSON.
 */
export function duplicateKeys(json: string): string[] {
  const dups: string[] = [];
  const stack: Array<Set<string> | null> = [];
  let expectKey = false;
  for (let i = 0; i < json.length; i++) {
    const c = json[i]!;
    if (c === '{') {
      stack.push(new Set());
      expectKey = true;
    } else if (c === '[') {
      stack.push(null);
      expectKey = false;
    } else if (c === '}' || c === ']') {
      stack.pop();
    } else if (c === ',') {
      expectKey = stack[stack.length - 1] != null;
    } else if (c === '"') {
      let j = i + 1;
      while (json[j] !== '"') j += json[j] === '\\' ? 2 : 1;
      const text = json.slice(i, j + 1);
      const keys = stack[stack.length - 1];
      if (expectKey && keys) {
        const key = JSON.parse(text) as string;
        if (keys.has(key)) dups.push(key);
        keys.add(key);
        expectKey = false;
      }
      i = j;
    }
  }
  return dups;
}
