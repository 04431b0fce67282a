// Zerohop benchmark: `npm run bench` (builds first). In one run it measures, interleaved in rounds,
//   floor: 3 trivial node:http servers (3 child processes) and an undici client (one Pool of 16
//          connections per server) fanning each op out to all 3 and resolving at 2 of 3;
//   get:   zero-hop get (R=2) of pre-written 1 KB values on a real 3-node cluster (N=3), over HTTP/1.1
//          (connect({ protocol: 'http' }));
//   put:   zero-hop put (W=2) of a 1 KB value under a fresh key, over HTTP/1.1;
//   hop:   the bare single hop: one undici Pool (8 connections) GET of a 1 KB body from one floor server;
//   lb-get, lb-put:     the SDK in load-balancer mode through HAProxy (test/harness/haproxy.ts, from
//                       examples/haproxy.cfg) in front of the same 3 nodes: each node coordinates;
//   node-get, node-put: the SDK in load-balancer mode straight to n1 (no HAProxy): n1 coordinates
//                       every call, and with N=3 on 3 nodes it replicates every key;
//   frames-get, frames-put: zero-hop get and put on the same cluster over the nodes' framed protocol
//                       (the SDK's default with zero-hop routing), against get and put;
//   sec-get, sec-put:   zero-hop get and put on a second, secured 3-node cluster (cluster secret and
//                       users file; the SDK sends a token, nodes sign their requests, every set and
//                       context handed out is signed and every relayed one checked): what
//                       authentication costs per operation, against get and put (both over HTTP);
// each as single-flight latency (p50/p99/p99.9) and throughput at 32 in flight, with CPU per op of
// the client process, of the server processes and, apart, of HAProxy's process. The machine is shared
// and noisy: what counts are the ratios against the floor and the hop measured in the same round (the
// median over rounds is reported). Around every phase on the cluster, each node's
// zerohop_requests_total{route,via} is read before and after: HTTP exchanges (and in-process calls)
// per operation, and the evidence that n1 coordinating a key it replicates reads itself in-process.
//
// Layout: this process only orchestrates: it is idle while a phase runs, but for HAProxy's log lines
// (one per request), which the harness reads from HAProxy's stdout; that CPU per op is recorded apart.
// The client side runs in client-worker.mjs under plain node, so '@zerohop/client' is the BUILT
// package (under tsx the root tsconfig `paths` would map it to the sources). Floor servers:
// floor-server.mjs. Traffic stays on 127.0.0.1; every process started here is stopped by its PID,
// also on failure.
//
// Knobs (environment): BENCH_ROUNDS (3), BENCH_LAT_OPS (3000), BENCH_TP_OPS (30000),
// BENCH_TP_MS (5000), BENCH_CONCURRENCY (32), BENCH_KEYS (5000),
// BENCH_MODES (all: floor,get,put,hop,lb-get,lb-put,node-get,node-put,frames-get,frames-put,sec-get,sec-put; a comma-separated subset runs
// only those, and the ratios that need a missing mode are not computed). Without haproxy installed
// the lb-* modes are skipped with a note.
import { type ChildProcess } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { Cluster, type NodeProcess } from '../harness/cluster.js'
import { EXAMPLE_CONFIG, HAProxy, haproxyUnavailableReason } from '../harness/haproxy.js'
import { Rpc, cleanupOnExit, clockTicks, envInt, environment, environmentLine, fmt, forkPlain, killByPid, median, root, runMain, saveResults, table } from './report.js'


const cfg = {
  rounds: envInt('BENCH_ROUNDS', 3),
  latencyOps: envInt('BENCH_LAT_OPS', 3000),
  latencyMaxMs: 8000,
  warmupOps: 300,
  throughputOps: envInt('BENCH_TP_OPS', 30000),
  throughputMaxMs: envInt('BENCH_TP_MS', 5000),
  concurrency: envInt('BENCH_CONCURRENCY', 32),
  keys: envInt('BENCH_KEYS', 5000),
  connections: 16, // the SDK's default (clientDefaults.connections)
  hopConnections: 8, // as in PERFORMANCE-NOTES' one-hop row
  nodes: 3,
}

const ALL_MODES = ['floor', 'get', 'put', 'hop', 'lb-get', 'lb-put', 'node-get', 'node-put', 'frames-get', 'frames-put', 'sec-get', 'sec-put'] as const
type Mode = (typeof ALL_MODES)[number]
const LB_MODES: readonly Mode[] = ['lb-get', 'lb-put']
/** Modes whose phases run on the Zerohop cluster (their nodes' request counters are read around each phase). */
const CLUSTER_MODES: readonly Mode[] = ['get', 'put', 'lb-get', 'lb-put', 'node-get', 'node-put', 'frames-get', 'frames-put', 'sec-get', 'sec-put']
/** Modes on the secured cluster. */
const SEC_MODES: readonly Mode[] = ['sec-get', 'sec-put']

