import { appendFileSync, existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';

export interface ChaosRecord {
  scenario: string;
  faults: string;
  items: number;
  succeeded: number;
  lost: number;
  duplicates: number;
  reportComplete: boolean;
  seconds: number;
  requests: Record<string, number>;
  /** What else the scenario saw (uploads in the rerun, ledger writes refused …), one short sentence. */
  notes?: string;
  /** The test file and name that proves it (filled in by record()). */
  test?: string;
}

// Not from helpers/fixtures.ts: this module runs in the global setup too, where vitest's hooks do not.
export const RELIABILITY_DOC = path.resolve(import.meta.dirname, '../../docs/reliability.md');
export const BEGIN = '<!-- chaos-suite:begin (written by npm run test:chaos; edits inside are overwritten) -->';
export const END = '<!-- chaos-suite:end -->';

/** Test files in the order their scenarios are listed. */
const FILE_ORDER = ['import-chaos', 'shared-state-chaos', 'redis-deployment-chaos', 'soak'];

export function appendRecord(dir: string, file: string, r: ChaosRecord): void {
  appendFileSync(path.join(dir, `${file}.jsonl`), `${JSON.stringify(r)}\n`);
}

export function readRecords(dir: string): ChaosRecord[] {
  const files = readdirSync(dir)
    .filter((f) => f.endsWith('.jsonl'))
    .map((f) => f.replace(/\.jsonl$/, ''))
    .sort((a, b) => rank(a) - rank(b) || a.localeCompare(b));
  return files.flatMap((f) =>
    readFileSync(path.join(dir, `${f}.jsonl`), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as ChaosRecord),
  );
}

function rank(file: string): number {
  const i = FILE_ORDER.indexOf(file);
  return i < 0 ? FILE_ORDER.length : i;
}

function cell(text: string): string {
  return text.replace(/\|/g, '\\|').replace(/\n/g, ' ');
}

/** The generated section: what this chaos run saw (the tests assert; this only writes it down). */
export interface RunContext {
  /** 1-minute load average when the suite started and when it ended. */
  load: [number, number];
  cores: number;
}

export function chaosSection(records: ChaosRecord[], context?: RunContext, now = new Date()): string {
  const busy = context ? `, ${context.cores} cores, load average ${context.load[0].toFixed(1)} at the start and ${context.load[1].toFixed(1)} at the end (other work shares the machine: times vary with it)` : '';
  return [
    BEGIN,
    `Last run: ${now.toISOString()}, Node ${process.versions.node}, \`npm run test:chaos\` (${records.length} scenarios)${busy}.`,
    '',
    '| scenario | faults injected | items | succeeded | lost | stored twice | report complete | time | sandbox answers | also seen | test |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...records.map(
      (r) =>
        `| ${cell(r.scenario)} | ${cell(r.faults)} | ${r.items} | ${r.succeeded} | ${r.lost} | ${r.duplicates} | ${r.reportComplete ? 'yes' : '**no**'} | ${r.seconds.toFixed(1)} s | ${Object.entries(r.requests)
          .map(([k, v]) => `${k}: ${v}`)
          .join(', ')} | ${cell(r.notes ?? '')} | ${cell(r.test ?? '')} |`,
    ),
    END,
  ].join('\n');
}

/**
 * Replaces the generated section of docs/reliability.md, leaving the hand-written rest (the
 * attacks and faults list) as it is. Nothing recorded (every test skipped): nothing written.
 */
export function writeReliabilityDoc(records: ChaosRecord[], context?: RunContext): void {
  if (records.length === 0) return;
  const text = existsSync(RELIABILITY_DOC) ? readFileSync(RELIABILITY_DOC, 'utf8') : '';
  const begin = text.indexOf(BEGIN);
  const end = text.indexOf(END);
  if (begin < 0 || end < begin) throw new Error(`${RELIABILITY_DOC} lacks the markers of its generated section (${BEGIN} … ${END})`);
  writeFileSync(RELIABILITY_DOC, `${text.slice(0, begin)}${chaosSection(records, context)}${text.slice(end + END.length)}`);
}
