// Ring simulation: how the partition → owner table (the history replay of packages/core/src/ring.ts)
// behaves at Q = 8192: build time, balance of owned partitions and of replica load (top N = 3 of the
// preference lists), weights, and how much moves when one member joins or leaves, against the ideal
// (the joiner's or leaver's own share). Seeded (mulberry32), so every run draws the same clusters.
//
//   node --import tsx test/bench/ring-sim.ts      → markdown on stdout, JSON in bench-results/ring-sim.json
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Ring, type Departed, type Member } from '../../packages/core/src/ring.js'
import { mulberry32 } from '../harness/prng.js'
import { mdTable as table, median, resultsDir } from './report.js'


const Q = 8192
const N = 3
const SIZES = [10, 100, 1000]
const TRIALS = 50


const random = mulberry32(0x5eed)
const used = new Set<string>()
function freshId(): string {
  for (;;) {
    const id = `n-${Math.floor(random() * 2 ** 32).toString(16).padStart(8, '0')}`
    if (!used.has(id)) {
      used.add(id)
      return id
    }
  }
}
const member = (id: string, weight = 1, since = 0): Member => ({ id, url: `http://${id}:7000`, weight, since })
const founders = (n: number, weight: (i: number) => number = () => 1) => Array.from({ length: n }, (_, i) => member(freshId(), weight(i)))
const ring = (members: readonly Member[], history: readonly Departed[] = []) => new Ring(members, { partitions: Q, n: N, spares: 2, history })

const round = (x: number, digits = 3) => Number(x.toFixed(digits))

function owners(r: Ring): string[] {
  return Array.from({ length: Q }, (_, p) => r.ownerOf(p).id)
}
function topN(r: Ring): string[][] {
  return Array.from({ length: Q }, (_, p) =>
    r
      .preferenceList(p)
      .slice(0, N)
      .map((m) => m.id),
  )
}
/** Partitions in which each member is among the top N of the preference list. */
function replicaLoad(r: Ring): Map<string, number> {
  const load = new Map(r.members.map((m) => [m.id, 0]))
  for (const list of topN(r)) for (const id of list) load.set(id, load.get(id)! + 1)
  return load
}
function spread(values: Iterable<number>): { maxOverMean: number; minOverMean: number } {
  const xs = [...values]
  const mean = xs.reduce((s, x) => s + x, 0) / xs.length
  return { maxOverMean: round(Math.max(...xs) / mean), minOverMean: round(Math.min(...xs) / mean) }
}

/** Owner changes and changed top-N slots between two rings, each against the ideal for member `id`. */
function change(before: Ring, after: Ring, id: string, side: Ring) {
  const o1 = owners(before)
  const o2 = owners(after)
  let moved = 0
  for (let p = 0; p < Q; p++) if (o1[p] !== o2[p]) moved++
  const t1 = topN(before)
  const t2 = topN(after)
  let slots = 0
  for (let p = 0; p < Q; p++) for (const x of t2[p]) if (!t1[p].includes(x)) slots++
  // Ideal: only the joiner's (leaver's) own partitions and replica slots change hands.
  const own = side.ownership().get(id)!
  const load = replicaLoad(side).get(id)!
  return { ownerFraction: moved / Q, ownerRatio: moved / own, slotFraction: slots / (N * Q), slotRatio: slots / load }
}

function summarize(rows: ReturnType<typeof change>[]) {
  const pick = (k: keyof ReturnType<typeof change>) => rows.map((r) => r[k])
  return {
    ownerFractionMedian: round(median(pick('ownerFraction')), 5),
    ownerRatioMedian: round(median(pick('ownerRatio'))),
    ownerRatioMax: round(Math.max(...pick('ownerRatio'))),
    slotFractionMedian: round(median(pick('slotFraction')), 5),
    slotRatioMedian: round(median(pick('slotRatio'))),
    slotRatioMax: round(Math.max(...pick('slotRatio'))),
  }
}

function timeBuild(members: Member[], partitions: number, runs: number): number {
  const ms: number[] = []
  for (let k = 0; k < runs; k++) {
    const t = performance.now()
    new Ring(members, { partitions, n: N, spares: 2 })
    ms.push(performance.now() - t)
  }
  return round(median(ms), 1)
}

const started = performance.now()

// Build time (median of 5 builds, 3 for the large ones).
const build: { members: number; partitions: number; ms: number }[] = []
for (const n of SIZES) build.push({ members: n, partitions: Q, ms: timeBuild(founders(n), Q, n >= 1000 ? 3 : 5) })
build.push({ members: 64, partitions: 65536, ms: timeBuild(founders(64), 65536, 3) })

