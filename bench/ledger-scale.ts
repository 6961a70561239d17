// The ledger at scale: builds a synthetic ledger of --docs documents (default 10,000,000), then
// measures, each in a fresh process: open + first lookup (time, RSS), lookups per second, bytes on
// disk per document; once with an empty journal, once with a journal at its bound, then the fold
// of that journal into the big ledger.
//
//   node --import tsx bench/ledger-scale.ts --docs 10000000 [--dir DIR] [--keep]
//
// The segment is written directly through SegmentWriter (sorted in memory here: 16 bytes a key),
// which is what a compaction would have produced, in minutes instead of hours of imports.
import { spawnSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { createWriteStream, mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { documentKey, KEY_BYTES, ledgerKey } from '../src/store/ledger/document-key.ts';
import { JOURNAL_MAX_BYTES, Ledger } from '../src/store/ledger/ledger.ts';
import { LedgerIo } from '../src/store/ledger/ledger-io.ts';
import { readManifest, writeManifest } from '../src/store/ledger/manifest.ts';
import { SegmentWriter } from '../src/store/ledger/segment-file.ts';
import { segmentName } from '../src/store/ledger/compactor.ts';
import { sortedOrder } from './lib/synthetic-state.ts';

const API = 'https://bench.example/identities';
const STARTED_EVERY = 100; // 1 % of documents are left 'started' (doubt), the rest 'stored'

const { values } = parseArgs({
  options: {
    docs: { type: 'string', default: '10000000' },
    dir: { type: 'string' },
    keep: { type: 'boolean', default: false },
    probe: { type: 'string' },
    'journal-docs': { type: 'string', default: '0' },
    seconds: { type: 'string', default: '5' },
  },
});
const docs = Number(values.docs);

function personId(i: number): string {
  return `${Math.floor(i / 4).toString(16).padStart(8, '0')}-0000-4000-8000-000000000000`;
}
function publicId(i: number): string {
  return `${i.toString(16).padStart(8, '0')}-1111-4111-8111-111111111111`;
}
/** A document's content hash, derived from its key so a lookup can check what it got. */
function shaOf(key: Buffer): string {
  return key.toString('hex').repeat(2);
}
function mb(bytes: number): number {
  return Math.round(bytes / 1e5) / 10;
}

if (values.probe) await probe(values.probe);
else await main();

async function main(): Promise<void> {
  const dir = values.dir ?? mkdtempSync(path.join(os.tmpdir(), 'idsync-ledger-scale-'));
  console.log(`building a ledger of ${docs.toLocaleString('en')} documents in ${dir}`);
  const t0 = performance.now();
  const keys = await build(dir);
  const buildSeconds = (performance.now() - t0) / 1000;
  console.log(`built in ${buildSeconds.toFixed(1)} s (build process peak RSS ${mb(process.resourceUsage().maxRSS * 1024)} MB)`);

  const empty = run(dir, 0);
  // A journal at its bound: ~35,000 more documents, each a start and a stored line.
  const journalDocs = await appendJournal(dir, keys);
  const full = run(dir, journalDocs);
  console.log(JSON.stringify({ docs, buildSeconds, emptyJournal: empty, fullJournal: full }, null, 1));
  if (!values.keep && !values.dir) rmSync(dir, { recursive: true, force: true });
}

/** Writes the segment and the manifest; returns nothing but the count of keys, to free them. */
async function build(stateDir: string): Promise<number> {
  const ledger = await Ledger.open(stateDir, API, { syncIo: true });
  const dir = path.dirname(ledger.file);
  await ledger.close();
  const keys = Buffer.allocUnsafe(docs * KEY_BYTES);
  for (let i = 0; i < docs; i++) documentKey(ledgerKey(personId(i), publicId(i))).copy(keys, i * KEY_BYTES);
  console.log(`  keys hashed after ${(performance.now() / 1000).toFixed(1)} s`);
  const order = sortedOrder(keys, docs);
  console.log(`  keys sorted after ${(performance.now() / 1000).toFixed(1)} s`);
  const io = new LedgerIo(false);
  const writer = await SegmentWriter.create(dir, segmentName(1), docs, io);
  for (let j = 0; j < docs; j++) {
    const i = order[j]!;
    const key = keys.subarray(i * KEY_BYTES, (i + 1) * KEY_BYTES);
    await writer.add(key, i % STARTED_EVERY === 0 ? { state: 'started', sha256: shaOf(key), attempt: randomUUID() } : { state: 'stored', sha256: shaOf(key) });
  }
  const segment = await writer.finish();
  const { manifest } = (await readManifest(dir))!;
  await writeManifest(dir, { ...manifest, version: manifest.version + 1, segments: [segment], documents: docs, nextSegment: 2 }, io);
  return docs;
}

/** Appends to the journal, as import processes would have, until it reaches its bound. */
async function appendJournal(stateDir: string, _keys: number): Promise<number> {
  const ledger = await Ledger.open(stateDir, API, { syncIo: true });
  const file = ledger.file;
  await ledger.close();
  const out = createWriteStream(file, { flags: 'a' });
  let bytes = 0;
  let n = 0;
  for (let i = docs; bytes < JOURNAL_MAX_BYTES * 0.98; i++, n++) {
    const doc = { personId: personId(i), publicId: publicId(i) };
    const sha = shaOf(documentKey(ledgerKey(doc.personId, doc.publicId)));
    const lines = `${JSON.stringify({ op: 'start', ...doc, sha256: sha, attempt: randomUUID(), at: Date.now(), w: 'benchimp', s: 2 * n + 1 })}\n${JSON.stringify({ op: 'stored', ...doc, sha256: sha, bytes: 123456, at: Date.now(), w: 'benchimp', s: 2 * n + 2 })}\n`;
    bytes += Buffer.byteLength(lines);
    if (!out.write(lines)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'close');
  console.log(`journal: ${n.toLocaleString('en')} documents, ${mb(bytes)} MB`);
  return n;
}

function run(dir: string, journalDocs: number): unknown {
  const child = spawnSync(process.execPath, ['--expose-gc', '--import', 'tsx', import.meta.filename, '--probe', dir, '--docs', String(docs), '--journal-docs', String(journalDocs), '--seconds', values.seconds!], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'inherit'],
    maxBuffer: 1 << 20,
  });
  if (child.status !== 0) throw new Error(`probe failed (${child.status})`);
  const result = JSON.parse(child.stdout.trim().split('\n').at(-1)!);
  console.log(JSON.stringify(result));
  return result;
}

/** In a fresh process: open, first lookup, lookups per second, then (full journal) the fold. */
async function probe(stateDir: string): Promise<void> {
  const journalDocs = Number(values['journal-docs']);
  const total = docs + journalDocs;
  const check = async (ledger: Ledger, i: number) => {
    const key = documentKey(ledgerKey(personId(i), publicId(i)));
    const got = await ledger.lookup(personId(i), publicId(i));
    const want = i < docs && i % STARTED_EVERY === 0 ? 'started' : 'stored';
    if (got?.state !== want || got.sha256 !== shaOf(key)) throw new Error(`document ${i}: ${JSON.stringify(got)}, expected ${want}`);
  };
  global.gc?.();
  const rssBefore = process.memoryUsage().rss;
  const t0 = performance.now();
  const ledger = await Ledger.open(stateDir, API);
  const openMs = performance.now() - t0;
  await check(ledger, Math.floor(docs / 3));
  const firstLookupMs = performance.now() - t0;
  const rssAfterOpen = process.memoryUsage().rss;
  const atOpen = await ledger.stats();
  // (stats() looked every document of the journal index up once, after its snapshot: not lookups.)
  const readsBeforeLookups = (await ledger.stats()).reads;

  // Lookups: known documents at random (old and recent), and unknown ones.
  const seconds = Number(values.seconds);
  let hits = 0;
  let misses = 0;
  let seed = 12345;
  const random = () => ((seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31);
  const until = performance.now() + seconds * 1000;
  while (performance.now() < until) {
    for (let k = 0; k < 100; k++) {
      await check(ledger, Math.floor(random() * total));
      hits++;
      if ((await ledger.lookup('ffffffff-0000-4000-8000-000000000000', `${misses.toString(16).padStart(8, '0')}-2222-4222-8222-222222222222`)) !== undefined) throw new Error('unknown document found');
      misses++;
    }
  }
  const lookupSeconds = seconds + (performance.now() - until) / 1000;
  const rssAfterLookups = process.memoryUsage().rss;
  global.gc?.();
  const heapAfterLookups = process.memoryUsage().heapUsed;
  const stats = await ledger.stats();
  const result: Record<string, unknown> = {
    documents: stats.documents,
    journalDocs,
    openMs: Math.round(openMs),
    firstLookupMs: Math.round(firstLookupMs),
    rssBeforeOpenMB: mb(rssBefore),
    addedRssAtOpenMB: mb(rssAfterOpen - rssBefore),
    addedRssAfterLookupsMB: mb(rssAfterLookups - rssBefore),
    ...(global.gc ? { heapAfterLookupsAndGcMB: mb(heapAfterLookups) } : {}),
    bytesReadAtOpen: atOpen.bytesRead,
    readsAtOpen: atOpen.reads,
    lookupsPerSecond: Math.round((hits + misses) / lookupSeconds),
    readsPerLookup: Math.round(((stats.reads - readsBeforeLookups) / (hits + misses)) * 10) / 10,
    bytesOnDisk: stats.bytesOnDisk,
    bytesPerDocument: Math.round((stats.bytesOnDisk / stats.documents) * 10) / 10,
    segments: stats.segments,
  };
  if (journalDocs > 0) {
    const t1 = performance.now();
    const outcome = await ledger.compact();
    const after = await ledger.stats();
    Object.assign(result, {
      foldOutcome: outcome,
      foldSeconds: Math.round((performance.now() - t1) / 100) / 10,
      segmentsAfterFold: after.segments,
      documentsAfterFold: after.documents,
      recentDocumentsAfterFold: after.recentDocuments,
      peakRssMB: mb(process.resourceUsage().maxRSS * 1024),
    });
  }
  await ledger.close();
  console.log(JSON.stringify(result));
}
