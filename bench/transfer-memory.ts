/**
 * Opt-in memory check for streaming transfers (not part of `npm test`):
 *
 *   node --import tsx bench/transfer-memory.ts [sizeMiB=1024] [--parse]
 *
 * Uploads and downloads one file of that size through ApiClient against the local test
 * server and prints the peak RSS of each. With streaming, the peak stays flat whatever the
 * size. By default the server only hashes the raw upload stream (so the numbers are the
 * client's); --parse runs the test server's multipart parser as well.
 */
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ApiClient } from '../src/api/client.ts';
import { Secret } from '../src/config/secret.ts';
import { startApiTestServer } from '../test/helpers/api-test-server.ts';
import { peakRssGrowth, writeBigFile } from '../test/helpers/big-file.ts';

const sizeMiB = Number(process.argv.find((a) => /^\d+$/.test(a)) ?? 1024);
const parse = process.argv.includes('--parse');
const size = sizeMiB * 2 ** 20;
const mib = (n: number) => `${(n / 2 ** 20).toFixed(1)} MiB`;

const dir = mkdtempSync(path.join(os.tmpdir(), 'idsync-bench-'));
const server = await startApiTestServer({ password: 'bench-password' });
const client = new ApiClient({ apiUrl: server.url, username: 'migrator', password: new Secret('bench-password') });
try {
  const source = path.join(dir, 'big.bin');
  console.log(`writing ${mib(size)} of random data to ${source} …`);
  const sha = writeBigFile(source, size);
  let received = { bytes: 0, sha256: '' };
  if (!parse) {
    server.fault = async (req, res) => {
      if (!req.url?.includes('/upload')) return false;
      const hash = createHash('sha256');
      let bytes = 0;
      for await (const chunk of req) {
        hash.update(chunk as Buffer);
        bytes += (chunk as Buffer).length;
      }
      received = { bytes, sha256: hash.digest('hex') };
      res.writeHead(200).end();
      return true;
    };
  }
  await client.login();
  const start = process.memoryUsage.rss();
  const t0 = performance.now();
  const up = await peakRssGrowth(() => client.uploadDocument({ personId: 'p', name: 'bench', publicId: 'bench-1', filePath: source }));
  const t1 = performance.now();
  console.log(`upload:   ${mib(up.result.bytes)} in ${((t1 - t0) / 1000).toFixed(1)} s; peak RSS ${mib(up.peak)} (+${mib(up.growth)}; start ${mib(start)})`);
  if (parse) {
    const file = server.documents.get('p/bench-1')?.upload?.file;
    console.log(`          server got ${mib(file?.bytes ?? 0)}, sha256 ${file?.sha256 === sha ? 'matches' : 'DIFFERS'}`);
  } else {
    console.log(`          server got ${mib(received.bytes)} of multipart body (file + parts)`);
  }
  server.documents.set('p/bench-1', { filePath: source });
  const t2 = performance.now();
  const down = await peakRssGrowth(() => client.downloadDocument('p', 'bench-1', path.join(dir, 'out/big.bin')));
  const t3 = performance.now();
  console.log(`download: ${mib(down.result.bytes)} in ${((t3 - t2) / 1000).toFixed(1)} s; peak RSS ${mib(down.peak)} (+${mib(down.growth)}); sha256 ${down.result.sha256 === sha ? 'matches' : 'DIFFERS'}`);
} finally {
  await client.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
}
