/**
 * Gathers the calls made during one turn of the event loop and sends them together, in one
 * request of at most `max` items: under load, the answers of many HTTP requests and Redis calls
 * are handled in the same turn, so concurrent jobs that each need the same kind of Redis call
 * (claim a document, record a result) share one round trip and one script call.
 * Nothing waits for a timer: the batch leaves at the end of the turn (setImmediate) or as soon
 * as it is full. When the request fails, every call in it fails with the same error; an answer
 * that is an Error fails its own call only.
 */
export class TurnBatcher<In, Out> {
  readonly #send: (items: In[]) => Promise<Array<Out | Error>>;
  readonly #max: number;
  #pending: Array<{ item: In; resolve: (out: Out) => void; reject: (err: unknown) => void }> = [];
  #soon: NodeJS.Immediate | undefined;

  constructor(send: (items: In[]) => Promise<Array<Out | Error>>, max: number) {
    this.#send = send;
    this.#max = max;
  }

  call(item: In): Promise<Out> {
    return new Promise<Out>((resolve, reject) => {
      this.#pending.push({ item, resolve, reject });
      if (this.#pending.length >= this.#max) this.#flush();
      else this.#soon ??= setImmediate(() => this.#flush());
    });
  }

  #flush(): void {
    if (this.#soon) clearImmediate(this.#soon);
    this.#soon = undefined;
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    // Through a promise, so that an error thrown while building the request fails the calls too.
    new Promise<Array<Out | Error>>((resolve) => resolve(this.#send(batch.map((p) => p.item)))).then(
      (outs) => {
        if (outs.length !== batch.length) throw new Error(`a batch of ${batch.length} calls got ${outs.length} answers`);
        batch.forEach((p, i) => {
          const out = outs[i]!;
          if (out instanceof Error) p.reject(out);
          else p.resolve(out);
        });
      },
    ).catch((err: unknown) => {
      for (const p of batch) p.reject(err);
    });
  }
}
