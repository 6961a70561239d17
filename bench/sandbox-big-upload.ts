/**
 * Proves that uploads stream: sends one large upload (default 1 GiB, generated on the fly,
 * never held in memory) to a sandbox running in a child process and samples that process's
 * RSS. Fails when the peak exceeds 150 MB. Run:
 *   node --import tsx bench/sandbox-big-upload.ts [megabytes]
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { request } from 'node:http';
import path from 'node:path';

const megabytes = Number(process.argv[2] ?? 1024);
const root = path.resolve(import.meta.dirname, '..');
const child = spawn(process.execPath, [path.join(root, 'bin/idsync.js'), 'sandbox', '--user', 'big:big', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
const url = await new Promise<string>((resolve) => {
  let out = '';
  child.stdout!.on('data', (d) => {
    out += String(d);
    const m = /^url: (\S+)$/m.exec(out);
    if (m) resolve(m[1]!);
  });
});
const rssMb = () => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'))![1]) / 1024;
let peak = rssMb();
const sampler = setInterval(() => (peak = Math.max(peak, rssMb())), 50);

const { token } = (await (await fetch(`${url}/api/v1/authenticate`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{"username":"big","password":"big"}' })).json()) as { token: string };
const boundary = 'bigboundary';
const head = `--${boundary}\r\nContent-Disposition: form-data; name="personId"\r\n\r\n6fa459ea-ee8a-4ca4-894e-db77e160355e\r\n--${boundary}\r\nContent-Disposition: form-data; name="name"\r\n\r\nbig\r\n--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.bin"\r\nContent-Type: application/octet-stream\r\n\r\n`;
const tail = `\r\n--${boundary}--\r\n`;
const chunk = Buffer.alloc(1024 * 1024, 0x61);
const started = Date.now();
const status = await new Promise<number>((resolve, reject) => {
  const req = request(`${url}/api/v1/people/fileDocuments/upload`, {
    method: 'POST',
    headers: { authorization: `Bearer ${token}`, 'content-type': `multipart/form-data; boundary=${boundary}`, 'content-length': head.length + megabytes * chunk.length + tail.length },
  }, (res) => {
    res.resume();
    resolve(res.statusCode!);
  });
  req.on('error', reject);
  req.write(head);
  let sent = 0;
  const pump = () => {
    while (sent < megabytes) {
      sent++;
      if (!req.write(chunk)) return void req.once('drain', pump);
    }
    req.end(tail);
  };
  pump();
});
clearInterval(sampler);
child.kill('SIGTERM');
const seconds = (Date.now() - started) / 1000;
console.log(`upload of ${megabytes} MiB answered ${status} in ${seconds.toFixed(1)} s; sandbox peak RSS ${peak.toFixed(0)} MB`);
if (status !== 200 || peak > 150) process.exitCode = 1;
