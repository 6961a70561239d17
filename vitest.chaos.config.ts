import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/chaos/**/*.test.ts'],
    // chaos-setup.ts writes docs/reliability.md from every file's scenarios when the suite ends.
    globalSetup: ['test/helpers/global-setup.ts', 'test/chaos/chaos-setup.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 600_000,
    hookTimeout: 120_000,
  },
});
