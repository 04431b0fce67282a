// npm run sim -- [--seeds N] [--seed S] [--log] [--verbose] [--bail]
// Runs N seeds from S (default: seeds 1..100; --seed S alone runs that one seed). A failing seed
// prints its violations and the one command that replays it; --log prints each run's event log;
// --verbose a line per seed with its faults; --bail stops at the first failing seed. Exit 1 if a
// seed failed, 2 on bad arguments.
import { parseArgs } from 'node:util'
import { replayCommand, summary, sweep } from './sweep.js'

function usage(message: string): never {
  console.error(`${message}\nusage: npm run sim -- [--seeds N] [--seed S] [--log] [--verbose] [--bail]`)
  process.exit(2)
}

let values
try {
  values = parseArgs({
    options: {
      seeds: { type: 'string' },
      seed: { type: 'string' },
      log: { type: 'boolean', default: false },
      verbose: { type: 'boolean', default: false },
      bail: { type: 'boolean', default: false },
    },
  }).values
} catch (err) {
  usage((err as Error).message)
}
const count = values.seeds !== undefined ? Number(values.seeds) : values.seed !== undefined ? 1 : 100
const first = values.seed !== undefined ? Number(values.seed) : 1
if (!Number.isSafeInteger(count) || count < 1) usage(`--seeds takes a positive integer, got ${values.seeds}`)
if (!Number.isSafeInteger(first) || first < 0) usage(`--seed takes a non-negative integer, got ${values.seed}`)

const s = await sweep(first, count, {
  keepLog: values.log,
  bail: values.bail,
  onResult: (r, ms) => {
    if (values.log) for (const line of r.log ?? []) console.log(line)
    const failed = r.violations.length > 0
    if (values.verbose || failed) {
      console.log(`seed ${r.seed}: ${failed ? 'FAILED' : 'ok'} in ${ms.toFixed(0)} ms (${(r.virtualMs / 1000).toFixed(1)} s virtual, quiet ${(r.quietMs / 1000).toFixed(1)} s after healing), ${r.ops.length} ops, ${r.faults.length} faults, digest ${r.digest.slice(0, 16)}`)
      if (values.verbose) console.log(`  faults: ${r.faults.join('; ') || 'none'}`)
    }
    if (failed) {
      for (const v of r.violations.slice(0, 20)) console.log(`  ${v}`)
      console.log(`  replay: ${replayCommand(r.seed)}`)
    }
  },
})
if (values.bail && s.failures.length > 0) console.log(`first failure after ${(s.ms / 1000).toFixed(1)} s, ${s.runs} seeds`)
console.log(summary(s))
process.exit(s.failures.length > 0 ? 1 : 0)
