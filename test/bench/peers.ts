// npm run bench:peers: Zerohop beside the systems a user would pick instead, on the same machine, in
// one run. Each system runs alone, in turn, in interleaved rounds (the machine is shared and noisy:
// what counts are the ratios within a round); the same 10,000 keys, 1 KB values and 32 operations in
// flight for each:
//   zerohop:    3 nodes, N=3, R=2, W=2, zero-hop SDK, secured (cluster secret, users file, a token);
//   redis:      one Redis 7 node (ioredis), GET and SET;
//   redis-wait: Redis with two replicas, SET then WAIT 1 (2 of 3 copies, as W=2 of N=3);
//   etcd:       a 3-member etcd 3.4 (etcd3 client; Raft, fsync).
// Per system and operation: ops/s at 32 in flight, CPU per op (client and server processes, from
// /proc), single-flight p50/p99; then the ratios, and the targets of issue 13 against them.
// Redis and etcd come from Debian's `redis-server` and `etcd-server`, installed here with apt-get
// when missing (as root). CI does not run this. Traffic stays on 127.0.0.1; every process started
// here is stopped by its PID, also on failure, and its data directories removed.
// Knobs (environment): PEERS_ROUNDS (3), PEERS_LAT_OPS (2000), PEERS_TP_OPS (40000), PEERS_TP_MS
// (5000), PEERS_KEYS (10000), PEERS_SYSTEMS (zerohop,redis,redis-wait,etcd).
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import net from 'node:net'
import { request } from 'undici'
import { Cluster, freePorts, waitFor } from '../harness/cluster.js'
import { Rpc, cleanupOnExit, clockTicks, envInt, environment, environmentLine, fmt, forkPlain, killByPid, median, runMain, saveResults, table } from './report.js'

const ALL = ['zerohop', 'redis', 'redis-wait', 'etcd'] as const
type System = (typeof ALL)[number]

const cfg = {
  rounds: envInt('PEERS_ROUNDS', 3),
  latencyOps: envInt('PEERS_LAT_OPS', 2000),
  latencyMaxMs: 8000,
  throughputOps: envInt('PEERS_TP_OPS', 40_000),
  throughputMaxMs: envInt('PEERS_TP_MS', 5000),
  concurrency: 32,
  keys: envInt('PEERS_KEYS', 10_000),
  systems: (process.env.PEERS_SYSTEMS ?? ALL.join(',')).split(',').map((s) => s.trim()) as System[],
}
for (const s of cfg.systems) if (!ALL.includes(s)) throw new Error(`PEERS_SYSTEMS: unknown system ${s}; pick from ${ALL.join(', ')}`)

const NAMES: Record<System, string> = {
  zerohop: 'Zerohop, N=3 R=2 W=2, secured',
  redis: 'Redis, one node',
  'redis-wait': 'Redis + 2 replicas, SET + WAIT 1',
  etcd: 'etcd, 3 members',
}

/** The Debian packages the peers come from, installed when their command is missing. */
function ensurePackages(): void {
  const missing = [['redis-server', 'redis-server'], ['etcd', 'etcd-server']].filter(([cmd]) => {
    try {
      execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' })
      return false
    } catch {
      return true
    }
  }).map(([, pkg]) => pkg)
  if (missing.length === 0) return
  if (process.getuid?.() !== 0) throw new Error(`bench:peers needs Debian's ${missing.join(' and ')}: run as root, or apt-get install ${missing.join(' ')} first`)
  console.log(`installing ${missing.join(', ')} (apt-get)`)
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  execFileSync('apt-get', ['update', '-qq'], { stdio: 'inherit', env })
  execFileSync('apt-get', ['install', '-y', '-qq', '--no-install-recommends', ...missing], { stdio: 'inherit', env })
}

interface Running {
  /** What the worker's client connects with. */
  args: Record<string, unknown>
  pids: number[]
  stop(): Promise<void>
}

/** Spawned server processes, stopped by PID; their output is kept for an error message. */
function spawnServer(cmd: string, args: string[], children: ChildProcess[]): ChildProcess {
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] })
  let out = ''
  const keep = (b: Buffer) => {
    out = (out + b.toString()).slice(-4000)
  }
  child.stdout!.on('data', keep)
  child.stderr!.on('data', keep)
  Object.defineProperty(child, 'output', { get: () => out })
  children.push(child)
  return child
}

/** One line to a Redis port and its first reply line (PING, INFO): no client library on the driver's side. */
function redisSay(port: number, command: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1')
    let got = ''
    s.setTimeout(1000, () => s.destroy(new Error('no answer within 1 s')))
    s.on('error', reject)
    s.on('data', (b) => {
      got += b.toString()
      if (got.includes('\r\n') && !got.startsWith('$')) s.end()
      else if (got.startsWith('$') && got.length > got.indexOf('\r\n') + 2 + Number(got.slice(1, got.indexOf('\r\n')))) s.end()
    })
    s.on('end', () => resolve(got))
    s.write(`${command}\r\n`)
  })
}

