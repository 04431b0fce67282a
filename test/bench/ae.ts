// Background repair benchmark: `npm run bench:ae` (builds first). In one run, on real 3-node clusters
// (N=3, 64 partitions, real LevelDB), it measures
//   anti-entropy: AE_KEYS keys (~100-byte values) written to all 3 replicas; then, for each divergence
//     D, n3 is killed (SIGKILL), D existing keys are updated at W=2 (hint delivery is off, so only
//     anti-entropy can repair n3) and n3 restarted. Reported: the bytes every node's exchanges moved
//     (sent + received, from the restart until every replica agrees), against the bytes of the
//     differing data and of the whole data set (what a naive full copy would send), and the time until
//     agreement against a floor: the same D sets stored straight into n3, one request per 500 items
//     (the median of 3).
//   hinted handoff: on a second cluster (anti-entropy off, hints offered every 200 ms), n3 is killed,
//     AE_HINT_KEYS keys written at W=2 (each leaves a hint for n3), n3 restarted; reported: hints
//     delivered per second against the floor of the same number of sets stored in batches of 500
//     (one request at a time, to n3; the median of 3).
//
// "Agree" means: for every partition, the Merkle root (POST /v1/ae/tree, level 0) is the same on the 3
// nodes. A root covers (key, MD5 of the stored set) for every key of the partition, and equal sets
// are equal bytes (canonical encoding), so equal roots mean equal data. The trees are what anti-entropy
// itself compares, so after agreement the D keys are also read back from every node's storage and
// compared byte for byte.
//
// Bytes are what the nodes count (zerohop_ae_bytes_sent_total + zerohop_ae_bytes_received_total):
// MessagePack bodies, without HTTP headers. Each exchange is counted once, by the node that started it.
//
// This process orchestrates and loads data through the public SDK (under tsx, '@zerohop/client' is
// the sources; the nodes run the build, server/dist). Raw replica requests (floors, checks) go to
// the node endpoints the SDK uses. Traffic stays on 127.0.0.1; the harness stops its processes by PID.
//
// Knobs (environment): AE_KEYS (100000), AE_DIVERGENCE (100,1000,10000), AE_CONCURRENCY (64),
// AE_INTERVAL_MS (200), AE_MAX_KEYS_PER_SECOND (the node default, 5000), AE_HINT_KEYS (20000).
import path from 'node:path'
import { performance } from 'node:perf_hooks'
import { Pool } from 'undici'
import { connect, type Client } from '@zerohop/client'
import { MSGPACK, Paths, pack, unpack } from '@zerohop/core'
import { AntiEntropyPaths } from '../../server/src/anti-entropy.js'
import { sample } from '../../server/src/metrics.js'
import { Cluster, type NodeProcess } from '../harness/cluster.js'
import { mulberry32 } from '../harness/prng.js'
import { cleanupOnExit, envInt, environment, environmentLine, fmt, median, runMain, saveResults, table } from './report.js'


const envInts = (name: string, dflt: number[]) => {
  const v = process.env[name]
  if (v === undefined) return dflt
  const xs = v.split(',').map(Number)
  if (xs.length === 0 || !xs.every((n) => Number.isInteger(n) && n > 0)) throw new Error(`${name} must be a comma-separated list of positive integers, got ${v}`)
  return xs
}

const cfg = {
  keys: envInt('AE_KEYS', 100_000),
  valueBytes: 100,
  divergences: envInts('AE_DIVERGENCE', [100, 1000, 10_000]),
  concurrency: envInt('AE_CONCURRENCY', 64),
  aeIntervalMs: envInt('AE_INTERVAL_MS', 200),
  /** Undefined: the node default (5000). */
  aeMaxKeysPerSecond: process.env.AE_MAX_KEYS_PER_SECOND === undefined ? undefined : envInt('AE_MAX_KEYS_PER_SECOND', 1),
  hintKeys: envInt('AE_HINT_KEYS', 20_000),
  hintIntervalMs: 200,
  partitions: 64,
  /** Items per raw read or store request (the floors, the checks). */
  batch: 500,
  pollMs: 200,
  /** Bounds of every wait for repair (per scenario). */
  agreeTimeoutMs: 120_000,
  loadTimeoutMs: 180_000,
}
if (cfg.divergences.reduce((a, b) => a + b, 0) > cfg.keys) throw new Error('AE_DIVERGENCE adds up to more keys than AE_KEYS')

