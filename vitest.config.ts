import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const src = (p: string) => fileURLToPath(new URL(p, import.meta.url))

export default defineConfig({
  resolve: {
    // Tests run against the sources; the node processes that integration tests start run the build.
    alias: {
      '@zerohop/core': src('./packages/core/src/index.ts'),
      '@zerohop/client': src('./packages/client/src/index.ts'),
      '@zerohop/server': src('./server/src/index.ts'),
    },
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'server/test/**/*.test.ts', 'test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Integration suites start real node processes; keep them from fighting over 2 cores.
    maxWorkers: 2,
  },
})