// Balance, equal weights; plus a cluster with churn in its history (100 present, 100 departed).
const balance: { cluster: string; members: number; idealMaxOverMean: number; owned: ReturnType<typeof spread>; replicas: ReturnType<typeof spread> }[] = []
const bases = new Map<number, { members: Member[]; ring: Ring }>()
for (const n of SIZES) {
  const ms = founders(n)
  const r = ring(ms)
  bases.set(n, { members: ms, ring: r })
  balance.push({ cluster: 'founders', members: n, idealMaxOverMean: round(Math.ceil(Q / n) / (Q / n)), owned: spread(r.ownership().values()), replicas: spread(replicaLoad(r).values()) })
}
{
  const present: Member[] = []
  const history: Departed[] = []
  for (let t = 1; present.length + history.length < 200; t++) {
    // Each step a join, or (one time in three, once there are 20) the leave of a random member.
    if (present.length > 20 && random() < 1 / 3 && history.length < 100) {
      const [m] = present.splice(Math.floor(random() * present.length), 1)
      history.push({ id: m.id, weight: m.weight, since: m.since!, until: t })
    } else present.push(member(freshId(), 1, t))
  }
  const r = ring(present, history)
  balance.push({ cluster: `churned (${history.length} departed)`, members: present.length, idealMaxOverMean: round(Math.ceil(Q / present.length) / (Q / present.length)), owned: spread(r.ownership().values()), replicas: spread(replicaLoad(r).values()) })
}

// Weights: every other member has weight 2.
const weights: { members: number; ownedRatio: number; replicaRatio: number }[] = []
for (const n of SIZES) {
  const ms = founders(n, (i) => (i % 2 ? 2 : 1))
  const r = ring(ms)
  const own = r.ownership()
  const load = replicaLoad(r)
  const meanOf = (m: Map<string, number>, w: number) => {
    const xs = ms.filter((x) => x.weight === w).map((x) => m.get(x.id)!)
    return xs.reduce((s, x) => s + x, 0) / xs.length
  }
  weights.push({ members: n, ownedRatio: round(meanOf(own, 2) / meanOf(own, 1)), replicaRatio: round(meanOf(load, 2) / meanOf(load, 1)) })
}

// Movement: TRIALS random joins (a fresh id, since later than everyone) and leaves (a random member
// moved to the history) per size; and, to show what an out-of-order history costs, joins replayed
// among the founders (since 0, as a joiner with a clock far behind would get).
const movement: { members: number; event: string; trials: number; summary: ReturnType<typeof summarize> }[] = []
for (const n of SIZES) {
  const { members: ms, ring: base } = bases.get(n)!
  const joins: ReturnType<typeof change>[] = []
  const leaves: ReturnType<typeof change>[] = []
  const skewed: ReturnType<typeof change>[] = []
  for (let k = 0; k < TRIALS; k++) {
    const id = freshId()
    const after = ring([...ms, member(id, 1, 1)])
    joins.push(change(base, after, id, after))
    const leaver = ms[Math.floor(random() * ms.length)]
    const without = ring(
      ms.filter((m) => m !== leaver),
      [{ id: leaver.id, weight: 1, since: 0, until: 1 }],
    )
    leaves.push(change(base, without, leaver.id, base))
    if (n <= 100 || k < 10) {
      const early = freshId()
      const r = ring([...ms, member(early, 1, 0)])
      skewed.push(change(base, r, early, r))
    }
  }
  movement.push({ members: n, event: 'join', trials: joins.length, summary: summarize(joins) })
  movement.push({ members: n, event: 'leave', trials: leaves.length, summary: summarize(leaves) })
  movement.push({ members: n, event: 'join replayed among founders (since 0)', trials: skewed.length, summary: summarize(skewed) })
}

const elapsedMs = round(performance.now() - started, 0)
const result = { when: new Date().toISOString(), node: process.version, cpus: os.cpus().length, partitions: Q, n: N, trials: TRIALS, build, balance, weights, movement, elapsedMs }
await mkdir(resultsDir, { recursive: true })
await writeFile(path.join(resultsDir, 'ring-sim.json'), JSON.stringify(result, null, 2) + '\n')

console.log(`## Ring simulation (Q = ${Q}, N = ${N}, ${TRIALS} trials per size; ${elapsedMs} ms in all)\n`)
console.log(table(['members', 'Q', 'build (ms, median)'], build.map((b) => [b.members, b.partitions, b.ms])))
console.log()
console.log(
  table(
    ['cluster', 'members', 'owned max/mean', 'owned min/mean', 'floor ceil(Q/n)/(Q/n)', `top-${N} load max/mean`, `top-${N} load min/mean`],
    balance.map((b) => [b.cluster, b.members, b.owned.maxOverMean, b.owned.minOverMean, b.idealMaxOverMean, b.replicas.maxOverMean, b.replicas.minOverMean]),
  ),
)
console.log()
console.log(table(['members (half weight 2)', 'owned ratio w2/w1', `top-${N} load ratio w2/w1`], weights.map((w) => [w.members, w.ownedRatio, w.replicaRatio])))
console.log()
console.log(
  table(
    ['members', 'event', 'trials', 'owners changed (median)', '× ideal median', '× ideal max', `top-${N} slots changed (median)`, '× ideal median', '× ideal max'],
    movement.map((m) => [m.members, m.event, m.trials, m.summary.ownerFractionMedian, m.summary.ownerRatioMedian, m.summary.ownerRatioMax, m.summary.slotFractionMedian, m.summary.slotRatioMedian, m.summary.slotRatioMax]),
  ),
)
console.log(`\nJSON: ${path.relative(process.cwd(), path.join(resultsDir, 'ring-sim.json'))}`)
