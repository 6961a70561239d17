import { Command, CommanderError, Option } from 'commander';
import { VERSION } from '../version.ts';
import { describeError, IdsyncError } from '../errors.ts';
import { scrubSecrets } from '../secret-text.ts';
import { boundHeapGrowth } from '../memory.ts';
import { readableStack } from '../readable-stack.ts';
import { ExitCode, exitCodeForError } from '../engine/outcome.ts';
import { addConfinementOptions, addConnectionOptions, addJobOptions, addManifestOptions, addStateOptions, commonRedisOption, logLevelOption } from './options.ts';

type Action = (args: unknown[], opts: Record<string, unknown>, cmd: Command) => Promise<number>;

/**
 * Each command's module, loaded only when it runs, so `--help` stays fast. bin/idsync.js loads
 * them all once after building its bundle, so that its V8 code cache covers every command.
 */
export const COMMAND_MODULES = {
  import: () => import('./import.ts'),
  export: () => import('./export.ts'),
  watch: () => import('./watch.ts'),
  archive: () => import('./archive.ts'),
  verify: () => import('./verify.ts'),
  worker: () => import('./worker.ts'),
  sandbox: () => import('./sandbox.ts'),
  demo: () => import('./demo.ts'),
} satisfies Record<string, () => Promise<{ run: Action }>>;

function lazy(load: () => Promise<{ run: Action }>) {
  return async (args: unknown[], opts: Record<string, unknown>, cmd: Command) => (await load()).run(args, opts, cmd);
}