// ---------------------------------------------------------------------------------------------
// Raw access to the nodes (the replica endpoints the SDK uses, metrics, trees)

class Raw {
  readonly #pools = new Map<string, Pool>()

  #pool(url: string): Pool {
    let p = this.#pools.get(url)
    if (!p) this.#pools.set(url, (p = new Pool(url, { connections: 8, keepAliveTimeout: 10_000 })))
    return p
  }

  /** POST a MessagePack body; any status but 200 is an error. */
  async post(url: string, path: string, body: unknown, timeoutMs = 10_000): Promise<Record<string, unknown>> {
    const res = await this.#pool(url).request({ path, method: 'POST', body: pack(body), headers: { 'content-type': MSGPACK }, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
    const bytes = Buffer.from(await res.body.arrayBuffer())
    if (res.statusCode !== 200) throw new Error(`${path} on ${url}: HTTP ${res.statusCode} ${bytes.toString('utf8').slice(0, 300)}`)
    return unpack(bytes) as Record<string, unknown>
  }

  async close(): Promise<void> {
    await Promise.all([...this.#pools.values()].map((p) => p.destroy()))
    this.#pools.clear()
  }
}

type Item = [partition: number, key: Uint8Array]

/** Sets of `items` as `node` stores them (null: absent), read in batches. */
async function readSets(raw: Raw, node: NodeProcess, items: Item[]): Promise<(Uint8Array | null)[]> {
  const out: (Uint8Array | null)[] = []
  for (let i = 0; i < items.length; i += cfg.batch) {
    const res = await raw.post(node.url, Paths.read, { keys: items.slice(i, i + cfg.batch) })
    out.push(...(res.sets as (Uint8Array | null)[]))
  }
  return out
}

/** Store sets on one node, one request of `cfg.batch` items at a time; the elapsed ms. */
async function storeSets(raw: Raw, node: NodeProcess, items: [number, Uint8Array, Uint8Array][]): Promise<number> {
  const t = performance.now()
  for (let i = 0; i < items.length; i += cfg.batch) await raw.post(node.url, Paths.store, { items: items.slice(i, i + cfg.batch) })
  return performance.now() - t
}

/** Per partition, the root of a node's tree; undefined while the node does not serve them. */
async function roots(raw: Raw, node: NodeProcess): Promise<Buffer[] | undefined> {
  try {
    return await Promise.all(
      Array.from({ length: cfg.partitions }, async (_, partition) => {
        const res = await raw.post(node.url, AntiEntropyPaths.tree, { partition, level: 0, indices: [0] }, 2000)
        return Buffer.from((res.hashes as Uint8Array[])[0])
      }),
    )
  } catch {
    return undefined
  }
}

/** Partitions whose roots are not the same on every node (all of them if one node does not answer). */
async function disagreeing(raw: Raw, nodes: NodeProcess[]): Promise<number> {
  const all = await Promise.all(nodes.map((n) => roots(raw, n)))
  if (all.some((r) => r === undefined)) return cfg.partitions
  let n = 0
  for (let p = 0; p < cfg.partitions; p++) if (!all.every((r) => r![p].equals(all[0]![p]))) n++
  return n
}

/** Poll until every partition's roots agree on `nodes`; the ms it took from `since`. */
async function untilAgree(raw: Raw, nodes: NodeProcess[], since: number, what: string): Promise<number> {
  const deadline = since + cfg.agreeTimeoutMs
  let lastLog = performance.now()
  for (;;) {
    const left = await disagreeing(raw, nodes)
    const now = performance.now()
    if (left === 0) return now - since
    if (now > deadline) throw new Error(`${what}: ${left} partitions still differ after ${cfg.agreeTimeoutMs} ms`)
    if (now - lastLog > 5000) {
      console.log(`  ... ${((now - since) / 1000).toFixed(1)} s: ${left} of ${cfg.partitions} partitions differ`)
      lastLog = now
    }
    await sleep(cfg.pollMs)
  }
}

interface AeCounters {
  bytesSent: number
  bytesReceived: number
  /** Roots comparisons (every shared partition with one peer). */
  rounds: number
  exchanges: number
  keysRepaired: number
}

/** Anti-entropy counters summed over the running nodes (a killed node's counters are gone with it). */
async function aeCounters(nodes: NodeProcess[]): Promise<AeCounters> {
  const c: AeCounters = { bytesSent: 0, bytesReceived: 0, rounds: 0, exchanges: 0, keysRepaired: 0 }
  for (const n of nodes) {
    if (!n.running) continue
    const text = await n.metrics()
    c.bytesSent += sample(text, 'zerohop_ae_bytes_sent_total') ?? 0
    c.bytesReceived += sample(text, 'zerohop_ae_bytes_received_total') ?? 0
    c.rounds += sample(text, 'zerohop_ae_rounds_total') ?? 0
    c.exchanges += sample(text, 'zerohop_ae_exchanges_total') ?? 0
    c.keysRepaired += sample(text, 'zerohop_ae_keys_repaired_total') ?? 0
  }
  return c
}

const minus = (a: AeCounters, b: AeCounters): AeCounters => ({
  bytesSent: a.bytesSent - b.bytesSent,
  bytesReceived: a.bytesReceived - b.bytesReceived,
  rounds: a.rounds - b.rounds,
  exchanges: a.exchanges - b.exchanges,
  keysRepaired: a.keysRepaired - b.keysRepaired,
})

/** Hints held for `target` and hints delivered, summed over `nodes`. */
async function hintCounters(nodes: NodeProcess[], target: string): Promise<{ held: number; delivered: number; perNode: Record<string, number> }> {
  let held = 0
  let delivered = 0
  const perNode: Record<string, number> = {}
  for (const n of nodes) {
    const text = await n.metrics()
    const h = sample(text, 'zerohop_hints', `target="${target}"`) ?? 0
    perNode[n.id] = h
    held += h
    delivered += sample(text, 'zerohop_hints_delivered_total') ?? 0
  }
  return { held, delivered, perNode }
}

// ---------------------------------------------------------------------------------------------
// Helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Run fn(0..count-1) with at most `concurrency` in flight; fails at the first error or past maxMs. */
async function pool(count: number, concurrency: number, maxMs: number, fn: (i: number) => Promise<void>): Promise<number> {
  const t = performance.now()
  const deadline = t + maxMs
  let next = 0
  await Promise.all(
    Array.from({ length: Math.min(concurrency, count) }, async () => {
      while (next < count) {
        if (performance.now() > deadline) throw new Error(`${count} operations did not finish within ${maxMs} ms (${next} started)`)
        await fn(next++)
      }
    }),
  )
  return performance.now() - t
}

/** Each floor is measured this many times; the median counts (the machine is shared and noisy). */
const FLOOR_REPEATS = 3

const keyOf = (i: number) => `key-${String(i).padStart(6, '0')}`

/** A printable value of exactly `cfg.valueBytes` bytes. */
function valueOf(random: () => number, tag: string): string {
  let s = `${tag}:`
  while (s.length < cfg.valueBytes) s += Math.floor(random() * 2 ** 32).toString(36)
  return s.slice(0, cfg.valueBytes)
}

const kib = (b: number) => `${fmt(b / 1024, b < 100 * 1024 ? 1 : 0)} KiB`

// ---------------------------------------------------------------------------------------------
// Anti-entropy

interface AeScenario {
  differingKeys: number
  /** Key + stored set bytes of the D keys (as n1 holds them): what n3 must receive at the least. */
  differingBytes: number
  /** AE bytes from the restart until agreement (all nodes, sent + received). */
  bytes: number
  bytesSent: number
  bytesReceived: number
  rounds: number
  exchanges: number
  keysRepaired: number
  /** ms from the restart (process start) until n3 served, and until every partition agreed. */
  servingMs: number
  agreeMs: number
  /** The floor: the same D sets stored into n3 by raw batched stores, ms (median of FLOOR_REPEATS). */
  floorMs: number
  floorRunsMs: number[]
  bytesOverDiffering: number
  bytesOverFullCopy: number
  agreeOverFloor: number
  /** Idle rounds' expected share of `bytes` (idle rate × agreeMs). */
  idleBytes: number
  /** The D keys read back from all 3 nodes' storage: how many were not byte-equal everywhere. */
  mismatched: number
  writeMs: number
}

interface AeResult {
  loadMs: number
  loadOpsPerSec: number
  fullCopyBytes: number
  idleBytesPerSec: number
  idleRoundsPerSec: number
  idleExchangesPerSec: number
  scenarios: AeScenario[]
}

async function antiEntropyBench(raw: Raw, state: { cluster?: Cluster; db?: Client }): Promise<AeResult> {
  const args = ['--hint-interval-ms', '3600000', '--ae-interval-ms', String(cfg.aeIntervalMs)]
  if (cfg.aeMaxKeysPerSecond !== undefined) args.push('--ae-max-keys-per-second', String(cfg.aeMaxKeysPerSecond))
  const cluster = (state.cluster = await Cluster.start({ nodes: 3, partitions: cfg.partitions, args }))
  const db = (state.db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 }))
  const [n1, n2, n3] = ['n1', 'n2', 'n3'].map((id) => cluster.node(id))
  const random = mulberry32(0xae)

  // The keys each scenario will update: disjoint, drawn up front so their contexts are kept.
  const order = Array.from({ length: cfg.keys }, (_, i) => i)
  for (let i = 0; i < order.length; i++) {
    const j = i + Math.floor(random() * (order.length - i))
    ;[order[i], order[j]] = [order[j], order[i]]
  }
  const chosen: number[][] = []
  let at = 0
  for (const d of cfg.divergences) chosen.push(order.slice(at, (at += d)))
  const contexts = new Map<number, string>()
  for (const xs of chosen) for (const i of xs) contexts.set(i, '')

  console.log(`loading ${fmt(cfg.keys)} keys (${cfg.valueBytes}-byte values) at W=3, ${cfg.concurrency} in flight ...`)
  const loadMs = await pool(cfg.keys, cfg.concurrency, cfg.loadTimeoutMs, async (i) => {
    const r = await db.put(keyOf(i), valueOf(random, `v${i}`), { w: 3 })
    if (contexts.has(i)) contexts.set(i, r.context)
  })
  console.log(`  ${fmt(loadMs / 1000, 1)} s, ${fmt((cfg.keys * 1000) / loadMs)} puts/s`)

  const item = (key: string): Item => {
    const k = Buffer.from(key)
    return [db.ring.partitionOf(k), k]
  }
  await untilAgree(raw, cluster.nodes, performance.now(), 'after the load')
  // The naive full copy: every key and its stored set, once.
  const everything = Array.from({ length: cfg.keys }, (_, i) => item(keyOf(i)))
  const sets = await readSets(raw, n1, everything)
  if (sets.some((s) => s === null)) throw new Error('n1 misses keys written at W=3')
  const fullCopyBytes = everything.reduce((s, [, k], i) => s + k.byteLength + sets[i]!.byteLength, 0)

  // Rounds run even when nothing differs (one roots request per peer): their rate, to tell apart.
  const idleFrom = await aeCounters(cluster.nodes)
  const idleT = performance.now()
  await sleep(3000)
  const idle = minus(await aeCounters(cluster.nodes), idleFrom)
  const idleS = (performance.now() - idleT) / 1000
  const idleBytesPerSec = (idle.bytesSent + idle.bytesReceived) / idleS
  console.log(`  data set ${kib(fullCopyBytes)} (keys + stored sets); idle anti-entropy: ${fmt(idle.rounds / idleS, 1)} rounds/s, ${fmt(idle.exchanges / idleS, 1)} exchanges/s, ${fmt(idleBytesPerSec)} B/s (3 nodes)\n`)

  const scenarios: AeScenario[] = []
  for (const [s, d] of cfg.divergences.entries()) {
    const keys = chosen[s]
    await n3.kill()
    const writeMs = await pool(keys.length, cfg.concurrency, cfg.loadTimeoutMs, async (j) => {
      const i = keys[j]
      await db.put(keyOf(i), valueOf(random, `d${d}-${i}`), { w: 2, context: contexts.get(i) })
    })
    // Both live replicas hold every update (the third store of a W=2 put may land after its answer).
    await untilAgree(raw, [n1, n2], performance.now(), `n1 and n2 after ${d} updates`)
    const items = keys.map((i) => item(keyOf(i)))
    const newSets = await readSets(raw, n1, items)
    const differingBytes = items.reduce((sum, [, k], j) => sum + k.byteLength + newSets[j]!.byteLength, 0)

    const before = await aeCounters(cluster.nodes)
    const t0 = performance.now()
    await cluster.restart('n3')
    const servingMs = performance.now() - t0
    const agreeMs = await untilAgree(raw, cluster.nodes, t0, `anti-entropy of ${d} keys`)
    const delta = minus(await aeCounters(cluster.nodes), before)

    // The roots are anti-entropy's own view: check the storage too.
    const copies = await Promise.all(cluster.nodes.map((n) => readSets(raw, n, items)))
    let mismatched = 0
    for (let j = 0; j < items.length; j++) {
      const a = copies[0][j]
      if (!a || !copies.every((c) => c[j] && Buffer.compare(c[j]!, a) === 0)) mismatched++
    }

    // Floor: the same sets stored into n3 directly, under keys it has not seen (each placed by the
    // ring), then onto n1 and n2 too so the replicas agree again. The median of FLOOR_REPEATS.
    const floorRuns: number[] = []
    for (let r = 0; r < FLOOR_REPEATS; r++) {
      const floorItems = newSets.map((set, j): [number, Uint8Array, Uint8Array] => {
        const [p, k] = item(`floor-${d}-${r}-${j}`)
        return [p, k, set!]
      })
      floorRuns.push(await storeSets(raw, n3, floorItems))
      await Promise.all([storeSets(raw, n1, floorItems), storeSets(raw, n2, floorItems)])
    }
    const floorMs = median(floorRuns)
    await untilAgree(raw, cluster.nodes, performance.now(), `after the floor of ${d}`)

    const bytes = delta.bytesSent + delta.bytesReceived
    const sc: AeScenario = {
      differingKeys: d,
      differingBytes,
      bytes,
      bytesSent: delta.bytesSent,
      bytesReceived: delta.bytesReceived,
      rounds: delta.rounds,
      exchanges: delta.exchanges,
      keysRepaired: delta.keysRepaired,
      servingMs,
      agreeMs,
      floorMs,
      floorRunsMs: floorRuns,
      bytesOverDiffering: bytes / differingBytes,
      bytesOverFullCopy: bytes / fullCopyBytes,
      agreeOverFloor: agreeMs / floorMs,
      idleBytes: (idleBytesPerSec * agreeMs) / 1000,
      mismatched,
      writeMs,
    }
    scenarios.push(sc)
    console.log(
      `${fmt(d).padStart(6)} keys differ (${kib(differingBytes)}): agree after ${fmt(agreeMs / 1000, 2)} s (n3 serving after ${fmt(servingMs / 1000, 2)} s), ` +
        `${kib(bytes)} exchanged = ${fmt(sc.bytesOverDiffering, 2)}x the differing data, ${fmt(sc.bytesOverFullCopy * 100, 2)}% of a full copy; ` +
        `${delta.rounds} rounds, ${delta.exchanges} exchanges, ${delta.keysRepaired} keys repaired; floor ${fmt(floorMs)} ms${mismatched ? `; WARNING ${mismatched} keys differ in storage` : ''}`,
    )
  }

  await state.db?.close()
  state.db = undefined
  await state.cluster?.close()
  state.cluster = undefined
  return { loadMs, loadOpsPerSec: (cfg.keys * 1000) / loadMs, fullCopyBytes, idleBytesPerSec, idleRoundsPerSec: idle.rounds / idleS, idleExchangesPerSec: idle.exchanges / idleS, scenarios }
}