const NAMES: Record<Mode, string> = {
  floor: 'floor: fan-out 3, resolve at 2',
  get: 'zero-hop get over HTTP, R=2',
  put: 'zero-hop put over HTTP, W=2',
  hop: 'hop: one Pool GET 1 KB, 1 server',
  'lb-get': 'lb get via HAProxy, R=2',
  'lb-put': 'lb put via HAProxy, W=2',
  'node-get': 'lb get straight to n1, R=2',
  'node-put': 'lb put straight to n1, W=2',
  'frames-get': 'zero-hop get over frames, R=2',
  'frames-put': 'zero-hop put over frames, W=2',
  'sec-get': 'zero-hop get, secured cluster',
  'sec-put': 'zero-hop put, secured cluster',
}

function selectedModes(): Mode[] {
  const v = process.env.BENCH_MODES
  if (v === undefined || v.trim() === '') return [...ALL_MODES]
  const asked = v.split(',').map((m) => m.trim()).filter(Boolean)
  const unknown = asked.filter((m) => !(ALL_MODES as readonly string[]).includes(m))
  if (unknown.length) throw new Error(`BENCH_MODES: unknown mode(s) ${unknown.join(', ')}; choose from ${ALL_MODES.join(',')}`)
  return ALL_MODES.filter((m) => asked.includes(m))
}

interface Cpu {
  clientUsPerOp: number
  serversUsPerOp: number
  /** One figure per server process, in the order of their PIDs (cluster: n1, n2, n3). */
  perServerUsPerOp: number[]
  /** HAProxy's process; NaN (null in the JSON) when it is not in the path. */
  lbUsPerOp: number
  oursCores: number
  machineCores: number
}
/** Per node id: the change of zerohop_requests_total over a phase, by `route via`. */
type RequestDeltas = Record<string, Record<string, number>>
interface Phase {
  ops: number
  errors: number
  readRepairs: number
  replicaErrors: number
  firstError?: string
  elapsedMs: number
  cpu: Cpu
  /** CPU of this orchestrating process during the phase, per op (it reads HAProxy's log output). */
  orchestratorUsPerOp: number
  requests?: RequestDeltas
}
interface Latency extends Phase {
  p50: number
  p90: number
  p99: number
  p999: number
  max: number
  mean: number
}
interface Throughput extends Phase {
  opsPerSec: number
}
interface Round {
  latency: Partial<Record<Mode, Latency>>
  throughput: Partial<Record<Mode, Throughput>>
}

// ---------------------------------------------------------------------------------------------
// Child processes

async function startFloorServer(children: ChildProcess[]): Promise<{ url: string; pid: number }> {
  const child = forkPlain('floor-server.mjs')
  children.push(child)
  const port = await new Promise<number>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('floor server did not start within 10 s')), 10_000)
    child.once('message', (m: { port: number }) => {
      clearTimeout(timer)
      resolve(m.port)
    })
    child.once('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`floor server exited with code ${code}`))
    })
  })
  return { url: `http://127.0.0.1:${port}`, pid: child.pid! }
}

// ---------------------------------------------------------------------------------------------
// Node counters

/** Every zerohop_requests_total sample of a node's Prometheus text, by `route via`. */
function requestCounts(text: string): Record<string, number> {
  const out: Record<string, number> = {}
  for (const line of text.split('\n')) {
    const m = /^zerohop_requests_total\{([^}]*)\}\s+(\S+)/.exec(line)
    if (!m) continue
    const labels = Object.fromEntries([...m[1].matchAll(/(\w+)="([^"]*)"/g)].map((x) => [x[1], x[2]]))
    out[`${labels.route} ${labels.via}`] = Number(m[2])
  }
  return out
}

async function readCounts(nodes: NodeProcess[]): Promise<Record<string, Record<string, number>>> {
  return Object.fromEntries(await Promise.all(nodes.map(async (n) => [n.id, requestCounts(await n.metrics())] as const)))
}

function countDeltas(before: Record<string, Record<string, number>>, after: Record<string, Record<string, number>>): RequestDeltas {
  const out: RequestDeltas = {}
  for (const [id, counts] of Object.entries(after)) {
    out[id] = {}
    for (const [k, v] of Object.entries(counts)) {
      const d = v - (before[id]?.[k] ?? 0)
      if (d !== 0) out[id][k] = d
    }
  }
  return out
}

