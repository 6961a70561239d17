/** What a status line writes to: a terminal stream (process.stderr), or a test's fake. */
export interface StatusLineStream {
  write(text: string): unknown;
  /** Width of the terminal, when it is one. */
  columns?: number;
}

const CLEAR_LINE = '\r\x1b[2K';

/**
 * The last line of a terminal kept for a live status (the progress bar), with log lines printed
 * above it: each print clears the status, writes its text and draws the status again, in one
 * write. Without this, every log line started on the bar's line and left a frozen copy of it.
 */
export class StatusLine {
  readonly #stream: StatusLineStream;
  #text = '';

  constructor(stream: StatusLineStream) {
    this.#stream = stream;
  }

  /** Shows (or replaces) the status; cut to the terminal's width, so it never wraps. */
  show(text: string): void {
    const width = this.#stream.columns;
    const fitted = width && width > 1 && text.length >= width ? text.slice(0, width - 1) : text;
    if (fitted === this.#text) return;
    this.#text = fitted;
    this.#stream.write(`${CLEAR_LINE}${fitted}`);
  }

  /** Prints text (whole lines, ending in a newline) above the status. */
  print(text: string): void {
    this.#stream.write(this.#text ? `${CLEAR_LINE}${text}${this.#text}` : text);
  }

  /** Ends the status: its last state stays on screen as an ordinary line. */
  done(): void {
    if (!this.#text) return;
    this.#text = '';
    this.#stream.write('\n');
  }
}

/** The one status line of this process's stderr (log lines and the progress bar share it). */
export const stderrStatus = new StatusLine(process.stderr);
