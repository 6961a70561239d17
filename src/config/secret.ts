import { inspect } from 'node:util';

/**
 * A value that must never reach a log, a report or an error message. It prints as
 * `[redacted]` through every path that could serialise it (String, JSON, util.inspect);
 * only `reveal()` gives the value, at the one place that sends it to the API.
 */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return '[redacted]';
  }
  toJSON(): string {
    return '[redacted]';
  }
  [inspect.custom](): string {
    return '[redacted]';
  }
}
