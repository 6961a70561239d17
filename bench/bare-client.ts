/**
 * The "bare undici" ceiling: the same requests idsync sends (the same hand-built multipart body),
 * over one undici Pool with the same number of connections, no queue, no Redis, no ledger, no hashing. Run as its own process by bench/run.ts:
 *
 *   node --import tsx bench/bare-client.ts JOB.json
 *
 * JOB.json: { url, token, caFile?, concurrency, mode: 'upload' | 'download', durable?, items: [...] }
 * upload items: { personId, publicId, name, file }; download items: { path, out }.
 * durable (downloads): what idsync's guarantees cost at the least, with nothing else of idsync:
 * each body goes to a temp name, is fsynced and renamed, and each folder is fsynced once at the end.
 * Prints one JSON line: { items, ok, ms } (ms from the first request to the last answer).
 */
import { readFileSync, createWriteStream } from 'node:fs';
import { open, readFile, rename } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Pool } from 'undici';
import { multipartBody } from '../src/api/multipart-body.ts';

interface Job {
  url: string;
  token: string;
  caFile?: string;
  concurrency: number;
  mode: 'upload' | 'download';
  durable?: boolean;
  items: Array<Record<string, string>>;
}

const job = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as Job;
const base = new URL(job.url);
const prefix = base.pathname.replace(/\/+$/, '');
const pool = new Pool(base.origin, { connections: job.concurrency, connect: job.caFile ? { ca: readFileSync(job.caFile, 'utf8') } : {} });
const headers = { authorization: `Bearer ${job.token}`, 'user-agent': 'bare-undici' };
let next = 0;
let ok = 0;
const folders = new Set<string>();

async function one(item: Record<string, string>): Promise<void> {
  if (job.mode === 'upload') {
    // The cheapest body there is: the same hand-built multipart buffer idsync sends for small files.
    const data = await readFile(item.file!);
    const form = multipartBody(
      [
        { name: 'personId', value: item.personId! },
        { name: 'name', value: item.name! },
        { name: 'publicId', value: item.publicId! },
      ],
      { field: 'file', fileName: path.basename(item.file!), contentType: 'application/octet-stream', data, size: data.length },
    );
    const res = await pool.request({
      path: `${prefix}/api/v1/people/fileDocuments/upload`,
      method: 'POST',
      headers: { ...headers, 'content-type': form.contentType, 'content-length': String(form.length) },
      body: form.body,
    });
    await res.body.dump();
    if (res.statusCode === 200) ok++;
  } else {
    const res = await pool.request({ path: prefix + item.path!, method: 'GET', headers });
    if (res.statusCode !== 200) {
      await res.body.dump();
      return;
    }
    if (!job.durable) {
      await pipeline(res.body, createWriteStream(item.out!));
      ok++;
      return;
    }
    const temp = `${path.dirname(item.out!)}/.${path.basename(item.out!)}.part`;
    const file = await open(temp, 'wx');
    try {
      for await (const chunk of res.body) await file.write(chunk as Buffer);
      await file.sync();
    } finally {
      await file.close();
    }
    await rename(temp, item.out!);
    folders.add(path.dirname(item.out!));
    ok++;
  }
}

const t0 = performance.now();
await Promise.all(
  Array.from({ length: job.concurrency }, async () => {
    while (next < job.items.length) await one(job.items[next++]!);
  }),
);
for (const dir of folders) {
  const handle = await open(dir, 'r');
  await handle.sync();
  await handle.close();
}
const ms = performance.now() - t0;
await pool.close();
process.stdout.write(`${JSON.stringify({ items: job.items.length, ok, ms })}\n`);
