// The endpoint fuzzer's short run (the full one is `npm run fuzz`): a few thousand generated requests
// against a real 3-node cluster, with the same checks. FUZZ_SEED picks the seed (default fixed).
import { expect, it } from 'vitest'
import { formatReport, fuzzCluster } from './fuzz.js'

it('a real 3-node cluster survives 3000 fuzzed requests to every endpoint: no 500, no crash, JSON errors, data intact', async () => {
  const seed = Number(process.env.FUZZ_SEED ?? 20240611)
  const report = await fuzzCluster({ seed, requests: 3000, checkedKeys: 100, timeBudgetMs: 60_000 })
  const text = formatReport(report)
  expect(report.sent, text).toBe(3000)
  expect(report.failures, text).toEqual([])
  expect(report.problems, text).toEqual([])
  expect(report.keysIntact, text).toBe(100)
}, 120_000)