/** One `route via` summed over the nodes (or one node). */
const deltaOf = (d: RequestDeltas | undefined, key: string, node?: string) =>
  d ? Object.entries(d).reduce((s, [id, c]) => s + (node === undefined || node === id ? (c[key] ?? 0) : 0), 0) : NaN

// ---------------------------------------------------------------------------------------------
// Statistics and output

// ---------------------------------------------------------------------------------------------

/** The routes whose exchanges an operation costs, in the order they are tabled. */
const DATA_ROUTES = ['/v1/kv', '/v1/batch', '/v1/replica/read', '/v1/replica/coordinate', '/v1/replica/store']

async function main(): Promise<void> {
  const startedAt = new Date()
  const children: ChildProcess[] = []
  let cluster: Cluster | undefined
  let secured: Cluster | undefined
  let haproxy: HAProxy | undefined
  let haproxyDir: string | undefined
  let worker: ChildProcess | undefined
  let rpc: Rpc | undefined

  const cleanup = cleanupOnExit(async () => {
    if (rpc && worker && worker.exitCode === null) await rpc.call('close', {}, 5000).catch(() => undefined)
    await Promise.allSettled([...(worker ? [killByPid(worker)] : []), ...children.map(killByPid)])
    await haproxy?.close().catch((err) => console.error('haproxy.close failed:', err))
    if (haproxyDir) rmSync(haproxyDir, { recursive: true, force: true })
    await cluster?.close().catch((err) => console.error('cluster.close failed:', err))
    await secured?.close().catch((err) => console.error('secured cluster.close failed:', err))
  })

  try {
    let modes = selectedModes()
    const notes: string[] = []
    const noHaproxy = modes.some((m) => LB_MODES.includes(m)) ? haproxyUnavailableReason() : undefined
    if (noHaproxy) {
      notes.push(`lb-get and lb-put skipped: ${noHaproxy}`)
      modes = modes.filter((m) => !LB_MODES.includes(m))
    }
    const has = (...ms: Mode[]) => ms.every((m) => modes.includes(m))

    console.log(`zerohop bench: ${cfg.rounds} rounds of ${modes.join(', ')}; ${cfg.latencyOps} sequential ops, ${cfg.concurrency} in flight for ${cfg.throughputMaxMs} ms or ${cfg.throughputOps} ops`)
    console.log(environmentLine())
    for (const n of notes) console.log(`NOTE: ${n}`)

    const floor = []
    for (let i = 0; i < cfg.nodes; i++) floor.push(await startFloorServer(children))
    cluster = await Cluster.start({ nodes: cfg.nodes })
    const clusterPids = cluster.nodes.map((n) => n.pid!)
    if (modes.some((m) => SEC_MODES.includes(m))) secured = await Cluster.start({ nodes: cfg.nodes, secure: 'users' })
    if (has('lb-get') || has('lb-put')) {
      // examples/haproxy.cfg as shipped but for one line: it logs only failed requests, not every
      // request (a log line per request, read by this process, would compete for the same 2 cores).
      const example = readFileSync(EXAMPLE_CONFIG, 'utf8')
      if (!example.includes('    option httplog\n')) throw new Error('examples/haproxy.cfg no longer has "option httplog"; update the bench')
      haproxyDir = mkdtempSync(path.join(os.tmpdir(), 'zerohop-bench-haproxy-'))
      const template = path.join(haproxyDir, 'haproxy.cfg')
      writeFileSync(template, example.replace('    option httplog\n', '    option httplog\n    option dontlog-normal\n'))
      haproxy = await HAProxy.start({ servers: cluster.nodes.map((n) => ({ name: n.id, port: n.port })), template })
      notes.push('HAProxy runs examples/haproxy.cfg with "option dontlog-normal" added (only failed requests are logged)')
      if (!haproxy.pid) notes.push("HAProxy's PID is unknown: its CPU is not measured")
    }

    worker = forkPlain('client-worker.mjs')
    rpc = new Rpc(worker)
    const info = await rpc.call<{ clientModule: string; keys: number }>(
      'init',
      {
        floorUrls: floor.map((f) => f.url),
        seeds: cluster.seeds,
        lbUrl: haproxy?.url,
        nodeUrl: cluster.nodes[0].url,
        hopUrl: floor[0].url,
        hopConnections: cfg.hopConnections,
        securedSeeds: secured?.seeds,
        token: secured?.tokens?.writer,
        pids: { floor: floor.map((f) => f.pid), hop: [floor[0].pid], cluster: clusterPids, secured: secured?.nodes.map((n) => n.pid!), haproxy: haproxy?.pid },
        keyCount: cfg.keys,
        connections: cfg.connections,
        clkTck: clockTicks(),
      },
      90_000,
    )
    if (!info.clientModule.includes('/dist/')) throw new Error(`@zerohop/client resolved to ${info.clientModule}, not the built package`)
    console.log(`client: ${info.clientModule}; ${info.keys} keys pre-written (1 KB values)`)
    if (haproxy) console.log(`haproxy: ${haproxy.url} (PID ${haproxy.pid ?? 'unknown'}) in front of ${cluster.nodes.map((n) => `${n.id} :${n.port}`).join(', ')}`)

    const phase = async <T extends Phase>(mode: Mode, kind: 'latency' | 'throughput', ops: number, maxMs: number): Promise<T> => {
      // Each node's request counters before and after (outside the timed part: the worker times).
      const nodes = SEC_MODES.includes(mode) ? secured!.nodes : cluster!.nodes
      const before = CLUSTER_MODES.includes(mode) ? await readCounts(nodes) : undefined
      const cpu0 = process.cpuUsage()
      const r = await rpc!.call<T>('phase', { mode, kind, ops, maxMs, concurrency: cfg.concurrency }, maxMs + 30_000)
      const cpu = process.cpuUsage(cpu0)
      r.orchestratorUsPerOp = (cpu.user + cpu.system) / Math.max(1, r.ops)
      if (before) r.requests = countDeltas(before, await readCounts(nodes))
      return r
    }

    // Warm-up (JIT, connections, LevelDB caches): not recorded.
    for (const mode of modes) {
      await phase(mode, 'throughput', 5000, 1500)
      await phase(mode, 'latency', cfg.warmupOps, 2000)
    }

    const rounds: Round[] = []
    for (let r = 0; r < cfg.rounds; r++) {
      const round: Round = { latency: {}, throughput: {} }
      // Rotate the order each round so no mode always runs first after the others' work.
      const order = modes.map((_, i) => modes[(i + r) % modes.length])
      for (const mode of order) {
        await phase(mode, 'latency', 200, 1000) // short re-warm after the other modes ran
        const l = (round.latency[mode] = await phase<Latency>(mode, 'latency', cfg.latencyOps, cfg.latencyMaxMs))
        const t = (round.throughput[mode] = await phase<Throughput>(mode, 'throughput', cfg.throughputOps, cfg.throughputMaxMs))
        const errs = l.errors + t.errors ? `  ERRORS ${l.errors + t.errors}: ${(l.firstError ?? t.firstError ?? '').split('\n')[0]}` : ''
        const lb = LB_MODES.includes(mode) ? ` + HAProxy ${fmt(t.cpu.lbUsPerOp)}` : ''
        console.log(
          `round ${r + 1} ${mode.padEnd(8)}  p50 ${fmt(l.p50).padStart(5)} µs  p99 ${fmt(l.p99).padStart(5)} µs  p99.9 ${fmt(l.p999).padStart(6)} µs  ` +
            `${fmt(t.opsPerSec).padStart(6)} ops/s  CPU/op client ${fmt(t.cpu.clientUsPerOp)} + servers ${fmt(t.cpu.serversUsPerOp)}${lb} µs  ` +
            `(cores: ours ${fmt(t.cpu.oursCores, 2)}, machine ${fmt(t.cpu.machineCores, 2)})${errs}`,
        )
      }
      rounds.push(round)
    }

    // ---- summary: medians over rounds; ratios per round, then their median
    const med = (f: (r: Round) => number) => median(rounds.map(f))
    const lat = (r: Round, m: Mode) => r.latency[m]!
    const tp = (r: Round, m: Mode) => r.throughput[m]!
    const summary = Object.fromEntries(
      modes.map((m) => [
        m,
        {
          p50: med((r) => lat(r, m).p50),
          p90: med((r) => lat(r, m).p90),
          p99: med((r) => lat(r, m).p99),
          p999: med((r) => lat(r, m).p999),
          opsPerSec: med((r) => tp(r, m).opsPerSec),
          clientCpuUsPerOp: med((r) => tp(r, m).cpu.clientUsPerOp),
          serversCpuUsPerOp: med((r) => tp(r, m).cpu.serversUsPerOp),
          perServerCpuUsPerOp: tp(rounds[0], m).cpu.perServerUsPerOp.map((_, i) => med((r) => tp(r, m).cpu.perServerUsPerOp[i])),
          haproxyCpuUsPerOp: med((r) => tp(r, m).cpu.lbUsPerOp),
          orchestratorCpuUsPerOp: med((r) => tp(r, m).orchestratorUsPerOp),
          singleFlightClientCpuUsPerOp: med((r) => lat(r, m).cpu.clientUsPerOp),
          singleFlightServersCpuUsPerOp: med((r) => lat(r, m).cpu.serversUsPerOp),
          singleFlightHaproxyCpuUsPerOp: med((r) => lat(r, m).cpu.lbUsPerOp),
          machineCores: med((r) => tp(r, m).cpu.machineCores),
          oursCores: med((r) => tp(r, m).cpu.oursCores),
          errors: rounds.reduce((s, r) => s + lat(r, m).errors + tp(r, m).errors, 0),
          readRepairs: rounds.reduce((s, r) => s + lat(r, m).readRepairs + tp(r, m).readRepairs, 0),
          replicaErrors: rounds.reduce((s, r) => s + lat(r, m).replicaErrors + tp(r, m).replicaErrors, 0),
        },
      ]),
    ) as Partial<Record<Mode, { perServerCpuUsPerOp: number[] } & Record<string, number>>>

    // A ratio per round, for the modes it needs; absent when one of them did not run.
    const cpuOf = (p: Phase) => p.cpu.clientUsPerOp + p.cpu.serversUsPerOp
    const ratioDefs = {
      getP50OverFloor: [['get', 'floor'], (r) => lat(r, 'get').p50 / lat(r, 'floor').p50],
      getP99OverFloor: [['get', 'floor'], (r) => lat(r, 'get').p99 / lat(r, 'floor').p99],
      getOpsOverFloor: [['get', 'floor'], (r) => tp(r, 'get').opsPerSec / tp(r, 'floor').opsPerSec],
      putP50OverFloor: [['put', 'floor'], (r) => lat(r, 'put').p50 / lat(r, 'floor').p50],
      putOpsOverFloor: [['put', 'floor'], (r) => tp(r, 'put').opsPerSec / tp(r, 'floor').opsPerSec],
      getCpuOverFloor: [['get', 'floor'], (r) => cpuOf(tp(r, 'get')) / cpuOf(tp(r, 'floor'))],
      // What load-balancer mode adds at the median, in bare hops.
      lbGetExtraP50OverHop: [['lb-get', 'get', 'hop'], (r) => (lat(r, 'lb-get').p50 - lat(r, 'get').p50) / lat(r, 'hop').p50],
      lbPutExtraP50OverHop: [['lb-put', 'put', 'hop'], (r) => (lat(r, 'lb-put').p50 - lat(r, 'put').p50) / lat(r, 'hop').p50],
      nodeGetExtraP50OverHop: [['node-get', 'get', 'hop'], (r) => (lat(r, 'node-get').p50 - lat(r, 'get').p50) / lat(r, 'hop').p50],
      nodePutExtraP50OverHop: [['node-put', 'put', 'hop'], (r) => (lat(r, 'node-put').p50 - lat(r, 'put').p50) / lat(r, 'hop').p50],
      lbGetOpsOverZeroHop: [['lb-get', 'get'], (r) => tp(r, 'lb-get').opsPerSec / tp(r, 'get').opsPerSec],
      nodeGetOpsOverZeroHop: [['node-get', 'get'], (r) => tp(r, 'node-get').opsPerSec / tp(r, 'get').opsPerSec],
      lbPutOpsOverZeroHop: [['lb-put', 'put'], (r) => tp(r, 'lb-put').opsPerSec / tp(r, 'put').opsPerSec],
      nodePutOpsOverZeroHop: [['node-put', 'put'], (r) => tp(r, 'node-put').opsPerSec / tp(r, 'put').opsPerSec],
      // What the framed protocol saves against HTTP/1.1, same cluster and operations.
      framesGetOpsOverGet: [['frames-get', 'get'], (r) => tp(r, 'frames-get').opsPerSec / tp(r, 'get').opsPerSec],
      framesGetCpuOverGet: [['frames-get', 'get'], (r) => cpuOf(tp(r, 'frames-get')) / cpuOf(tp(r, 'get'))],
      framesGetP50OverGet: [['frames-get', 'get'], (r) => lat(r, 'frames-get').p50 / lat(r, 'get').p50],
      framesPutOpsOverPut: [['frames-put', 'put'], (r) => tp(r, 'frames-put').opsPerSec / tp(r, 'put').opsPerSec],
      framesPutCpuOverPut: [['frames-put', 'put'], (r) => cpuOf(tp(r, 'frames-put')) / cpuOf(tp(r, 'put'))],
      framesPutP50OverPut: [['frames-put', 'put'], (r) => lat(r, 'frames-put').p50 / lat(r, 'put').p50],
      // What authentication costs: the secured cluster against the open one, same operations.
      secGetOpsOverGet: [['sec-get', 'get'], (r) => tp(r, 'sec-get').opsPerSec / tp(r, 'get').opsPerSec],
      secGetP50OverGet: [['sec-get', 'get'], (r) => lat(r, 'sec-get').p50 / lat(r, 'get').p50],
      secGetCpuOverGet: [['sec-get', 'get'], (r) => cpuOf(tp(r, 'sec-get')) / cpuOf(tp(r, 'get'))],
      secGetExtraCpuUs: [['sec-get', 'get'], (r) => cpuOf(tp(r, 'sec-get')) - cpuOf(tp(r, 'get'))],
      secPutOpsOverPut: [['sec-put', 'put'], (r) => tp(r, 'sec-put').opsPerSec / tp(r, 'put').opsPerSec],
      secPutP50OverPut: [['sec-put', 'put'], (r) => lat(r, 'sec-put').p50 / lat(r, 'put').p50],
      secPutCpuOverPut: [['sec-put', 'put'], (r) => cpuOf(tp(r, 'sec-put')) / cpuOf(tp(r, 'put'))],
      secPutExtraCpuUs: [['sec-put', 'put'], (r) => cpuOf(tp(r, 'sec-put')) - cpuOf(tp(r, 'put'))],
    } satisfies Record<string, [Mode[], (r: Round) => number]>
    type RatioKey = keyof typeof ratioDefs
    const ratioSeries: Partial<Record<RatioKey, number[]>> = {}
    for (const [k, [needs, f]] of Object.entries(ratioDefs) as [RatioKey, [Mode[], (r: Round) => number]][]) {
      if (has(...needs)) ratioSeries[k] = rounds.map(f)
    }
    const ratios = Object.fromEntries(Object.entries(ratioSeries).map(([k, v]) => [k, median(v)])) as Partial<Record<RatioKey, number>>
    const targetDefs: [RatioKey, 'max' | 'min', number][] = [
      ['getP50OverFloor', 'max', 1.3],
      ['getOpsOverFloor', 'min', 0.7],
      ['lbGetExtraP50OverHop', 'max', 1.2],
      ['lbPutExtraP50OverHop', 'max', 1.2],
      ['nodeGetExtraP50OverHop', 'max', 1.2],
      ['nodePutExtraP50OverHop', 'max', 1.2],
      ['lbGetOpsOverZeroHop', 'min', 0.7],
      ['nodeGetOpsOverZeroHop', 'min', 0.7],
    ]
    const targets = Object.fromEntries(
      targetDefs.filter(([k]) => ratios[k] !== undefined).map(([k, dir, x]) => [k, { [dir]: x, met: dir === 'max' ? ratios[k]! <= x : ratios[k]! >= x }]),
    ) as Partial<Record<RatioKey, { max?: number; min?: number; met: boolean }>>

    console.log(`\nMedians of ${cfg.rounds} interleaved rounds (latency: ${cfg.latencyOps} sequential ops; throughput: ${cfg.concurrency} in flight; CPU per op measured in the throughput phase)\n`)
    console.log(
      table(
        ['path', 'p50 µs', 'p99 µs', 'p99.9 µs', 'ops/s @32', 'client CPU µs/op', 'servers CPU µs/op', 'HAProxy CPU µs/op', 'cores busy (ours/machine)'],
        modes.map((m) => {
          const s = summary[m]!
          const lbCpu = LB_MODES.includes(m) ? (haproxy?.pid ? fmt(s.haproxyCpuUsPerOp) : 'not measured') : ''
          return [NAMES[m], fmt(s.p50), fmt(s.p99), fmt(s.p999), fmt(s.opsPerSec), fmt(s.clientCpuUsPerOp), fmt(s.serversCpuUsPerOp), lbCpu, `${fmt(s.oursCores, 2)} / ${fmt(s.machineCores, 2)}`]
        }),
      ),
    )

    const show = (k: RatioKey) => `${fmt(ratios[k]!, 2)}  (rounds: ${ratioSeries[k]!.map((x) => fmt(x, 2)).join(', ')})`
    const ratioLines: [RatioKey, string][] = [
      ['getP50OverFloor', 'get p50 / floor p50'],
      ['getOpsOverFloor', 'get ops/s / floor ops/s'],
      ['getP99OverFloor', 'get p99 / floor p99'],
      ['getCpuOverFloor', 'get CPU/op / floor'],
      ['putP50OverFloor', 'put p50 / floor p50'],
      ['putOpsOverFloor', 'put ops/s / floor ops/s'],
      ['lbGetExtraP50OverHop', '(lb get p50 − get p50) / hop p50, via HAProxy'],
      ['lbPutExtraP50OverHop', '(lb put p50 − put p50) / hop p50, via HAProxy'],
      ['nodeGetExtraP50OverHop', '(lb get p50 − get p50) / hop p50, straight to n1'],
      ['nodePutExtraP50OverHop', '(lb put p50 − put p50) / hop p50, straight to n1'],
      ['lbGetOpsOverZeroHop', 'lb get ops/s / get ops/s, via HAProxy'],
      ['nodeGetOpsOverZeroHop', 'lb get ops/s / get ops/s, straight to n1'],
      ['lbPutOpsOverZeroHop', 'lb put ops/s / put ops/s, via HAProxy'],
      ['nodePutOpsOverZeroHop', 'lb put ops/s / put ops/s, straight to n1'],
      ['framesGetOpsOverGet', 'frames get ops/s / get ops/s'],
      ['framesGetCpuOverGet', 'frames get CPU/op / get CPU/op'],
      ['framesGetP50OverGet', 'frames get p50 / get p50'],
      ['framesPutOpsOverPut', 'frames put ops/s / put ops/s'],
      ['framesPutCpuOverPut', 'frames put CPU/op / put CPU/op'],
      ['framesPutP50OverPut', 'frames put p50 / put p50'],
      ['secGetOpsOverGet', 'secured get ops/s / get ops/s'],
      ['secGetP50OverGet', 'secured get p50 / get p50'],
      ['secGetCpuOverGet', 'secured get CPU/op / get CPU/op'],
      ['secGetExtraCpuUs', 'secured get CPU/op − get CPU/op, µs'],
      ['secPutOpsOverPut', 'secured put ops/s / put ops/s'],
      ['secPutP50OverPut', 'secured put p50 / put p50'],
      ['secPutCpuOverPut', 'secured put CPU/op / put CPU/op'],
      ['secPutExtraCpuUs', 'secured put CPU/op − put CPU/op, µs'],
    ]
    console.log(`\nratios (median of per-round ratios):`)
    for (const [k, label] of ratioLines) {
      if (ratios[k] === undefined) continue
      const t = targets[k]
      const verdict = t ? `  target ${t.max !== undefined ? `≤ ${t.max}` : `≥ ${t.min}`}: ${t.met ? 'MET' : 'MISSED'}` : ''
      console.log(`  ${label.padEnd(50)} ${show(k)}${verdict}`)
    }

    // ---- HTTP exchanges (and in-process calls) per operation, from the nodes' counters
    const perOp = (p: Phase, key: string) => deltaOf(p.requests, key) / Math.max(1, p.ops)
    const exchanges = Object.fromEntries(
      modes.filter((m) => CLUSTER_MODES.includes(m)).map((m) => [
        m,
        Object.fromEntries(
          (['latency', 'throughput'] as const).map((kind) => [
            kind,
            Object.fromEntries(DATA_ROUTES.flatMap((route) => (['http', 'frames', 'local'] as const).map((via) => [`${route} ${via}`, med((r) => perOp(r[kind][m]!, `${route} ${via}`))]))),
          ]),
        ),
      ]),
    ) as Partial<Record<Mode, Record<'latency' | 'throughput', Record<string, number>>>>
    if (Object.keys(exchanges).length) {
      console.log(`\nrequests the nodes served per operation, all nodes (median over rounds; net = an exchange over HTTP or the framed protocol, local = in-process)\n`)
      const cols = DATA_ROUTES.flatMap((route) => [`${route.replace('/v1/replica/', '')} net`, `${route.replace('/v1/replica/', '')} local`])
      const rows: string[][] = []
      for (const [m, byKind] of Object.entries(exchanges)) {
        for (const kind of ['latency', 'throughput'] as const) {
          const c = byKind[kind]
          const over = (via: 'http' | 'frames') => DATA_ROUTES.reduce((s, route) => s + c[`${route} ${via}`], 0)
          rows.push([`${m} ${kind === 'latency' ? 'single-flight' : `@${cfg.concurrency}`}`, ...DATA_ROUTES.flatMap((route) => [fmt(c[`${route} http`] + c[`${route} frames`], 2), fmt(c[`${route} local`], 2)]), fmt(over('http'), 2), fmt(over('frames'), 2)])
        }
      }
      console.log(table(['mode', ...cols, 'HTTP at nodes', 'frames at nodes'], rows))
    }

    // ---- a node that replicates the key reads itself in-process (node-get: everything to n1)
    let selfReads: Record<string, unknown> | undefined
    if (has('node-get')) {
      const ids = cluster.nodes.map((n) => n.id)
      const sums = (kind: 'latency' | 'throughput') => {
        const phases = rounds.map((r) => r[kind]['node-get']!)
        const ops = phases.reduce((s, p) => s + p.ops, 0)
        const sum = (key: string, id: string) => phases.reduce((s, p) => s + deltaOf(p.requests, key, id), 0)
        const nodes = Object.fromEntries(ids.map((id) => [id, {
          // Over the network: HTTP, or the framed protocol the nodes speak to each other.
          readNet: sum('/v1/replica/read http', id) + sum('/v1/replica/read frames', id),
          readLocal: sum('/v1/replica/read local', id),
          kvHttp: sum('/v1/kv http', id) + sum('/v1/batch http', id),
        }]))
        return { ops, nodes }
      }
      const byKind = { latency: sums('latency'), throughput: sums('throughput') }
      const n1 = ids[0]
      const cpuN1 = med((r) => tp(r, 'node-get').cpu.perServerUsPerOp[0])
      const cpuN1Single = med((r) => lat(r, 'node-get').cpu.perServerUsPerOp[0])
      const held = Object.values(byKind).every((k) => k.nodes[n1].readNet < k.ops * 0.01 && k.nodes[n1].readLocal > 0)
      selfReads = { ...byKind, n1CpuUsPerOp: cpuN1, n1SingleFlightCpuUsPerOp: cpuN1Single, held }
      console.log(`\nnode-get: every call to ${n1}; change of zerohop_requests_total on each node over all measured node-get phases of ${cfg.rounds} rounds\n`)
      const rows: string[][] = []
      for (const kind of ['latency', 'throughput'] as const) {
        const k = byKind[kind]
        for (const id of ids) {
          const d = k.nodes[id]
          rows.push([`${kind === 'latency' ? 'single-flight' : `@${cfg.concurrency}`} (${fmt(k.ops)} ops)`, id, fmt(d.kvHttp), fmt(d.readNet), fmt(d.readLocal), fmt(d.readNet / Math.max(1, k.ops), 2), fmt(d.readLocal / Math.max(1, k.ops), 2)])
        }
      }
      console.log(table(['phases', 'node', 'kv + batch http Δ', 'replica/read net Δ', 'replica/read local Δ', 'read net /op', 'read local /op'], rows))
      const per = (m: Mode) => (has(m) ? summary[m]!.perServerCpuUsPerOp.map((x, i) => `${ids[i]} ${fmt(x)}`).join(', ') : '-')
      console.log(`  CPU µs/op of ${n1} in node-get: ${fmt(cpuN1)} at ${cfg.concurrency} in flight, ${fmt(cpuN1Single)} single-flight (per node @${cfg.concurrency}: ${per('node-get')}; in lb-get: ${per('lb-get')}; in get: ${per('get')})`)
      console.log(`  ${n1} received no replica read of its own over the network and served its own reads in-process: ${held ? 'YES' : 'NO'}`)
    }

    if (haproxy) {
      const o = has('lb-get') ? summary['lb-get']!.orchestratorCpuUsPerOp : NaN
      console.log(`\nthis orchestrating process (it reads HAProxy's per-request log from its stdout): ${fmt(o, 1)} µs CPU per lb-get op; not counted above`)
    }

    const totalErrors = modes.reduce((s, m) => s + summary[m]!.errors, 0)
    if (totalErrors) console.log(`\nWARNING: ${totalErrors} failed operations (see JSON)`)
    const repairs = modes.reduce((s, m) => s + summary[m]!.readRepairs, 0)
    const replicaErrors = modes.reduce((s, m) => s + summary[m]!.replicaErrors, 0)
    if (repairs || replicaErrors) console.log(`\nWARNING: ${repairs} read repairs and ${replicaErrors} replica errors during measured phases: the get path did extra work`)
    for (const n of notes) console.log(`NOTE: ${n}`)

    const result = {
      startedAt: startedAt.toISOString(),
      durationMs: Date.now() - startedAt.getTime(),
      environment: { ...environment(), clientModule: info.clientModule, haproxyPid: haproxy?.pid },
      config: { ...cfg, modes },
      notes,
      summary,
      ratios,
      ratioSeries,
      targets,
      exchanges,
      selfReads,
      rounds,
    }
    await saveResults('bench', 'latest.json', startedAt, result)
  } finally {
    await cleanup()
  }
}

runMain(main)