// ---------------------------------------------------------------------------------------------
// Hinted handoff

interface HintResult {
  hints: number
  heldPerNode: Record<string, number>
  servingMs: number
  /** ms from the restart until the first hint was delivered, and until the last. */
  firstMs: number
  doneMs: number
  /** Hints per second from the first delivery to the last, and from the restart. */
  hintsPerSec: number
  hintsPerSecFromRestart: number
  floorMs: number
  floorRunsMs: number[]
  floorOpsPerSec: number
  ratio: number
  /** Keys n3 does not hold byte-equal to n1 after delivery. */
  mismatched: number
}

async function hintBench(raw: Raw, state: { cluster?: Cluster; db?: Client }): Promise<HintResult> {
  const args = ['--hint-interval-ms', String(cfg.hintIntervalMs), '--ae-interval-ms', '3600000']
  const cluster = (state.cluster = await Cluster.start({ nodes: 3, partitions: cfg.partitions, args }))
  const db = (state.db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 }))
  const [n1, n2, n3] = ['n1', 'n2', 'n3'].map((id) => cluster.node(id))
  const random = mulberry32(0x41)
  const k = cfg.hintKeys

  await n3.kill()
  console.log(`\nhinted handoff: n3 killed; writing ${fmt(k)} keys at W=2 ...`)
  const writeMs = await pool(k, cfg.concurrency, cfg.loadTimeoutMs, async (i) => {
    await db.put(`hinted-${i}`, valueOf(random, `h${i}`), { w: 2 })
  })
  let held = await hintCounters([n1, n2], 'n3')
  const until = performance.now() + 30_000
  while (held.held < k && performance.now() < until) {
    await sleep(100)
    held = await hintCounters([n1, n2], 'n3')
  }
  if (held.held !== k) throw new Error(`expected ${k} hints for n3 on n1 and n2, found ${held.held}`)
  console.log(`  ${fmt(writeMs / 1000, 1)} s; hints held for n3: ${Object.entries(held.perNode).map(([id, n]) => `${id} ${n}`).join(', ')}`)

  const t0 = performance.now()
  await cluster.restart('n3')
  const servingMs = performance.now() - t0
  let firstMs = NaN
  let now = held
  for (;;) {
    now = await hintCounters([n1, n2], 'n3')
    const t = performance.now() - t0
    if (Number.isNaN(firstMs) && now.delivered > held.delivered) firstMs = t
    if (now.held === 0) break
    if (t > cfg.agreeTimeoutMs) throw new Error(`${now.held} hints still held ${cfg.agreeTimeoutMs} ms after the restart`)
    await sleep(50)
  }
  const doneMs = performance.now() - t0
  const delivered = now.delivered - held.delivered
  if (delivered !== k) console.log(`  WARNING: ${delivered} hints counted as delivered, ${k} expected`)

  const items = Array.from({ length: k }, (_, i): Item => {
    const key = Buffer.from(`hinted-${i}`)
    return [db.ring.partitionOf(key), key]
  })
  const [on1, on3] = await Promise.all([readSets(raw, n1, items), readSets(raw, n3, items)])
  let mismatched = 0
  for (let i = 0; i < k; i++) if (!on1[i] || !on3[i] || Buffer.compare(on1[i]!, on3[i]!) !== 0) mismatched++

  // Floor: the same number of sets (the ones just delivered) stored into n3 under keys it has not
  // seen. The median of FLOOR_REPEATS.
  const floorRuns: number[] = []
  for (let r = 0; r < FLOOR_REPEATS; r++) {
    const floorItems = on1.map((set, i): [number, Uint8Array, Uint8Array] => {
      const key = Buffer.from(`floor-hinted-${r}-${i}`)
      return [db.ring.partitionOf(key), key, set!]
    })
    floorRuns.push(await storeSets(raw, n3, floorItems))
  }
  const floorMs = median(floorRuns)

  await state.db?.close()
  state.db = undefined
  await state.cluster?.close()
  state.cluster = undefined
  const span = doneMs - firstMs
  const r: HintResult = {
    hints: k,
    heldPerNode: held.perNode,
    servingMs,
    firstMs,
    doneMs,
    hintsPerSec: (k * 1000) / span,
    hintsPerSecFromRestart: (k * 1000) / doneMs,
    floorMs,
    floorRunsMs: floorRuns,
    floorOpsPerSec: (k * 1000) / floorMs,
    ratio: (k * 1000) / span / ((k * 1000) / floorMs),
    mismatched,
  }
  console.log(
    `  restart → n3 serving ${fmt(servingMs)} ms, first hint delivered ${fmt(firstMs)} ms, all ${fmt(doneMs)} ms: ${fmt(r.hintsPerSec)} hints/s ` +
      `(${fmt(r.hintsPerSecFromRestart)} from the restart); floor ${fmt(r.floorOpsPerSec)} stores/s${mismatched ? `; WARNING ${mismatched} keys differ on n3` : ''}`,
  )
  return r
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date()
  const raw = new Raw()
  const state: { cluster?: Cluster; db?: Client } = {}
  const cleanup = cleanupOnExit(async () => {
    await state.db?.close().catch(() => undefined)
    await state.cluster?.close().catch((err) => console.error('cluster.close failed:', err))
    await raw.close().catch(() => undefined)
  })

  try {
    const rate = cfg.aeMaxKeysPerSecond ?? 5000
    console.log(
      `zerohop bench:ae: ${fmt(cfg.keys)} keys, divergences ${cfg.divergences.map((d) => fmt(d)).join(' / ')}, ` +
        `--ae-interval-ms ${cfg.aeIntervalMs}, --ae-max-keys-per-second ${rate}${cfg.aeMaxKeysPerSecond === undefined ? ' (default)' : ''}, ${fmt(cfg.hintKeys)} hints`,
    )
    console.log(environmentLine())

    const ae = await antiEntropyBench(raw, state)
    const hints = await hintBench(raw, state)

    console.log(`\nAnti-entropy: ${fmt(cfg.keys)} keys on 3 replicas (data set ${kib(ae.fullCopyBytes)}), n3 restarted missing D updates; --ae-interval-ms ${cfg.aeIntervalMs}, ${rate} keys/s per node\n`)
    console.log(
      table(
        ['D keys differ', 'differing data', 'AE bytes', '/ differing', '/ full copy', 'exchanges', 'repaired', 'agree s', 'floor ms', 'agree / floor'],
        ae.scenarios.map((s) => [
          fmt(s.differingKeys),
          kib(s.differingBytes),
          kib(s.bytes),
          `${fmt(s.bytesOverDiffering, 2)}x`,
          `${fmt(s.bytesOverFullCopy * 100, 2)}%`,
          fmt(s.exchanges),
          fmt(s.keysRepaired),
          fmt(s.agreeMs / 1000, 2),
          fmt(s.floorMs, 1),
          `${fmt(s.agreeOverFloor)}x`,
        ]),
      ),
    )
    console.log(
      `\nAE bytes: sent + received by every node's exchanges (MessagePack bodies) from the restart until every partition's root agreed; ` +
        `idle rounds alone move about ${fmt(ae.idleBytesPerSec)} B/s. Floor: the D sets stored into n3 by one request per ${cfg.batch} items (median of ${FLOOR_REPEATS}).`,
    )
    console.log(
      `Each interval a node compares the roots of all ${cfg.partitions} partitions with each peer (one request per peer) and exchanges the differing ones back to back, ` +
        `while the key limit allows ${fmt(rate)} keys/s per node (${fmt(cfg.divergences[cfg.divergences.length - 1] / rate, 1)} s for ${fmt(cfg.divergences[cfg.divergences.length - 1])} keys on one node).`,
    )
    console.log(`\nHinted handoff: ${fmt(hints.hints)} hints for n3 (held: ${Object.entries(hints.heldPerNode).map(([id, n]) => `${id} ${n}`).join(', ')}), --hint-interval-ms ${cfg.hintIntervalMs}\n`)
    console.log(
      table(
        ['hints', 'first delivered s', 'all delivered s', 'hints/s', 'floor stores/s', 'hints / floor'],
        [[fmt(hints.hints), fmt(hints.firstMs / 1000, 2), fmt(hints.doneMs / 1000, 2), fmt(hints.hintsPerSec), fmt(hints.floorOpsPerSec), `${fmt(hints.ratio, 2)}x`]],
      ),
    )
    const bad = ae.scenarios.reduce((s, x) => s + x.mismatched, 0) + hints.mismatched
    if (bad) console.log(`\nWARNING: ${bad} keys not byte-equal on every replica after the roots agreed (see JSON)`)

    const result = {
      startedAt: startedAt.toISOString(),
      durationMs: Date.now() - startedAt.getTime(),
      environment: environment(),
      config: { ...cfg, aeMaxKeysPerSecond: rate },
      antiEntropy: ae,
      hints,
    }
    await saveResults('ae', 'ae-latest.json', startedAt, result)
  } finally {
    await cleanup()
  }
}

runMain(main)
