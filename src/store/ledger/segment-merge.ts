import { compareKeys } from './document-key.ts';
import type { LedgerIo } from './ledger-io.ts';
import { isTombstone } from './segment-record.ts';
import { SegmentCursor, type SegmentInfo, type SegmentReader, type SegmentWriter } from './segment-file.ts';

/**
 * A run of segments is merged with the one before it while that one holds at most this many
 * times the run's records: segments then grow by a factor of 3 or more from newest to oldest, so
 * a ledger of N documents has about log3(N / journal) segments and each record is rewritten
 * about as many times.
 */
const MERGE_RATIO = 2;

/** Where the newest segments should be merged from (index of the oldest of the run), if at all. */
export function mergeStart(records: readonly number[]): number | undefined {
  const last = records.length - 1;
  if (last < 1) return undefined;
  let start = last;
  let total = records[last]!;
  while (start > 0 && records[start - 1]! <= MERGE_RATIO * total) {
    total += records[start - 1]!;
    start--;
  }
  return start < last ? start : undefined;
}

/**
 * Streams `inputs` (oldest first) into `writer`: one record per key, the newest input's. Into the
 * oldest segment (`bottom`), tombstones go no further: nothing older is left for them to hide.
 * Memory: one chunk per input and one for the output.
 */
export async function mergeSegments(options: {
  inputs: readonly SegmentReader[];
  writer: SegmentWriter;
  bottom: boolean;
  io: LedgerIo;
  signal?: AbortSignal;
  onProgress?: () => Promise<void>;
}): Promise<SegmentInfo> {
  const { inputs, writer, bottom, io, signal } = options;
  const cursors = inputs.map((reader) => new SegmentCursor(reader, io));
  const live: boolean[] = [];
  for (const cursor of cursors) live.push(await cursor.next());
  let written = 0;
  for (;;) {
    // The smallest key among the heads; of equal ones, the newest input's record wins.
    let winner = -1;
    for (let i = 0; i < cursors.length; i++) {
      if (!live[i]) continue;
      if (winner === -1) {
        winner = i;
        continue;
      }
      const c = compareKeys(cursors[i]!.buffer, cursors[i]!.at, cursors[winner]!.buffer, cursors[winner]!.at);
      if (c <= 0) winner = i;
    }
    if (winner === -1) break;
    const top = cursors[winner]!;
    if (!(bottom && isTombstone(top.buffer, top.at))) await writer.addRaw(top.buffer, top.at);
    // Every head holding this key moves on (the winner last: the others compare against it).
    for (let i = 0; i < cursors.length; i++) {
      if (i === winner || !live[i]) continue;
      if (compareKeys(cursors[i]!.buffer, cursors[i]!.at, top.buffer, top.at) === 0) live[i] = await cursors[i]!.next();
    }
    live[winner] = await top.next();
    if (++written % 65_536 === 0) {
      signal?.throwIfAborted();
      await options.onProgress?.();
    }
  }
  signal?.throwIfAborted();
  return writer.finish();
}
