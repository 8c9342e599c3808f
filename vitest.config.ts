import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start real registries and servers on 127.0.0.1; two cores, so keep the pool small.
    pool: 'forks',
    maxWorkers: 2,
    env: {
      // The AWS SDK warns once per process, in every test file that loads it, that its releases
      // after January 2027 need Node 22; the tests run on the Node this project supports (20.19+).
      AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
    },
  },
});
