import { describe, expect, it } from 'vitest';
import { TurnBatcher } from '../../src/store/turn-batcher.ts';

describe('TurnBatcher', () => {
  it('sends the calls of one turn together, each answered in order, and starts a new batch when full', async () => {
    const sent: number[][] = [];
    const b = new TurnBatcher<number, string>(async (items) => {
      sent.push(items);
      return items.map((i) => `answer ${i}`);
    }, 3);
    const answers = await Promise.all([1, 2, 3, 4, 5].map((i) => b.call(i)));
    expect(answers).toEqual(['answer 1', 'answer 2', 'answer 3', 'answer 4', 'answer 5']);
    expect(sent).toEqual([[1, 2, 3], [4, 5]]);
    // A later turn makes its own batch.
    await b.call(6);
    expect(sent).toEqual([[1, 2, 3], [4, 5], [6]]);
  });

  it('fails every call of a batch whose request fails (or throws while being built, or answers short)', async () => {
    const failing = new TurnBatcher<number, number>(() => Promise.reject(new Error('down')), 10);
    const throwing = new TurnBatcher<number, number>(() => {
      throw new Error('cannot build');
    }, 10);
    const short = new TurnBatcher<number, number>(async () => [1], 10);
    for (const [b, message] of [
      [failing, 'down'],
      [throwing, 'cannot build'],
      [short, 'a batch of 2 calls got 1 answers'],
    ] as const) {
      const outcomes = await Promise.allSettled([b.call(1), b.call(2)]);
      expect(outcomes.map((o) => (o.status === 'rejected' ? (o.reason as Error).message : 'ok'))).toEqual([message, message]);
    }
  });

  it('an answer that is an Error fails its own call only', async () => {
    const b = new TurnBatcher<number, number>(async (items) => items.map((i) => (i === 2 ? new Error('two failed') : i * 10)), 10);
    const outcomes = await Promise.allSettled([b.call(1), b.call(2), b.call(3)]);
    expect(outcomes.map((o) => (o.status === 'fulfilled' ? o.value : (o.reason as Error).message))).toEqual([10, 'two failed', 30]);
  });
});

