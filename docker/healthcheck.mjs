#!/usr/bin/env node
// Container healthcheck for idsync, dependency-free (it runs every 30 s: no bundle, no packages).
//
// - IDSYNC_METRICS_LISTEN=HOST:PORT set: GET http://127.0.0.1:PORT/healthz must answer 2xx.
// - else each configured dependency must answer:
//     REDIS_URL      a raw PING (AUTH first when the URL has a password; TLS for rediss://;
//                    the first answering sentinel of redis+sentinel://)
//     IDSYNC_API_URL POST <url>/api/v1/authenticate with IDSYNC_USERNAME and IDSYNC_PASSWORD
//                    (or IDSYNC_PASSWORD_FILE) must answer 200 (IDSYNC_CA_FILE, IDSYNC_INSECURE_TLS
//                    honoured)
// Reads the environment only (not --config files). Prints one line; never a password, a token or
// a URL's credentials. Exit 0 healthy, 1 not.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';

const TIMEOUT_MS = Number(process.env.IDSYNC_HEALTHCHECK_TIMEOUT_MS ?? 5000);
const env = process.env;

/** host:port of a URL with its credentials left out. */
function where(u) {
  return `${u.protocol}//${u.host}${u.pathname === '/' ? '' : u.pathname}`;
}

function withTimeout(promise, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${TIMEOUT_MS} ms`)), TIMEOUT_MS);
    }),
  ]).finally(() => clearTimeout(timer));
}

/** One RESP command as an array of bulk strings (safe for any byte in a password). */
function resp(...args) {
  return args.map((a) => Buffer.from(a, 'utf8')).reduce((acc, b) => `${acc}$${b.length}\r\n${b.toString('utf8')}\r\n`, `*${args.length}\r\n`);
}

/** Sends AUTH (when given) and PING; resolves when PONG comes back. */
function redisPing({ host, port, path, useTls, servername, ca, username, password }) {
  return new Promise((resolve, reject) => {
    const socket = path
      ? net.connect({ path })
      : useTls
        ? tls.connect({ host, port, servername, ca, rejectUnauthorized: true })
        : net.connect({ host, port });
    let buffer = '';
    const expected = [];
    socket.setEncoding('utf8');
    socket.on(useTls ? 'secureConnect' : 'connect', () => {
      let out = '';
      if (password !== undefined) {
        out += username ? resp('AUTH', username, password) : resp('AUTH', password);
        expected.push('AUTH');
      }
      out += resp('PING');
      expected.push('PING');
      socket.write(out);
    });
    socket.on('data', (chunk) => {
      buffer += chunk;
      let end;
      while ((end = buffer.indexOf('\r\n')) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        const step = expected.shift();
        if (line.startsWith('-')) {
          socket.destroy();
          // Redis error lines name the problem (WRONGPASS, NOAUTH, LOADING ...), never the password.
          reject(new Error(`${step} answered ${line.slice(1).split(' ')[0]}`));
          return;
        }
        if (step === 'PING') {
          socket.end();
          resolve(line.slice(1));
          return;
        }
      }
    });
    socket.on('error', (err) => reject(new Error(err.code ?? err.message)));
    socket.on('close', () => reject(new Error('connection closed')));
  });
}

async function checkRedis(text) {
  const sentinel = /^redis\+sentinels?:\/\/(?:([^@/]*)@)?([^/]+)/i.exec(text);
  if (sentinel) {
    // The URL's credentials may be the master's: a sentinel is only PINGed, and NOAUTH counts as alive.
    const nodes = sentinel[2].split(',');
    const errors = [];
    for (const node of nodes) {
      const u = new URL(`redis://${node}`);
      try {
        await withTimeout(redisPing({ host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 26379), useTls: /^redis\+sentinels/i.test(text), servername: u.hostname }), `sentinel ${node}`);
        return `sentinel ${node} PONG`;
      } catch (err) {
        if (/^PING answered NOAUTH/.test(err.message)) return `sentinel ${node} answers (NOAUTH)`;
        errors.push(`${node}: ${err.message}`);
      }
    }
    throw new Error(`no sentinel answered (${errors.join('; ')})`);
  }
  const u = new URL(text);
  const password = u.password ? decodeURIComponent(u.password) : undefined;
  const username = u.username ? decodeURIComponent(u.username) : undefined;
  const caFile = env.IDSYNC_REDIS_CA_FILE;
  const target =
    u.protocol === 'unix:'
      ? { path: u.pathname }
      : { host: u.hostname.replace(/^\[|\]$/g, ''), port: Number(u.port || 6379), useTls: u.protocol === 'rediss:', servername: u.hostname, ca: caFile ? readFileSync(caFile) : undefined };
  const label = u.protocol === 'unix:' ? `unix:${u.pathname}` : `${u.protocol}//${u.host}`;
  await withTimeout(redisPing({ ...target, username, password }), `redis ${label}`);
  return `redis ${label} PONG`;
}

