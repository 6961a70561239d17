/**
 * A state of millions of documents, built in minutes instead of days of imports: the ledger's
 * segment (what a compaction would have written) and Redis's stored set (what the uploads' commits
 * would have written), for one API. Document i is (syntheticPersonId(i), syntheticPublicId(i)), stored with the
 * content of contents[i % contents.length], so a manifest row naming it with that file is found
 * stored in both.
 */
import type { Redis } from 'ioredis';
import { compareKeys, documentKey, KEY_BYTES, ledgerKey } from '../../src/store/ledger/document-key.ts';
import { Ledger } from '../../src/store/ledger/ledger.ts';
import { LedgerIo } from '../../src/store/ledger/ledger-io.ts';
import { readManifest, writeManifest } from '../../src/store/ledger/manifest.ts';
import { SegmentWriter } from '../../src/store/ledger/segment-file.ts';
import { segmentName } from '../../src/store/ledger/compactor.ts';
import { ApiKeys, apiKey, apisKey, DEFAULT_KEY_ROOT } from '../../src/store/keys.ts';
import { documentId } from '../../src/store/stored-documents.ts';
import path from 'node:path';

/** Four documents per person, as in bench/ledger-scale.ts. */
export function syntheticPersonId(i: number): string {
  return `${Math.floor(i / 4).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
}
export function syntheticPublicId(i: number): string {
  return `${i.toString(16).padStart(8, '0')}-1111-4111-8111-111111111111`;
}

/** Writes a ledger of `docs` stored documents into `stateDir` for `apiUrl` (one segment, an empty journal). */
export async function buildSyntheticLedger(stateDir: string, apiUrl: string, docs: number, contents: string[], say: (s: string) => void): Promise<void> {
  const ledger = await Ledger.open(stateDir, apiUrl, { syncIo: true });
  const dir = path.dirname(ledger.file);
  await ledger.close();
  const keys = Buffer.allocUnsafe(docs * KEY_BYTES);
  for (let i = 0; i < docs; i++) documentKey(ledgerKey(syntheticPersonId(i), syntheticPublicId(i))).copy(keys, i * KEY_BYTES);
  const order = sortedOrder(keys, docs);
  say(`  ledger: ${docs.toLocaleString('en-US')} keys hashed and sorted`);
  const io = new LedgerIo(false);
  const writer = await SegmentWriter.create(dir, segmentName(1), docs, io);
  for (let j = 0; j < docs; j++) {
    const i = order[j]!;
    await writer.add(keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES), { state: 'stored', sha256: contents[i % contents.length]! });
  }
  const segment = await writer.finish();
  const { manifest } = (await readManifest(dir))!;
  await writeManifest(dir, { ...manifest, version: manifest.version + 1, segments: [segment], documents: docs, nextSegment: 2 }, io);
}

/**
 * Writes `docs` documents into the stored set of `apiUrl` (src/store/stored-documents.ts: 9-byte
 * values in 2^17 bucket hashes), pipelined, and registers the API as known to this Redis.
 */
export async function fillSyntheticStoredSet(redis: Redis, apiUrl: string, docs: number, contents: string[], say: (s: string) => void): Promise<void> {
  const keys = new ApiKeys(DEFAULT_KEY_ROOT, apiKey(apiUrl));
  const values = contents.map((sha) => Buffer.concat([Buffer.from('s'), Buffer.from(sha.slice(0, 16), 'hex')]));
  const PER_PIPELINE = 20_000;
  let inFlight: Promise<unknown> | undefined;
  for (let from = 0; from < docs; from += PER_PIPELINE) {
    const pipeline = redis.pipeline();
    for (let i = from; i < Math.min(docs, from + PER_PIPELINE); i++) {
      const id = documentId(syntheticPersonId(i), syntheticPublicId(i));
      pipeline.hset(keys.storedBucket(id.bucket), id.field, values[i % values.length]!);
    }
    // One pipeline on the wire while the next is built.
    await inFlight;
    inFlight = pipeline.exec();
    if (from % 1_000_000 === 0 && from > 0) say(`  stored set: ${from.toLocaleString('en-US')} documents`);
  }
  await inFlight;
  // What ApiStore.register() writes on a first command: this Redis has served the API before.
  await redis.hsetnx(apisKey(DEFAULT_KEY_ROOT), keys.api, apiUrl);
}

/**
 * The order of `docs` document keys (KEY_BYTES each, packed in `keys`) as a segment holds them:
 * a counting sort on the top 20 bits, then insertion within each (tiny) bucket.
 */
export function sortedOrder(keys: Buffer, docs: number): Uint32Array {
  const bits = 20;
  const starts = new Uint32Array((1 << bits) + 1);
  for (let i = 0; i < docs; i++) starts[(keys.readUInt32BE(i * KEY_BYTES) >>> (32 - bits)) + 1]!++;
  for (let b = 0; b < 1 << bits; b++) starts[b + 1]! += starts[b]!;
  const order = new Uint32Array(docs);
  const fill = starts.slice();
  for (let i = 0; i < docs; i++) order[fill[keys.readUInt32BE(i * KEY_BYTES) >>> (32 - bits)]!++] = i;
  for (let b = 0; b < 1 << bits; b++) {
    for (let j = starts[b]! + 1; j < starts[b + 1]!; j++) {
      const v = order[j]!;
      let k = j - 1;
      while (k >= starts[b]! && compareKeys(keys, order[k]! * KEY_BYTES, keys, v * KEY_BYTES) > 0) {
        order[k + 1] = order[k]!;
        k--;
      }
      order[k + 1] = v;
    }
  }
  return order;
}
