import { UsageError } from '../../errors.ts';
import type { ApiStore } from '../../store/api-store.ts';
import type { RunMeta } from '../../store/run-store.ts';

export interface FoundRun {
  store: ApiStore;
  meta: RunMeta;
}

const startOf = (m: RunMeta) => m.startedAt ?? m.createdAt;

/** The runs of these APIs, the latest start first. */
export async function listRunMetas(stores: ApiStore[]): Promise<FoundRun[]> {
  const lists = await Promise.all(stores.map(async (store) => (await store.listRuns()).map((meta) => ({ store, meta }))));
  return lists.flat().sort((a, b) => startOf(b.meta) - startOf(a.meta));
}

/**
 * The run an operator means: RUN exactly, or the one run whose id starts with it; without RUN,
 * the latest running run (else the latest run, with a note saying none runs).
 */
export async function pickRun(stores: ApiStore[], runArg: string | undefined): Promise<FoundRun & { note?: string }> {
  if (stores.length === 0) throw new UsageError('this Redis holds no idsync runs (no command has run against it under this key prefix)');
  if (runArg) {
    if (/^[A-Za-z0-9_.-]+$/.test(runArg)) {
      for (const store of stores) {
        const meta = await store.run(runArg).getMeta();
        if (meta) return { store, meta };
      }
    }
    const matches = (await listRunMetas(stores)).filter((r) => r.meta.runId.startsWith(runArg));
    if (matches.length === 1) return matches[0]!;
    if (matches.length > 1) throw new UsageError(`${JSON.stringify(runArg)} names ${matches.length} runs: ${matches.slice(0, 10).map((r) => r.meta.runId).join(', ')}${matches.length > 10 ? ', …' : ''}; give more of the id`);
    throw new UsageError(`no run ${JSON.stringify(runArg)} in this Redis${stores.length === 1 ? ` for ${stores[0]!.apiUrl}` : ''}; \`idsync runs\` lists them`);
  }
  const runs = await listRunMetas(stores);
  const running = runs.find((r) => r.meta.state === 'running');
  if (running) return running;
  if (runs.length === 0) throw new UsageError(`no runs recorded in this Redis${stores.length === 1 ? ` for ${stores[0]!.apiUrl}` : ''}`);
  return { ...runs[0]!, note: 'no run is running now; this is the latest one' };
}