function readPassword() {
  if (env.IDSYNC_PASSWORD) return env.IDSYNC_PASSWORD;
  if (env.IDSYNC_PASSWORD_FILE) return readFileSync(env.IDSYNC_PASSWORD_FILE, 'utf8').replace(/\r?\n$/, '');
  return undefined;
}

function request(url, { method = 'GET', headers = {}, body, ca, insecure } = {}) {
  return new Promise((resolve, reject) => {
    const lib = url.protocol === 'https:' ? https : http;
    const req = lib.request(url, { method, headers, ca, rejectUnauthorized: !insecure, agent: false }, (res) => {
      res.resume(); // the body (a token on success) is never read, let alone printed
      res.on('end', () => resolve(res.statusCode));
      res.on('error', reject);
    });
    req.on('error', (err) => reject(new Error(err.code ?? err.message)));
    req.end(body);
  });
}

async function checkApi(text) {
  const base = new URL(text);
  const username = env.IDSYNC_USERNAME;
  const password = readPassword();
  if (!username || password === undefined) throw new Error('IDSYNC_USERNAME and IDSYNC_PASSWORD (or IDSYNC_PASSWORD_FILE) are needed to check the API login');
  // Resolved by appending, not URL resolution: the base's path prefix must be kept.
  const url = new URL(`${base.href.replace(/\/+$/, '')}/api/v1/authenticate`);
  const body = JSON.stringify({ username, password });
  const insecure = /^(1|true|yes|on)$/i.test(env.IDSYNC_INSECURE_TLS ?? '');
  const ca = env.IDSYNC_CA_FILE ? readFileSync(env.IDSYNC_CA_FILE) : undefined;
  const status = await withTimeout(
    request(url, { method: 'POST', headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) }, body, ca, insecure }),
    `login at ${where(base)}`,
  );
  if (status !== 200) throw new Error(`login at ${where(base)} answered ${status}`);
  return `api login at ${where(base)} 200`;
}

async function checkMetrics(listen) {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
  if (!m) throw new Error(`IDSYNC_METRICS_LISTEN must be HOST:PORT, not ${JSON.stringify(listen)}`);
  const host = m[1] ?? m[2];
  // A wildcard listen address is reached on loopback from inside the container.
  const target = !host || host === '0.0.0.0' ? '127.0.0.1' : host === '::' ? '[::1]' : host.includes(':') ? `[${host}]` : host;
  const url = new URL(`http://${target}:${m[3]}/healthz`);
  const status = await withTimeout(request(url), `GET ${url.href}`);
  if (status < 200 || status > 299) throw new Error(`GET ${url.href} answered ${status}`);
  return `${url.href} ${status}`;
}

async function main() {
  const checks = [];
  if (env.IDSYNC_METRICS_LISTEN) checks.push(['healthz', () => checkMetrics(env.IDSYNC_METRICS_LISTEN)]);
  else {
    if (env.REDIS_URL) checks.push(['redis', () => checkRedis(env.REDIS_URL)]);
    if (env.IDSYNC_API_URL) checks.push(['api', () => checkApi(env.IDSYNC_API_URL)]);
  }
  if (checks.length === 0) {
    console.log('unhealthy: nothing to check (set IDSYNC_METRICS_LISTEN, or REDIS_URL and/or IDSYNC_API_URL)');
    return 1;
  }
  const results = await Promise.allSettled(checks.map(([, run]) => run()));
  const failed = results.map((r, i) => (r.status === 'rejected' ? `${checks[i][0]}: ${r.reason.message}` : undefined)).filter(Boolean);
  if (failed.length > 0) {
    console.log(`unhealthy: ${failed.join('; ')}`);
    return 1;
  }
  console.log(`healthy: ${results.map((r) => r.value).join(', ')}`);
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.log(`unhealthy: ${err.message}`);
    process.exit(1);
  },
);
