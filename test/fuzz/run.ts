// `npm run fuzz`: the endpoint fuzzer's full run against a real 3-node cluster (see fuzz.ts).
// Knobs: FUZZ_SEED (default: drawn, and printed), FUZZ_REQUESTS (default 100000), FUZZ_CONCURRENCY
// (48), FUZZ_ONLY=i,j (replay those indices of the seed), FUZZ_FORGED=1 (also well-formed forged
// store sets and gossip entries: only once node-to-node authentication refuses them),
// FUZZ_BUDGET_S (900). Exits 1 on any failure or problem.
import { formatReport, fuzzCluster } from './fuzz.js'

const env = (name: string) => process.env[name]
const seed = env('FUZZ_SEED') ? Number(env('FUZZ_SEED')) : Math.floor(Math.random() * 2 ** 31)
const only = env('FUZZ_ONLY')?.split(',').map(Number)
if (!Number.isSafeInteger(seed) || (only && only.some((i) => !Number.isSafeInteger(i) || i < 0))) {
  process.stderr.write('FUZZ_SEED and FUZZ_ONLY must be whole numbers\n')
  process.exit(2)
}
const requests = Number(env('FUZZ_REQUESTS') ?? 100_000)
process.stdout.write(`fuzz: seed ${seed} (replay with FUZZ_SEED=${seed}), ${only ? `indices ${only.join(',')}` : `${requests} requests`}\n`)
const report = await fuzzCluster({
  seed,
  requests,
  only,
  concurrency: Number(env('FUZZ_CONCURRENCY') ?? 48),
  forged: env('FUZZ_FORGED') === '1',
  timeBudgetMs: Number(env('FUZZ_BUDGET_S') ?? 900) * 1000,
  log: (line) => process.stdout.write(`${line}\n`),
})
process.stdout.write(`${formatReport(report)}\n`)
process.stdout.write(`requests by kind: ${JSON.stringify(report.byKind)}\n`)
process.exit(report.failures.length > 0 || report.problems.length > 0 ? 1 : 0)