export function buildProgram(onAction: (action: Promise<number>) => void): Command {
  const program = new Command('idsync')
    .description('Move files in bulk between folders and an eConnect Identities server, on BullMQ queues that survive crashes.')
    .version(VERSION, '-V, --version', 'print the version')
    .showHelpAfterError('(run with --help for usage)')
    .configureHelp({ sortSubcommands: false, showGlobalOptions: false })
    // Set before the subcommands are added: commander copies these settings into each of them.
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });

  const wire = (cmd: Command, action: Action) =>
    cmd.action((...all: unknown[]) => {
      const command = all[all.length - 1] as Command;
      const opts = command.opts();
      const args = all.slice(0, -2);
      onAction(action(args, opts, command));
    });

  wire(
    addConfinementOptions(addManifestOptions(addJobOptions(addConnectionOptions(program.command('import').argument('<manifest.csv>', 'CSV: personId, file, name[, description, publicId, ...]'))))).description(
      'upload every document the manifest lists; waits until all are done, writes the report, exits',
    ),
    lazy(COMMAND_MODULES.import),
  );
  wire(
    addConfinementOptions(addManifestOptions(addJobOptions(addConnectionOptions(program.command('export').argument('<manifest.csv>', 'CSV: type, faceId, detectionId, personId, documentId[, output]')))))
      .requiredOption('--out <dir>', 'folder that receives the files')
      .description('download every photo/document the manifest lists into --out; waits, reports, exits'),
    lazy(COMMAND_MODULES.export),
  );
  wire(
    addConfinementOptions(addJobOptions(addConnectionOptions(program.command('watch').argument('<dir>', 'folder to watch: <dir>/<personId>/<file>'))))
      .option('--settle-ms <ms>', 'a file is taken once its size and mtime were stable this long (default: 2000)')
      .option('--poll', 'poll the folder instead of waiting for change events (network shares)')
      .option('--poll-interval <ms>', 'polling interval (default: 2000)')
      .option('--processed-dir <dir>', 'where uploaded files go (default: <dir>/.processed)')
      .option('--delete', 'delete uploaded files instead of moving them')
      .option('--failed-dir <dir>', 'where files that failed for good go (default: <dir>/.failed)')
      .option('--retry-budget <duration>', 'while the API is down or failing (5xx, network, timeouts, 429), retry a file this long after its first failure, e.g. 6h, 90m; 0 = count --attempts [env IDSYNC_RETRY_BUDGET] (default: 6h)')
      .option('--retry-max-delay <duration>', 'longest wait between two tries under --retry-budget [env IDSYNC_RETRY_MAX_DELAY] (default: 5m)')
      .option('--retry-failed', 'first put the files of the failed folder back into the drop folder (with their sidecars; their .error.json notes removed), then watch')
      .description('long-running: upload files dropped into a folder, each to the person its subfolder names'),
    lazy(COMMAND_MODULES.watch),
  );
  wire(
    addConfinementOptions(addJobOptions(addConnectionOptions(program.command('archive'))))
      .requiredOption('--faces <faces.csv>', 'CSV with a faceId column: enrollment photos to archive')
      .requiredOption('--out <dir>', 'archive folder')
      .option('--persons <persons.csv>', 'CSV with a personId column: people whose detection photos to archive')
      .option('--tag <tagId>', 'archive detection photos of the people carrying this tag')
      .option('--since <iso-time>', 'start of the first detection window (default: everything the server lists)')
      .option('--cron <expr>', 'run on this schedule (cron syntax) and stay up as a worker')
      .option('--tz <zone>', 'time zone of --cron (default: UTC)')
      .description('archive enrollment photos and detection photos, once or on a schedule'),
    lazy(COMMAND_MODULES.archive),
  );
  wire(
    addManifestOptions(
      addJobOptions(addConnectionOptions(program.command('verify').argument('<input>', 'an import manifest, a report.csv of an import or export, or an archive folder (or its index.csv)')), { readOnly: true }),
    )
      .option('--out <dir>', "the export's folder, for an export's report.csv (paths in it are relative to it); an archive's, for an index.csv kept elsewhere")
      .option('--remote', 'for an export or archive: compare the files with the server\'s copies too (manifests and import reports always are)')
      .description('prove what the server (or an export or archive folder) holds: each row verified, mismatch, missing or failed; exits 0 only when all are verified'),
    lazy(COMMAND_MODULES.verify),
  );
  wire(
    addConfinementOptions(addJobOptions(addConnectionOptions(program.command('worker')), { worker: true })).description(
      'long-running: process queued jobs only (for extra machines sharing one Redis)',
    ),
    lazy(COMMAND_MODULES.worker),
  );
  wire(
    addStateOptions(program.command('runs'))
      .option('--all', 'every API this Redis has served, not only --api-url\'s')
      .option('--json', 'print JSON')
      .option('--limit <n>', 'most runs listed, the latest (default: 50)')
      .description('list runs: id, command, input, state, counts, start and end, owner and whether it is alive'),
    lazy(() => import('./runs.ts')),
  );
  wire(
    addStateOptions(program.command('status').argument('[run]', 'run id, or its start (default: the latest running run)'))
      .option('--watch', 'draw it again every 2 s until Ctrl-C')
      .option('--json', 'print JSON')
      .option('--all', 'look for the run in every API this Redis has served')
      .description("one run's progress, rate, ETA, queue, retries, error classes and workers; from any terminal"),
    lazy(() => import('./status.ts')),
  );
  wire(
    addStateOptions(program.command('cancel').argument('<run>', 'run id, or its start'))
      .option('--force', 'cancel even though the command that owns the run is alive (it then stops and exits 130)')
      .option('--all', 'look for the run in every API this Redis has served')
      .description("remove a run's queued jobs and mark it cancelled, saying what was removed"),
    lazy(() => import('./cancel.ts')),
  );
  wire(
    addStateOptions(program.command('limits'))
      .option('--clear', 'remove the stored rate limit')
      .option('--all', 'every API this Redis has served')
      .option('--json', 'print JSON')
      .description('show (or --clear) the global rate limit stored by --rate'),
    lazy(() => import('./limits.ts')),
  );
  wire(
    addStateOptions(program.command('schedules').argument('[action]', '`remove` to remove one').argument('[name]', 'the schedule to remove'))
      .option('--json', 'print JSON')
      .description('list the cron schedules stored for the API (archive --cron); `schedules remove NAME` removes one'),
    lazy(() => import('./schedules.ts')),
  );
  wire(
    addStateOptions(program.command('dashboard'))
      .option('--listen <host:port>', 'address to serve on (default: 127.0.0.1:8080); other than loopback only with --auth-token-file')
      .option('--auth-token-file <file>', 'a token that guards the dashboard: bearer token, or basic auth with any user name and the token as password')
      .option('--allow-actions', "allow bull-board's actions (retry, clean, pause, remove jobs); read-only otherwise")
      .option('--all', 'every API this Redis has served, not only --api-url\'s')
      .description('web dashboard of the runs and queues (bull-board and idsync pages); read-only, loopback by default'),
    lazy(() => import('./dashboard.ts')),
  );
  wire(
    program
      .command('sandbox')
      .description('run a local server that imitates the Identities API, for rehearsals, demos and tests')
      .option('--port <n>', 'port (default: 0 = a free one)')
      .option('--host <host>', 'address to listen on (default: 127.0.0.1)')
      .option('--prefix <path>', 'path prefix, e.g. /identities (default: none)')
      .option('--user <name:password[:perm,...]>', 'a user (repeatable); permissions default to all four [env IDSYNC_SANDBOX_USERS: specs separated by spaces, kept out of argv]', (v: string, prev: string[] = []) => [...prev, v])
      .option('--token-ttl <seconds>', 'lifetime of issued tokens (default: 3600)')
      .option('--dir <dir>', 'where uploaded documents are kept (default: a temp dir)')
      .option('--data <file>', 'JSON file pinning people, tags, faces and photos')
      .option('--tls', 'serve HTTPS with a generated self-signed certificate')
      .option('--cert <file>', 'TLS certificate (PEM)')
      .option('--key <file>', 'TLS private key (PEM)')
      .option('--admin', 'enable the /_admin inspection endpoints')
      .option('--seed <n>', 'seed of the fault injection')
      .option('--latency <ms>', 'added latency per request')
      .option('--fail-rate <0..1>', 'share of requests answered 500/502/503')
      .option('--throttle-rate <0..1>', 'share of requests answered 429 with Retry-After')
      .option('--retry-after <seconds>', 'Retry-After of injected 429s (default: 1)')
      .option('--reset-rate <0..1>', 'share of requests whose connection is reset before the response')
      .option('--lost-response-rate <0..1>', 'share of uploads stored but whose response is lost')
      .option('--revoke-every <seconds>', 'revoke every outstanding token this often')
      .option('--slow-body-rate <0..1>', 'share of responses whose body trickles out')
      .option('--slow-body-delay <ms>', 'pause between the pieces of a slow body (default: 200)')
      .option('--capacity <n>', 'most requests handled at once; more are answered 503 (default: no limit)')
      .option('--capacity-knee <n>', 'requests handled at once before latency grows with load (default: half of --capacity)')
      .option('--capacity-latency-ms-per-request <ms>', 'latency added per request handled at once above the knee (default: 0)')
      .addOption(new Option('--keep <what>', 'what is kept of an upload: all (bytes on disk; default) or none (counted, then forgotten: for benches of millions)').choices(['all', 'none']))
      .addOption(new Option('--duplicate-policy <policy>', 're-upload of an existing publicId: store a second copy, overwrite, or reject with 409 (default: store)').choices(['store', 'overwrite', 'reject']))
      .addOption(logLevelOption())
      .addOption(new Option('--log-format <format>').choices(['auto', 'json', 'pretty']).hideHelp()),
    lazy(COMMAND_MODULES.sandbox),
  );
  wire(
    program
      .command('demo')
      .description('rehearse a whole migration locally: sandbox API + private Redis, import examples/, export them back')
      .addOption(commonRedisOption())
      .option('--state-dir <dir>', 'folder for the ledger and the private Redis data (default: <the state dir>/demo)')
      .addOption(logLevelOption()),
    lazy(COMMAND_MODULES.demo),
  );
  return program;
}

/** Runs the command line; returns the exit code (never calls process.exit itself). */
export async function main(argv: string[]): Promise<number> {
  boundHeapGrowth(process.env.IDSYNC_HEAP_GROWING_PERCENT);
  let pending: Promise<number> | undefined;
  const program = buildProgram((action) => {
    pending = action;
  });
  try {
    await program.parseAsync(argv);
    if (!pending) return ExitCode.Ok;
    return await pending;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end here with exit code 0; usage errors were already printed.
      return err.exitCode === 0 ? ExitCode.Ok : ExitCode.CannotStart;
    }
    return reportFatal(err);
  }
}

export function reportFatal(err: unknown): number {
  const code = exitCodeForError(err);
  const message = scrubSecrets(describeError(err));
  if (err instanceof IdsyncError) {
    process.stderr.write(`idsync: ${message}\n`);
  } else {
    process.stderr.write(`idsync: unexpected error: ${message}\n${readableStack(String((err as Error)?.stack ?? ''))}\n`);
  }
  return code;
}
