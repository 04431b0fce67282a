// `npm run fuzz`: the endpoint fuzzer's full run against a real 3-node cluster (see fuzz.ts).
// Knobs: FUZZ_SEED (default: drawn, and printed), FUZZ_REQUESTS (default 100000), FUZZ_CONCURRENCY
// (48), FUZZ_ONLY=i,j (replay those indices of the seed), FUZZ_SECURE (default 1: a secured cluster,
// each request with no token, a wrong one or a real one of each role, and well-formed forged store
// sets and gossip entries among them, which must all be refused; 0: an open cluster, without the
// forged kinds unless FUZZ_FORGED=1), FUZZ_BUDGET_S (900). Exits 1 on any failure or problem.
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
  secure: env('FUZZ_SECURE') !== '0',
  forged: env('FUZZ_FORGED') === undefined ? undefined : env('FUZZ_FORGED') === '1',
  timeBudgetMs: Number(env('FUZZ_BUDGET_S') ?? 900) * 1000,
  log: (line) => process.stdout.write(`${line}\n`),
})
process.stdout.write(`${formatReport(report)}\n`)
process.stdout.write(`requests by kind: ${JSON.stringify(report.byKind)}\n`)
process.exit(report.failures.length > 0 || report.problems.length > 0 ? 1 : 0)
