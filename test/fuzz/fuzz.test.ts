// The endpoint fuzzer's short runs (the full one is `npm run fuzz`): generated requests against a real
// 3-node cluster, open and secured, with the same checks. FUZZ_SEED picks the seed (default fixed).
import { expect, it } from 'vitest'
import { formatReport, fuzzCluster } from './fuzz.js'

const seed = Number(process.env.FUZZ_SEED ?? 20240611)

it('an open 3-node cluster survives 2000 fuzzed requests to every endpoint: no 500, no crash, JSON errors, data intact', async () => {
  const report = await fuzzCluster({ seed, requests: 2000, checkedKeys: 100, timeBudgetMs: 60_000 })
  const text = formatReport(report)
  expect(report.sent, text).toBe(2000)
  expect(report.failures, text).toEqual([])
  expect(report.problems, text).toEqual([])
  expect(report.keysIntact, text).toBe(100)
}, 120_000)

it('a secured 3-node cluster survives 2000 fuzzed requests with mixed credentials and forged versions and gossip: every forgery refused, data and membership intact', async () => {
  const report = await fuzzCluster({ seed: seed + 1, requests: 2000, checkedKeys: 100, timeBudgetMs: 60_000, secure: true })
  const text = formatReport(report)
  expect(report.sent, text).toBe(2000)
  expect(report.failures, text).toEqual([])
  expect(report.problems, text).toEqual([])
  expect(report.keysIntact, text).toBe(100)
  // Credentials were refused and roles enforced: both answers appear among the replies.
  expect(Object.keys(report.byStatus).some((k) => k.startsWith('401 ZH_UNAUTHENTICATED')), text).toBe(true)
  expect(Object.keys(report.byStatus).some((k) => k.startsWith('403 ZH_FORBIDDEN')), text).toBe(true)
}, 120_000)
