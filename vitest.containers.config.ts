import { defineConfig } from 'vitest/config';

// `npm run test:containers`: Docker images and the compose stack (test/containers/). Not part of
// `npm test`: it needs a Docker engine, builds images (minutes the first time) and runs ~3 minutes.
export default defineConfig({
  test: {
    include: ['test/containers/**/*.test.ts'],
    pool: 'forks',
    fileParallelism: false,
    testTimeout: 900_000,
    hookTimeout: 1_800_000,
  },
});