async function startRedis(replicas: number, dir: string, children: ChildProcess[]): Promise<Running> {
  const ports = await freePorts(1 + replicas)
  const base = ['--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--daemonize', 'no', '--dir', dir, '--logfile', '']
  const procs = ports.map((port, i) => spawnServer('redis-server', ['--port', String(port), ...base, ...(i > 0 ? ['--replicaof', '127.0.0.1', String(ports[0])] : [])], children))
  for (const port of ports) await waitFor(async () => (await redisSay(port, 'PING')).startsWith('+PONG'), { timeoutMs: 10_000, what: `redis on ${port}` })
  // Connected is not enough: a replica acknowledges (WAIT) once its first sync is done.
  const online = async () => ((await redisSay(ports[0], 'INFO replication')).match(/state=online/g) ?? []).length === replicas
  if (replicas > 0) await waitFor(online, { timeoutMs: 15_000, what: 'both Redis replicas synced' })
  return { args: { port: ports[0] }, pids: procs.map((p) => p.pid!), stop: async () => void (await Promise.all(procs.map(killByPid))) }
}

async function startEtcd(dir: string, children: ChildProcess[]): Promise<Running> {
  const ports = await freePorts(6)
  const members = [0, 1, 2].map((i) => ({ name: `e${i + 1}`, client: `http://127.0.0.1:${ports[i]}`, peer: `http://127.0.0.1:${ports[3 + i]}` }))
  const initial = members.map((m) => `${m.name}=${m.peer}`).join(',')
  const procs = members.map((m) => spawnServer('etcd', [
    '--name', m.name, '--data-dir', path.join(dir, m.name),
    '--listen-client-urls', m.client, '--advertise-client-urls', m.client,
    '--listen-peer-urls', m.peer, '--initial-advertise-peer-urls', m.peer,
    '--initial-cluster', initial, '--initial-cluster-state', 'new', '--initial-cluster-token', 'zerohop-bench',
    '--log-level', 'error',
  ], children))
  for (const m of members) {
    await waitFor(async () => {
      const res = await request(`${m.client}/health`)
      const body = (await res.body.json()) as { health?: string }
      return body.health === 'true'
    }, { timeoutMs: 20_000, what: `etcd ${m.name} healthy` })
  }
  return { args: { hosts: members.map((m) => m.client) }, pids: procs.map((p) => p.pid!), stop: async () => void (await Promise.all(procs.map(killByPid))) }
}

async function startZerohop(): Promise<Running> {
  const cluster = await Cluster.start({ nodes: 3, secure: 'users' })
  return { args: { seeds: cluster.seeds, token: cluster.tokens!.writer, connections: 16 }, pids: cluster.nodes.map((n) => n.pid!), stop: () => cluster.close() }
}

interface Phase {
  ops: number
  errors: number
  firstError?: string
  opsPerSec?: number
  p50?: number
  p99?: number
  cpu: { clientUsPerOp: number; serversUsPerOp: number; machineCores: number; oursCores: number }
}

interface Measured {
  system: System
  round: number
  getLatency: Phase
  putLatency: Phase
  getThroughput: Phase
  putThroughput: Phase
}

async function main(): Promise<void> {
  const startedAt = new Date()
  ensurePackages()
  console.log(environmentLine())
  const tck = clockTicks()
  const children: ChildProcess[] = []
  let running: Running | undefined
  let worker: ChildProcess | undefined
  const dirs: string[] = []
  const cleanup = cleanupOnExit(async () => {
    await Promise.allSettled([running?.stop(), ...(worker ? [killByPid(worker)] : []), ...children.map(killByPid)])
    for (const d of dirs) rmSync(d, { recursive: true, force: true })
  })
  const results: Measured[] = []
  try {
    for (let round = 1; round <= cfg.rounds; round++) {
      // Interleaved: each round runs every system once, starting one further along.
      const order = cfg.systems.map((_, i) => cfg.systems[(i + round - 1) % cfg.systems.length])
      for (const system of order) {
        const dir = mkdtempSync(path.join(os.tmpdir(), `zerohop-peers-${system}-`))
        dirs.push(dir)
        running = system === 'zerohop' ? await startZerohop() : system === 'etcd' ? await startEtcd(dir, children) : await startRedis(system === 'redis' ? 0 : 2, dir, children)
        worker = forkPlain('peers-worker.mjs')
        const rpc = new Rpc(worker)
        await rpc.call('init', { name: system, args: running.args, keyCount: cfg.keys, pids: running.pids, clkTck: tck }, 180_000)
        const phase = (op: 'get' | 'put', kind: 'latency' | 'throughput') => {
          const [ops, maxMs] = kind === 'latency' ? [cfg.latencyOps, cfg.latencyMaxMs] : [cfg.throughputOps, cfg.throughputMaxMs]
          return rpc.call<Phase>('phase', { op, kind, ops, maxMs, concurrency: cfg.concurrency }, maxMs + 30_000)
        }
        const m: Measured = {
          system,
          round,
          getLatency: await phase('get', 'latency'),
          putLatency: await phase('put', 'latency'),
          getThroughput: await phase('get', 'throughput'),
          putThroughput: await phase('put', 'throughput'),
        }
        results.push(m)
        const errors = [m.getLatency, m.putLatency, m.getThroughput, m.putThroughput].filter((p) => p.errors > 0)
        console.log(`round ${round} ${system.padEnd(10)} get ${fmt(m.getThroughput.opsPerSec!).padStart(7)} ops/s ${fmt(cpuOf(m.getThroughput)).padStart(4)} µs CPU p50 ${fmt(m.getLatency.p50!)} µs · put ${fmt(m.putThroughput.opsPerSec!).padStart(7)} ops/s ${fmt(cpuOf(m.putThroughput)).padStart(4)} µs CPU p50 ${fmt(m.putLatency.p50!)} µs${errors.length ? ` · ERRORS: ${errors[0].firstError}` : ''}`)
        await rpc.call('close', {}, 10_000).catch(() => undefined)
        await killByPid(worker)
        worker = undefined
        await running.stop()
        running = undefined
        rmSync(dir, { recursive: true, force: true })
      }
    }
  } finally {
    await cleanup()
  }
  report(results, startedAt)
  await saveResults('peers', 'peers-latest.json', startedAt, { config: cfg, environment: environment(), results })
}

