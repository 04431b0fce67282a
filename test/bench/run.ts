// Zerohop benchmark: `npm run bench` (builds first). In one run it measures, interleaved in rounds,
//   floor: 3 trivial node:http servers (3 child processes) and an undici client (one Pool of 16
//          connections per server) fanning each op out to all 3 and resolving at 2 of 3;
//   get:   zero-hop get (R=2) of pre-written 1 KB values on a real 3-node cluster (N=3);
//   put:   zero-hop put (W=2) of a 1 KB value under a fresh key;
// each as single-flight latency (p50/p99/p99.9) and throughput at 32 in flight, with CPU per op of
// the client process and of the server processes. The machine is shared and noisy: what counts are
// the ratios against the floor measured in the same round (the median over rounds is reported).
//
// Layout: this process only orchestrates (it is idle while a phase runs). The client side runs in
// client-worker.mjs under plain node, so '@zerohop/client' is the BUILT package (under tsx the root
// tsconfig `paths` would map it to the sources). Floor servers: floor-server.mjs. Traffic stays on
// 127.0.0.1; every process started here is stopped by its PID, also on failure.
//
// Knobs (environment): BENCH_ROUNDS (3), BENCH_LAT_OPS (3000), BENCH_TP_OPS (30000),
// BENCH_TP_MS (5000), BENCH_CONCURRENCY (32), BENCH_KEYS (5000).
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import path from 'node:path'
import { Cluster } from '../harness/cluster.js'
import { cleanupOnExit, envInt, environment, environmentLine, fmt, median, root, runMain, saveResults, table } from './report.js'


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
  nodes: 3,
}

const MODES = ['floor', 'get', 'put'] as const
type Mode = (typeof MODES)[number]

