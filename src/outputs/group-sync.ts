/**
 * One fsync shared by everyone who asks while none is under way (a group commit). A caller's
 * promise resolves after an fsync that STARTED after its call, so what it wrote before calling
 * is covered; callers arriving while one runs share the next. Under load, a few fsyncs serve many
 * files instead of one each.
 */
export class GroupSync {
  readonly #run: () => Promise<void>;
  #current: Promise<void> | undefined;
  #next: Promise<void> | undefined;

  constructor(run: () => Promise<void>) {
    this.#run = run;
  }

  sync(): Promise<void> {
    if (!this.#current) return this.#start();
    this.#next ??= this.#current
      .catch(() => undefined)
      .then(() => {
        this.#next = undefined;
        return this.#start();
      });
    return this.#next;
  }

  #start(): Promise<void> {
    const run = this.#run().finally(() => {
      if (this.#current === run) this.#current = undefined;
    });
    this.#current = run;
    return run;
  }
}
