import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { readRecords, writeReliabilityDoc } from './reliability-doc.ts';

declare module 'vitest' {
  export interface ProvidedContext {
    chaosRecords: string;
  }
}

/**
 * Every chaos test file runs in a process of its own: each writes what it saw into one folder,
 * and docs/reliability.md is written once, from all of them, when the suite ends.
 */
export default function setup(project: TestProject): () => void {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'idsync-chaos-records-'));
  project.provide('chaosRecords', dir);
  const loadAtStart = os.loadavg()[0]!;
  return () => {
    try {
      // Only a whole run (`npm run test:chaos`, no filter) rewrites the table: a run of one
      // scenario would replace the others' rows with nothing.
      if (!project.vitest.config.testNamePattern && !project.vitest.config.filters?.length) {
        // The times depend on what else the machine runs: say how busy it was.
        writeReliabilityDoc(readRecords(dir), { load: [loadAtStart, os.loadavg()[0]!], cores: os.availableParallelism() });
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
}
