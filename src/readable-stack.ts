/**
 * A stack trace as a person reads it: frames of the bundle (bin/idsync.js runs one) mapped to the
 * TypeScript sources by the function bin/idsync.js registers; as it is otherwise (tsx maps its own).
 * Called only where a stack is printed: mapping loads the bundle's source map.
 */
export function readableStack(stack: string): string {
  const map = (globalThis as Record<symbol, unknown>)[Symbol.for('idsync.sourceMappedStack')];
  if (typeof map !== 'function') return stack;
  try {
    return String((map as (s: string) => unknown)(stack));
  } catch {
    return stack;
  }
}