interface Cpu {
  clientUsPerOp: number
  serversUsPerOp: number
  oursCores: number
  machineCores: number
}
interface Phase {
  ops: number
  errors: number
  readRepairs: number
  replicaErrors: number
  firstError?: string
  elapsedMs: number
  cpu: Cpu
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
  latency: Record<Mode, Latency>
  throughput: Record<Mode, Throughput>
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** Request/response over a forked child's IPC channel, each call with a deadline. */
class Rpc {
  #seq = 0
  readonly #pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id)
      if (!p) return
      this.#pending.delete(m.id)
      clearTimeout(p.timer)
      if (m.ok) p.resolve(m.result)
      else p.reject(new Error(`client worker: ${m.error}`))
    })
    child.on('exit', (code, sig) => {
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer)
        p.reject(new Error(`client worker exited (code ${code}, signal ${sig})`))
      }
      this.#pending.clear()
    })
  }

  call<T>(cmd: string, args: unknown, timeoutMs: number): Promise<T> {
    const id = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`client worker: ${cmd} took over ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      this.child.send({ id, cmd, args })
    })
  }
}

/** fork() with plain node: no tsx loader in the child (execArgv: []). */
function forkPlain(file: string): ChildProcess {
  return fork(path.join(root, 'test/bench', file), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
}

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

function killByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    try {
      process.kill(child.pid!, 'SIGKILL')
    } catch {
      resolve()
    }
  })
}

// ---------------------------------------------------------------------------------------------
// Statistics and output

function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}

// ---------------------------------------------------------------------------------------------

async function main(): Promise<void> {
  const startedAt = new Date()
  const children: ChildProcess[] = []
  let cluster: Cluster | undefined
  let worker: ChildProcess | undefined
  let rpc: Rpc | undefined

  const cleanup = cleanupOnExit(async () => {
    if (rpc && worker && worker.exitCode === null) await rpc.call('close', {}, 5000).catch(() => undefined)
    await Promise.allSettled([...(worker ? [killByPid(worker)] : []), ...children.map(killByPid)])
    await cluster?.close().catch((err) => console.error('cluster.close failed:', err))
  })

  try {
    console.log(`zerohop bench: ${cfg.rounds} rounds, ${cfg.latencyOps} sequential ops, ${cfg.concurrency} in flight for ${cfg.throughputMaxMs} ms or ${cfg.throughputOps} ops`)
    console.log(environmentLine())

    const floor = []
    for (let i = 0; i < cfg.nodes; i++) floor.push(await startFloorServer(children))
    cluster = await Cluster.start({ nodes: cfg.nodes })
    const clusterPids = cluster.nodes.map((n) => n.pid!)

    worker = forkPlain('client-worker.mjs')
    rpc = new Rpc(worker)
    const info = await rpc.call<{ clientModule: string; keys: number }>(
      'init',
      {
        floorUrls: floor.map((f) => f.url),
        seeds: cluster.seeds,
        pids: { floor: floor.map((f) => f.pid), cluster: clusterPids },
        keyCount: cfg.keys,
        connections: cfg.connections,
        clkTck: clockTicks(),
      },
      90_000,
    )
    if (!info.clientModule.includes('/dist/')) throw new Error(`@zerohop/client resolved to ${info.clientModule}, not the built package`)
    console.log(`client: ${info.clientModule}; ${info.keys} keys pre-written (1 KB values)`)

    const phase = <T>(mode: Mode, kind: 'latency' | 'throughput', ops: number, maxMs: number) =>
      rpc!.call<T>('phase', { mode, kind, ops, maxMs, concurrency: cfg.concurrency }, maxMs + 30_000)

    // Warm-up (JIT, connections, LevelDB caches): not recorded.
    for (const mode of MODES) {
      await phase(mode, 'throughput', 5000, 1500)
      await phase(mode, 'latency', cfg.warmupOps, 2000)
    }

    const rounds: Round[] = []
    for (let r = 0; r < cfg.rounds; r++) {
      const round = { latency: {}, throughput: {} } as Round
      // Rotate the order each round so no mode always runs first after the others' work.
      const order = MODES.map((_, i) => MODES[(i + r) % MODES.length])
      for (const mode of order) {
        await phase(mode, 'latency', 200, 1000) // short re-warm after the other modes ran
        round.latency[mode] = await phase<Latency>(mode, 'latency', cfg.latencyOps, cfg.latencyMaxMs)
        round.throughput[mode] = await phase<Throughput>(mode, 'throughput', cfg.throughputOps, cfg.throughputMaxMs)
        const l = round.latency[mode]
        const t = round.throughput[mode]
        const errs = l.errors + t.errors ? `  ERRORS ${l.errors + t.errors}: ${(l.firstError ?? t.firstError ?? '').split('\n')[0]}` : ''
        console.log(
          `round ${r + 1} ${mode.padEnd(5)}  p50 ${fmt(l.p50).padStart(5)} µs  p99 ${fmt(l.p99).padStart(5)} µs  p99.9 ${fmt(l.p999).padStart(6)} µs  ` +
            `${fmt(t.opsPerSec).padStart(6)} ops/s  CPU/op client ${fmt(t.cpu.clientUsPerOp)} + servers ${fmt(t.cpu.serversUsPerOp)} µs  ` +
            `(cores: ours ${fmt(t.cpu.oursCores, 2)}, machine ${fmt(t.cpu.machineCores, 2)})${errs}`,
        )
      }
      rounds.push(round)
    }

    // ---- summary: medians over rounds; ratios per round, then their median
    const med = (f: (r: Round) => number) => median(rounds.map(f))
    const summary = Object.fromEntries(
      MODES.map((m) => [
        m,
        {
          p50: med((r) => r.latency[m].p50),
          p90: med((r) => r.latency[m].p90),
          p99: med((r) => r.latency[m].p99),
          p999: med((r) => r.latency[m].p999),
          opsPerSec: med((r) => r.throughput[m].opsPerSec),
          clientCpuUsPerOp: med((r) => r.throughput[m].cpu.clientUsPerOp),
          serversCpuUsPerOp: med((r) => r.throughput[m].cpu.serversUsPerOp),
          singleFlightClientCpuUsPerOp: med((r) => r.latency[m].cpu.clientUsPerOp),
          singleFlightServersCpuUsPerOp: med((r) => r.latency[m].cpu.serversUsPerOp),
          machineCores: med((r) => r.throughput[m].cpu.machineCores),
          oursCores: med((r) => r.throughput[m].cpu.oursCores),
          errors: rounds.reduce((s, r) => s + r.latency[m].errors + r.throughput[m].errors, 0),
          readRepairs: rounds.reduce((s, r) => s + r.latency[m].readRepairs + r.throughput[m].readRepairs, 0),
          replicaErrors: rounds.reduce((s, r) => s + r.latency[m].replicaErrors + r.throughput[m].replicaErrors, 0),
        },
      ]),
    ) as unknown as Record<Mode, Record<string, number>>
    const perRound = (f: (r: Round) => number) => rounds.map(f)
    const ratioSeries = {
      getP50OverFloor: perRound((r) => r.latency.get.p50 / r.latency.floor.p50),
      getP99OverFloor: perRound((r) => r.latency.get.p99 / r.latency.floor.p99),
      getOpsOverFloor: perRound((r) => r.throughput.get.opsPerSec / r.throughput.floor.opsPerSec),
      putP50OverFloor: perRound((r) => r.latency.put.p50 / r.latency.floor.p50),
      putOpsOverFloor: perRound((r) => r.throughput.put.opsPerSec / r.throughput.floor.opsPerSec),
      getCpuOverFloor: perRound(
        (r) =>
          (r.throughput.get.cpu.clientUsPerOp + r.throughput.get.cpu.serversUsPerOp) /
          (r.throughput.floor.cpu.clientUsPerOp + r.throughput.floor.cpu.serversUsPerOp),
      ),
    }
    const ratios = Object.fromEntries(Object.entries(ratioSeries).map(([k, v]) => [k, median(v)])) as Record<keyof typeof ratioSeries, number>
    const targets = {
      getP50OverFloor: { max: 1.3, met: ratios.getP50OverFloor <= 1.3 },
      getOpsOverFloor: { min: 0.7, met: ratios.getOpsOverFloor >= 0.7 },
    }

    console.log(`\nMedians of ${cfg.rounds} interleaved rounds (latency: ${cfg.latencyOps} sequential ops; throughput: ${cfg.concurrency} in flight; CPU per op measured in the throughput phase)\n`)
    console.log(
      table(
        ['path', 'p50 µs', 'p99 µs', 'p99.9 µs', 'ops/s @32', 'client CPU µs/op', 'servers CPU µs/op', 'cores busy (ours/machine)'],
        MODES.map((m) => {
          const s = summary[m]
          const name = { floor: 'floor: fan-out 3, resolve at 2', get: 'zero-hop get, R=2', put: 'zero-hop put, W=2' }[m]
          return [name, fmt(s.p50), fmt(s.p99), fmt(s.p999), fmt(s.opsPerSec), fmt(s.clientCpuUsPerOp), fmt(s.serversCpuUsPerOp), `${fmt(s.oursCores, 2)} / ${fmt(s.machineCores, 2)}`]
        }),
      ),
    )
    const show = (k: keyof typeof ratioSeries) => `${fmt(ratios[k], 2)}  (rounds: ${ratioSeries[k].map((x) => fmt(x, 2)).join(', ')})`
    console.log(`\nratios (median of per-round ratios):`)
    console.log(`  get p50 / floor p50      ${show('getP50OverFloor')}  target ≤ 1.3: ${targets.getP50OverFloor.met ? 'MET' : 'MISSED'}`)
    console.log(`  get ops/s / floor ops/s  ${show('getOpsOverFloor')}  target ≥ 0.7: ${targets.getOpsOverFloor.met ? 'MET' : 'MISSED'}`)
    console.log(`  get p99 / floor p99      ${show('getP99OverFloor')}`)
    console.log(`  get CPU/op / floor       ${show('getCpuOverFloor')}`)
    console.log(`  put p50 / floor p50      ${show('putP50OverFloor')}`)
    console.log(`  put ops/s / floor ops/s  ${show('putOpsOverFloor')}`)

    const totalErrors = MODES.reduce((s, m) => s + summary[m].errors, 0)
    if (totalErrors) console.log(`\nWARNING: ${totalErrors} failed operations (see JSON)`)
    const repairs = summary.get.readRepairs + summary.put.readRepairs
    const replicaErrors = summary.get.replicaErrors + summary.put.replicaErrors
    if (repairs || replicaErrors) console.log(`\nWARNING: ${repairs} read repairs and ${replicaErrors} replica errors during measured phases: the get path did extra work`)

    const result = {
      startedAt: startedAt.toISOString(),
      durationMs: Date.now() - startedAt.getTime(),
      environment: { ...environment(), clientModule: info.clientModule },
      config: cfg,
      summary,
      ratios,
      ratioSeries,
      targets,
      rounds,
    }
    await saveResults('bench', 'latest.json', startedAt, result)
  } finally {
    await cleanup()
  }
}

runMain(main)
