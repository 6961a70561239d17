import { mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { parse } from 'csv-parse/sync';
import { stringify } from 'csv-stringify/sync';
import { loadConfig } from '../config/load.ts';
import type { Logger } from '../log.ts';
import { ensureRedisServer } from '../store/redis/redis-binary.ts';
import { hashFile } from '../sources/file-hash.ts';
import { startSandbox } from '../sandbox/index.ts';
import { runImportExport } from './import-export/run-import-export.ts';

export interface DemoOptions {
  /** Repository root holding examples/. */
  root: string;
  stateDir: string;
  redisUrl?: string;
  log: Logger;
  signal: AbortSignal;
  out?: (line: string) => void;
  /** Default ./idsync-reports (demo-* folders inside). */
  reportsDir?: string;
  /** Default ./idsync-demo-export. */
  exportDir?: string;
}

/**
 * `npm run demo`: a whole migration rehearsed on this machine, with nothing to set up: the
 * built-in sandbox API, a private Redis, the sample scans of examples/. Imports them, exports
 * them back with some face photos, checks every byte, and reruns the import to show that a
 * rerun sends nothing.
 */
export async function runDemo(options: DemoOptions): Promise<number> {
  const out = options.out ?? ((line: string) => process.stdout.write(`${line}\n`));
  const { log, signal } = options;
  if (!options.redisUrl) ensureRedisServer({ allowInstall: true, say: (line) => out(`demo: ${line}`) });
  const work = path.resolve(options.stateDir);
  mkdirSync(work, { recursive: true });
  const password = randomBytes(12).toString('base64url');
  // A fresh sandbox each time: it listens on a new port, so to idsync it is another API, and
  // documents kept from an earlier demo would read as the same document uploaded again.
  const sandboxDir = path.join(work, 'sandbox-documents');
  rmSync(sandboxDir, { recursive: true, force: true });
  const sandbox = await startSandbox({ dir: sandboxDir, users: [{ username: 'demo', password, permissions: ['Add Identity Files', 'Read Identity Files', 'Read Detections', 'Read All Identity'] }], prefix: '/identities' });
  out(`demo: sandbox Identities API at ${sandbox.url} (user "demo"), state in ${work}`);
  try {
    const env = {
      IDSYNC_API_URL: sandbox.url,
      IDSYNC_USERNAME: 'demo',
      IDSYNC_PASSWORD: password,
      IDSYNC_STATE_DIR: work,
      ...(options.redisUrl ? { REDIS_URL: options.redisUrl } : {}),
    };
    const reports = path.resolve(options.reportsDir ?? 'idsync-reports');
    const config = (name: string) => loadConfig({ env: { ...env, IDSYNC_REPORT_DIR: path.join(reports, `demo-${name}`) }, flags: { concurrency: 8 } });

    out('\ndemo 1/3: import the 36 legacy scans listed in examples/import.csv');
    const manifest = path.join(options.root, 'examples', 'import.csv');
    const first = await runImportExport({ command: 'import', manifest, config: config('import'), log, signal, out });
    if (first.exitCode !== 0) return first.exitCode;

    out('\ndemo 2/3: export them back, with 10 enrollment and 10 detection photos');
    const imported = parse(readFileSync(path.join(first.summary.reportDir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    const photos = parse(readFileSync(path.join(options.root, 'examples', 'export-photos.csv')), { columns: true }) as Array<Record<string, string>>;
    const exportRows = [
      ...imported.map((r) => ({ type: 'document', faceId: '', detectionId: '', personId: r.personId!, documentId: r.documentId!, output: '' })),
      ...photos.map((r) => ({ type: r.type!, faceId: r.faceId!, detectionId: r.detectionId ?? '', personId: '', documentId: '', output: '' })),
    ];
    const exportManifest = path.join(work, 'export.csv');
    writeFileSync(exportManifest, stringify(exportRows, { header: true, columns: ['type', 'faceId', 'detectionId', 'personId', 'documentId', 'output'] }));
    const outDir = path.resolve(options.exportDir ?? 'idsync-demo-export');
    const second = await runImportExport({ command: 'export', manifest: exportManifest, outDir, config: config('export'), log, signal, out });
    if (second.exitCode !== 0) return second.exitCode;
    const exported = parse(readFileSync(path.join(second.summary.reportDir, 'report.csv')), { columns: true }) as Array<Record<string, string>>;
    let identical = 0;
    for (let i = 0; i < imported.length; i++) {
      const original = await hashFile(imported[i]!.file!);
      const back = await hashFile(path.join(outDir, exported[i]!.output!));
      if (original.sha256 === back.sha256) identical++;
    }
    out(`demo: ${identical}/${imported.length} documents came back byte-identical; files are in ${outDir}`);

    out('\ndemo 3/3: run the same import again: nothing is sent twice');
    const third = await runImportExport({ command: 'import', manifest, config: config('import-rerun'), log, signal, out });
    const uploads = sandbox.documents().reduce((n, d) => n + d.uploads, 0);
    out(`demo: the sandbox holds ${sandbox.documents().length} documents from ${uploads} uploads`);
    out(`\ndemo finished. Reports: ${reports}/demo-*/ (report.csv, report.jsonl, summary.json, failed.csv)`);
    return identical === imported.length && third.exitCode === 0 ? 0 : 1;
  } finally {
    await sandbox.close();
  }
}
