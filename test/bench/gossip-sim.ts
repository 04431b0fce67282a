// Gossip at scale, as a scenario of the simulator (test/sim/gossip.ts): real StorageNodes with the
// node's gossip defaults (the real Gossip, its phi accrual detectors and seeds) on the simulated
// network and virtual time, everything but gossip idle. Per size: how long the cluster takes to form,
// how long until every node knows a joiner, until the first and the last live node hold a crashed one
// down, how many times a live peer is held down in the steady rounds (calm, and with 2% of messages
// lost), and the bytes gossip costs per node and round.
// Run: node --import tsx test/bench/gossip-sim.ts (npm run bench:sim; about 4 minutes on 2 cores, most
// of it the 100 nodes: every round each node pushes and pulls 100 entries); prints a markdown table and
// writes bench-results/gossip-sim.json.
// Knobs (environment): SIM_SIZES (25,50,100), SIM_RUNS (seeds per size, 1), SIM_STEADY_ROUNDS (120),
// SIM_SEED (1, the first seed).
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { gossipScenario, type GossipFigures } from '../sim/gossip.js'
import { environmentLine, median, mdTable, resultsDir } from './report.js'

function envInts(name: string, dflt: string): number[] {
  const raw = process.env[name] ?? dflt
  const xs = raw.split(',').map((s) => Number(s.trim()))
  if (xs.some((x) => !Number.isInteger(x) || x < 4 || x > 1000)) throw new Error(`${name} must be a comma-separated list of integers from 4 to 1000, got ${raw}`)
  return xs
}
function envInt(name: string, dflt: number, min: number): number {
  const raw = process.env[name]
  const x = raw === undefined ? dflt : Number(raw)
  if (!Number.isInteger(x) || x < min) throw new Error(`${name} must be an integer of at least ${min}, got ${raw}`)
  return x
}

const sizes = envInts('SIM_SIZES', '25,50,100')
const runs = envInt('SIM_RUNS', 1, 1)
const steadyRounds = envInt('SIM_STEADY_ROUNDS', 120, 1)
const firstSeed = envInt('SIM_SEED', 1, 0)

console.log(environmentLine())
const results: { size: number; calm: GossipFigures[]; lossy: GossipFigures[] }[] = []
for (const size of sizes) {
  const calm: GossipFigures[] = []
  const lossy: GossipFigures[] = []
  for (let r = 0; r < runs; r++) {
    calm.push(await gossipScenario({ nodes: size, seed: firstSeed + r, steadyRounds }))
    lossy.push(await gossipScenario({ nodes: size, seed: firstSeed + r, steadyRounds, loss: 0.02 }))
    console.log(`${size} nodes, seed ${firstSeed + r}: ${((calm[r].ms + lossy[r].ms) / 1000).toFixed(1)} s`)
  }
  results.push({ size, calm, lossy })
}

const s = (ms: number) => (Number.isFinite(ms) ? (ms / 1000).toFixed(1) : 'never')
const mm = (xs: number[], f: (x: number) => string) => `${f(median(xs))} / ${f(Math.max(...xs))}`
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)
const rows: string[][] = []
const row = (label: string, f: (r: (typeof results)[number]) => string) => rows.push([label, ...results.map(f)])
row('cluster formed (every founding node serving): s, median / max', (r) => mm(r.calm.map((x) => x.formMs), s))
row('join → known by every node: s, median / max', (r) => mm(r.calm.map((x) => x.joinKnownMs), s))
row('crash → first live node holds it down: s, median / max', (r) => mm(r.calm.map((x) => x.deathFirstMs), s))
row('crash → every live node holds it down: s, median / max', (r) => mm(r.calm.map((x) => x.deathAllMs), s))
row(`live peers held down, ${steadyRounds} calm rounds (all runs)`, (r) => String(sum(r.calm.map((x) => x.falseSuspicions))))
row(`live peers held down, ${steadyRounds} rounds with 2% of messages lost (all runs)`, (r) => String(sum(r.lossy.map((x) => x.falseSuspicions))))
row('gossip bytes per node per round (KiB, median)', (r) => (median(r.calm.map((x) => x.bytesPerNodeRound)) / 1024).toFixed(1))
row('wall time per run (s, median)', (r) => (median(r.calm.map((x) => x.ms)) / 1000).toFixed(1))
console.log(`\n## Gossip over real nodes (simulated network, virtual time; ${runs} seeds per size from ${firstSeed})\n`)
console.log(mdTable(['figure', ...results.map((r) => `${r.size} nodes`)], rows, ['---', ...results.map(() => '---:')]))

mkdirSync(resultsDir, { recursive: true })
writeFileSync(path.join(resultsDir, 'gossip-sim.json'), JSON.stringify({ date: new Date().toISOString(), steadyRounds, runs, firstSeed, results }, (_k, v) => (v === Infinity ? null : v), 2) + '\n')
