import { existsSync } from 'node:fs';
import http from 'node:http';

/** Where the Docker engine's API is: DOCKER_HOST (unix:// or tcp://), else the default socket. */
export function dockerEndpoint(env: NodeJS.ProcessEnv = process.env): http.RequestOptions | undefined {
  const host = env.DOCKER_HOST;
  if (host?.startsWith('unix://')) return { socketPath: host.slice('unix://'.length) };
  if (host?.startsWith('tcp://')) {
    const u = new URL(host.replace(/^tcp:/, 'http:'));
    return { host: u.hostname, port: Number(u.port || 2375) };
  }
  if (host) return undefined; // ssh:// and friends: leave those to testcontainers' own discovery
  return existsSync('/var/run/docker.sock') ? { socketPath: '/var/run/docker.sock' } : undefined;
}

/**
 * Whether the engine answers and already holds `image` (GET /images/{name}/json): no pull is ever
 * tried, so a machine without a registry, an engine or the image learns it at once.
 */
export function localImageExists(image: string, endpoint: http.RequestOptions, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ ...endpoint, path: `/images/${encodeURIComponent(image)}/json`, timeout: timeoutMs }, (res) => {
      res.resume();
      resolve(res.statusCode === 200);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}
