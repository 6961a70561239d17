/**
 * Throughput of the sandbox over keep-alive on loopback, measured with autocannon:
 * small uploads per second and photo GETs per second. Run:
 *   node --import tsx bench/sandbox-throughput.ts [seconds]
 */
import autocannon from 'autocannon';
import { startSandbox, PERMISSIONS } from '../src/sandbox/index.ts';

const seconds = Number(process.argv[2] ?? 10);
const sandbox = await startSandbox({ users: [{ username: 'bench', password: 'bench', permissions: [...PERMISSIONS] }] });
const auth = await fetch(`${sandbox.url}/api/v1/authenticate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"bench","password":"bench"}' });
const { token } = (await auth.json()) as { token: string };

const boundary = 'benchboundary7d9';
const part = (name: string, value: string) => `--${boundary}\r\nContent-Disposition: form-data; name="${name}"\r\n\r\n${value}\r\n`;
const body =
  part('personId', '6fa459ea-ee8a-4ca4-894e-db77e160355e') +
  part('name', 'ID Card') +
  `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="id.pdf"\r\nContent-Type: application/pdf\r\n\r\n${'x'.repeat(2048)}\r\n--${boundary}--\r\n`;

async function measure(title: string, opts: autocannon.Options): Promise<number> {
  const result = await autocannon({ connections: 32, pipelining: 1, duration: seconds, ...opts });
  const ok = result['2xx'];
  const perSecond = Math.round(ok / seconds);
  console.log(`${title}: ${perSecond}/s (2xx ${ok}, non-2xx ${result.non2xx}, errors ${result.errors}, p99 ${result.latency.p99} ms)`);
  return perSecond;
}

const photos = await measure('photo GETs', {
  url: `${sandbox.url}/api/v1/people/enrollmentPhoto/3f2504e0-4f89-41d3-9a0c-0305e82c3301`,
  headers: { authorization: `Bearer ${token}` },
});
const uploads = await measure('small uploads (2 KiB)', {
  url: `${sandbox.url}/api/v1/people/fileDocuments/upload`,
  method: 'POST',
  headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}` },
  body,
});
console.log(`stored documents: ${sandbox.stats().uploads}`);
await sandbox.close();
console.log(JSON.stringify({ photosPerSecond: photos, uploadsPerSecond: uploads }));
