import type { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { startSandbox, parseUserSpec, type FaultSettings, type Sandbox, type SandboxOptions } from '../sandbox/index.ts';
import { ExitCode } from '../engine/outcome.ts';
import { installInterrupt } from './interrupt.ts';
import { setupRuntime } from './runtime.ts';

function num(opts: Record<string, unknown>, name: string, flag: string): number | undefined {
  const v = opts[name];
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`${flag} must be a number >= 0, not ${JSON.stringify(v)}`);
  return n;
}

/** `idsync sandbox`: flags in, startSandbox, print how to use it, serve until Ctrl-C. */
export async function run(_args: unknown[], opts: Record<string, unknown>, _cmd: Command): Promise<number> {
  const { log } = setupRuntime('sandbox', opts);
  if ((opts.cert === undefined) !== (opts.key === undefined)) throw new UsageError('--cert and --key go together');
  if (opts.tls && opts.cert) throw new UsageError('use either --tls (generated certificate) or --cert/--key');
  const faults: FaultSettings = {
    seed: num(opts, 'seed', '--seed'),
    latencyMs: num(opts, 'latency', '--latency'),
    failRate: num(opts, 'failRate', '--fail-rate'),
    throttleRate: num(opts, 'throttleRate', '--throttle-rate'),
    retryAfterSeconds: num(opts, 'retryAfter', '--retry-after'),
    resetRate: num(opts, 'resetRate', '--reset-rate'),
    lostResponseRate: num(opts, 'lostResponseRate', '--lost-response-rate'),
    slowBodyRate: num(opts, 'slowBodyRate', '--slow-body-rate'),
    slowBodyDelayMs: num(opts, 'slowBodyDelay', '--slow-body-delay'),
    revokeEverySeconds: num(opts, 'revokeEvery', '--revoke-every'),
    capacity: num(opts, 'capacity', '--capacity'),
    capacityKnee: num(opts, 'capacityKnee', '--capacity-knee'),
    capacityLatencyMsPerRequest: num(opts, 'capacityLatencyMsPerRequest', '--capacity-latency-ms-per-request'),
  };
  for (const k of Object.keys(faults) as Array<keyof FaultSettings>) if (faults[k] === undefined) delete faults[k];
  const options: SandboxOptions = {
    port: num(opts, 'port', '--port') ?? 0,
    host: opts.host as string | undefined,
    prefix: opts.prefix as string | undefined,
    // IDSYNC_SANDBOX_USERS (specs separated by whitespace): users without a password in the process's argv.
    users: [...((opts.user as string[] | undefined) ?? []), ...(process.env.IDSYNC_SANDBOX_USERS ?? '').split(/\s+/).filter(Boolean)].map(parseUserSpec),
    tokenTtlSeconds: num(opts, 'tokenTtl', '--token-ttl'),
    dir: opts.dir as string | undefined,
    data: opts.data as string | undefined,
    tls: opts.cert ? { cert: opts.cert as string, key: opts.key as string } : opts.tls === true,
    admin: opts.admin === true,
    faults,
    duplicatePolicy: opts.duplicatePolicy as SandboxOptions['duplicatePolicy'],
    keep: opts.keep as SandboxOptions['keep'],
    log,
  };
  const sandbox = await startSandbox(options);
  process.stdout.write(banner(sandbox, options));
  const interrupt = installInterrupt(log, { stopping: 'stopping the sandbox' });
  await new Promise<void>((resolve) => interrupt.signal.addEventListener('abort', () => resolve(), { once: true }));
  interrupt.dispose();
  await sandbox.close();
  // Stopping a server with Ctrl-C is its normal end, not an interrupted run.
  return ExitCode.Ok;
}

function banner(s: Sandbox, o: SandboxOptions): string {
  const user = s.users[0]!;
  const ca = s.caFile ? ` --cacert ${s.caFile}` : '';
  const lines = [
    `idsync sandbox listening on ${s.url}`,
    `url: ${s.url}`,
    ...s.users.map((u) => `user: ${u.username} password: ${u.password} permissions: ${u.permissions.join(', ') || '(none)'}`),
    ...(s.caFile ? [`ca-file: ${s.caFile}   (pass it to idsync --ca-file, or curl --cacert)`] : []),
    o.keep === 'none' ? 'documents: none kept (--keep none): uploads are hashed and counted, then forgotten' : `documents: ${s.dir}${o.dir ? '' : ' (temporary, removed at exit; use --dir to keep them)'}`,
    ...(o.faults?.capacity !== undefined ? [`capacity: ${o.faults.capacity} requests handled at once; more are answered 503`] : []),
    ...(o.admin
      ? [`admin: ${s.origin}/_admin/documents  ${s.origin}/_admin/stats  ${s.origin}/_admin/faults  (POST ${s.origin}/_admin/revoke, /_admin/reset-stats)`]
      : []),
    '',
    'Try it:',
    `  API=${s.url}`,
    `  TOKEN=$(curl -s${ca} -X POST "$API/api/v1/authenticate" -H 'Content-Type: application/json' -d '{"username":"${user.username}","password":"${user.password}"}' | sed 's/.*"token":"\\([^"]*\\)".*/\\1/')`,
    `  curl -s${ca} "$API/api/v1/people/enrollmentPhoto/3f2504e0-4f89-41d3-9a0c-0305e82c3301" -H "Authorization: Bearer $TOKEN" -o enrollment.jpg`,
    `  curl -s${ca} "$API/api/v1/people/detectionPhoto/3f2504e0-4f89-41d3-9a0c-0305e82c3301/7c9e6679-7425-40de-944b-e07fc1f90ae7" -H "Authorization: Bearer $TOKEN" -o detection.jpg`,
    `  curl -s${ca} -X POST "$API/api/v1/people/fileDocuments/upload" -H "Authorization: Bearer $TOKEN" -F "personId=6fa459ea-ee8a-4ca4-894e-db77e160355e" -F "name=ID Card" -F "description=Front of ID" -F "publicId=16fd2706-8baf-433b-82eb-8c7fada847da" -F "file=@id-card.pdf"`,
    `  curl -s${ca} "$API/api/v1/people/6fa459ea-ee8a-4ca4-894e-db77e160355e/fileDocuments/16fd2706-8baf-433b-82eb-8c7fada847da/data" -H "Authorization: Bearer $TOKEN" -o id-card.pdf`,
    `  curl -s${ca} "$API/api/v1/renewToken" -H "Authorization: Bearer $TOKEN"`,
    '',
    'Ctrl-C stops it.',
    '',
  ];
  return lines.join('\n');
}