const cpuOf = (p: Phase) => p.cpu.clientUsPerOp + p.cpu.serversUsPerOp

function report(results: Measured[], startedAt: Date): void {
  const of = (s: System) => results.filter((r) => r.system === s)
  const med = (s: System, f: (m: Measured) => number) => median(of(s).map(f))
  const systems = cfg.systems.filter((s) => of(s).length > 0)
  console.log(`\nMedians of ${cfg.rounds} interleaved rounds: ${cfg.keys} keys, 1 KB values; throughput at ${cfg.concurrency} in flight (CPU per op: client + servers), latency single-flight\n`)
  console.log(table(
    ['system', 'get ops/s', 'put ops/s', 'CPU µs/get', 'CPU µs/put', 'get p50 µs', 'get p99 µs', 'put p50 µs', 'put p99 µs'],
    systems.map((s) => [
      NAMES[s],
      fmt(med(s, (m) => m.getThroughput.opsPerSec!)),
      fmt(med(s, (m) => m.putThroughput.opsPerSec!)),
      fmt(med(s, (m) => cpuOf(m.getThroughput))),
      fmt(med(s, (m) => cpuOf(m.putThroughput))),
      fmt(med(s, (m) => m.getLatency.p50!)),
      fmt(med(s, (m) => m.getLatency.p99!)),
      fmt(med(s, (m) => m.putLatency.p50!)),
      fmt(med(s, (m) => m.putLatency.p99!)),
    ]),
  ))
  // Ratios within each round, then their median: the machine's drift between rounds cancels out.
  const ratio = (a: System, b: System, f: (m: Measured) => number) => {
    const xs = of(a).map((m) => {
      const other = of(b).find((o) => o.round === m.round)
      return other ? f(m) / f(other) : NaN
    })
    return median(xs)
  }
  if (!systems.includes('zerohop')) return
  const rows: [string, number, string][] = []
  const add = (label: string, x: number, target: string) => rows.push([label, x, target])
  if (systems.includes('redis')) {
    add('get ops/s, Zerohop / Redis', ratio('zerohop', 'redis', (m) => m.getThroughput.opsPerSec!), '≥ 0.5')
    add('get p50, Zerohop / Redis', ratio('zerohop', 'redis', (m) => m.getLatency.p50!), '≤ 2')
  }
  if (systems.includes('redis-wait')) {
    add('put ops/s, Zerohop / Redis SET + WAIT', ratio('zerohop', 'redis-wait', (m) => m.putThroughput.opsPerSec!), '≥ 1.0')
    add('put p50, Zerohop / Redis SET + WAIT', ratio('zerohop', 'redis-wait', (m) => m.putLatency.p50!), '≤ 3')
  }
  if (systems.includes('etcd')) {
    add('get ops/s, Zerohop / etcd', ratio('zerohop', 'etcd', (m) => m.getThroughput.opsPerSec!), 'well ahead')
    add('put ops/s, Zerohop / etcd', ratio('zerohop', 'etcd', (m) => m.putThroughput.opsPerSec!), 'well ahead')
  }
  add('CPU µs per get, Zerohop', med('zerohop', (m) => cpuOf(m.getThroughput)), '≤ 35')
  add('CPU µs per put, Zerohop', med('zerohop', (m) => cpuOf(m.putThroughput)), '≤ 150')
  console.log('\nRatios (median of per-round ratios) and the targets:\n')
  console.log(table(['figure', 'value', 'target'], rows.map(([l, x, t]) => [l, fmt(x, x < 10 ? 2 : 0), t])))
  console.log(`\n(${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s)`)
}

runMain(main)
