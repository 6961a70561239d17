import { describe, expect, it } from 'vitest';
import { runCli } from '../helpers/run-cli.ts';

/**
 * Review: README's configuration table gives every setting a flag, `--redis-prefix P` included,
 * and the job commands take it; the commands that read those runs' Redis (runs, status, cancel,
 * dashboard, limits, schedules) refuse it ("unknown option"), so `idsync import … --redis-prefix X`
 * cannot be followed by `idsync status --redis-prefix X`.
 */
describe('review: --redis-prefix on the commands that read Redis', () => {
  for (const command of ['runs', 'status', 'limits']) {
    it(`idsync ${command} accepts --redis-prefix`, async () => {
      const r = await runCli([command, '--redis-prefix', 'acme', '--redis-url', 'redis://127.0.0.1:1'], { timeoutMs: 30_000 });
      expect(r.stderr).not.toMatch(/unknown option/);
    });
  }
});
