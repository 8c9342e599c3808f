import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start real registries and servers on 127.0.0.1; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
  },
});
