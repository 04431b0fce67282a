// npm run bench:scale: Zerohop at scale, in two parts.
//   1. A big node: one node whose LevelDB holds 1,000,000 keys of 100-byte values (and 10,000
//      tombstones), written straight into its data directory while it is stopped; then it is started
//      again. Reported: the seconds until it serves, until its scans are done (its Merkle trees built,
//      its tombstones indexed: /v1/stats says ready and scanned), and its RSS then (and its peak).
//   2. Many clients: 8 SDK processes with 64 operations in flight each (512 in all) on a secured
//      3-node cluster, gets then puts: ops/s, errors, and each process's p50/p99 under that load.
//      Each op's measured phase follows a warm-up of the same load (SCALE_WARM_MS): eleven fresh
//      processes compiling their hot code on two cores at once answer far slower than they do a few
//      seconds later (in one run, 161 of about 10,000 gets timed out cold, none of 38,000 warm).
//      The warm-up's errors are reported too, as the cold start's.
// Traffic stays on 127.0.0.1; every process started here is stopped by its PID, also on failure.
// Knobs (environment): SCALE_KEYS (1000000), SCALE_CLIENTS (8), SCALE_INFLIGHT (64), SCALE_MS (5000),
// SCALE_WARM_MS (3000).
import type { ChildProcess } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { Level } from 'level'
import { request } from 'undici'
import { ClusterView, encodeSet, update, utf8, type NodeStats, type RingResponse } from '@zerohop/core'
import { dataKey } from '../../server/src/replica.js'
import { Cluster, waitFor } from '../harness/cluster.js'
import { Rpc, cleanupOnExit, clockTicks, envInt, environment, environmentLine, fmt, forkPlain, killByPid, median, runMain, saveResults, table } from './report.js'

const cfg = {
  keys: envInt('SCALE_KEYS', 1_000_000),
  tombstones: 10_000,
  valueBytes: 100,
  clients: envInt('SCALE_CLIENTS', 8),
  inFlight: envInt('SCALE_INFLIGHT', 64),
  ms: envInt('SCALE_MS', 5000),
  warmMs: envInt('SCALE_WARM_MS', 3000),
}

/** A process's resident set now and at its peak (/proc), in MB. */
function rss(pid: number): { now: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8')
  const kb = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? NaN)
  return { now: kb('VmRSS') / 1024, peak: kb('VmHWM') / 1024 }
}

async function stats(url: string): Promise<NodeStats | undefined> {
  const res = await request(`${url}/v1/stats`, { headersTimeout: 2000, bodyTimeout: 2000 })
  if (res.statusCode !== 200) {
    await res.body.dump()
    return undefined
  }
  return (await res.body.json()) as NodeStats
}

async function bigNode(): Promise<Record<string, number>> {
  const cluster = await Cluster.start({ nodes: 1 })
  try {
    const node = cluster.nodes[0]
    const ring = (await node.ring()) as RingResponse
    const view = new ClusterView(ring.members, { partitions: ring.partitions, n: ring.n, spares: ring.spares })
    const health = (await (await request(`${node.url}/v1/health`)).body.json()) as { actor: string }
    await node.stop()
    // Written as the node writes them: its keys, its actor, one version each.
    const filled = performance.now()
    const db = new Level<Uint8Array, Uint8Array>(node.dataDir, { keyEncoding: 'view', valueEncoding: 'view' })
    await db.open()
    const value = randomBytes(cfg.valueBytes)
    const BATCH = 10_000
    for (let i = 0; i < cfg.keys + cfg.tombstones; i += BATCH) {
      const ops = []
      for (let j = i; j < Math.min(i + BATCH, cfg.keys + cfg.tombstones); j++) {
        const key = utf8(`key-${String(j).padStart(8, '0')}`)
        const set = encodeSet(update([], [], health.actor, j < cfg.keys ? value : null))
        ops.push({ type: 'put' as const, key: dataKey(view.current.partitionOf(key), key), value: set })
      }
      await db.batch(ops)
    }
    await db.close()
    const fillS = (performance.now() - filled) / 1000
    console.log(`wrote ${fmt(cfg.keys)} keys and ${fmt(cfg.tombstones)} tombstones into n1's LevelDB in ${fillS.toFixed(1)} s`)
    const started = performance.now()
    node.start()
    await node.ready(120_000)
    const servingS = (performance.now() - started) / 1000
    await waitFor(async () => {
      const s = await stats(node.url)
      return s?.antiEntropy.ready && s.tombstones.scanned && s.tombstones.held === cfg.tombstones
    }, { timeoutMs: 300_000, intervalMs: 100, what: 'the scans at start' })
    const scannedS = (performance.now() - started) / 1000
    const mem = rss(node.pid!)
    console.log(`started again: serving after ${servingS.toFixed(1)} s, scans done after ${scannedS.toFixed(1)} s, RSS ${mem.now.toFixed(0)} MB (peak ${mem.peak.toFixed(0)} MB)`)
    return { keys: cfg.keys, tombstones: cfg.tombstones, fillS, servingS, scannedS, rssMb: mem.now, peakRssMb: mem.peak }
  } finally {
    await cluster.close()
  }
}

interface Loaded {
  ops: number
  errors: number
  firstError?: string
  opsPerSec: number
  loadedP50: number
  loadedP99: number
}

async function manyClients(children: ChildProcess[]): Promise<Record<string, unknown>> {
  const cluster = await Cluster.start({ nodes: 3, secure: 'users' })
  try {
    const tck = clockTicks()
    const workers = Array.from({ length: cfg.clients }, () => forkPlain('peers-worker.mjs'))
    children.push(...workers)
    const rpcs = workers.map((w) => new Rpc(w))
    const args = { seeds: cluster.seeds, token: cluster.tokens!.writer, connections: 16 }
    // One client at a time writes its keys: set-up, not the measurement.
    for (const [i, rpc] of rpcs.entries()) await rpc.call('init', { name: 'zerohop', args, keyCount: 500, pids: [], clkTck: tck, prefix: `c${i}-` }, 120_000)
    const out: Record<string, unknown> = { clients: cfg.clients, inFlight: cfg.inFlight }
    const phase = (op: 'get' | 'put', maxMs: number) => Promise.all(rpcs.map((rpc) => rpc.call<Loaded>('phase', { op, kind: 'throughput', ops: 1_000_000, maxMs, concurrency: cfg.inFlight }, maxMs + 60_000)))
    for (const op of ['get', 'put'] as const) {
      const warm = cfg.warmMs > 0 ? await phase(op, cfg.warmMs) : []
      const warmErrors = warm.reduce((a, r) => a + r.errors, 0)
      if (cfg.warmMs > 0) console.log(`${cfg.clients} clients × ${cfg.inFlight} in flight, ${op}, warm-up (${fmt(cfg.warmMs)} ms): ${fmt(warm.reduce((a, r) => a + r.opsPerSec, 0))} ops/s in all, ${warmErrors} errors${warmErrors ? ` (${warm.find((r) => r.firstError)?.firstError?.split('\n')[0]})` : ''}`)
      const rs = await phase(op, cfg.ms)
      const total = rs.reduce((a, r) => a + r.opsPerSec, 0)
      const errors = rs.reduce((a, r) => a + r.errors, 0)
      const p99s = rs.map((r) => r.loadedP99)
      console.log(`${cfg.clients} clients × ${cfg.inFlight} in flight, ${op}: ${fmt(total)} ops/s in all, ${errors} errors${errors ? ` (${rs.find((r) => r.firstError)?.firstError})` : ''}; p99 under load ${fmt(median(p99s))} µs (median of the clients), ${fmt(Math.max(...p99s))} µs (worst)`)
      out[op] = { opsPerSec: total, errors, warmUpErrors: warmErrors, p50Us: median(rs.map((r) => r.loadedP50)), p99Us: median(p99s), worstP99Us: Math.max(...p99s) }
    }
    await Promise.all(rpcs.map((rpc) => rpc.call('close', {}, 10_000).catch(() => undefined)))
    await Promise.all(workers.map(killByPid))
    return out
  } finally {
    await cluster.close()
  }
}

async function main(): Promise<void> {
  const startedAt = new Date()
  console.log(environmentLine())
  const children: ChildProcess[] = []
  const cleanup = cleanupOnExit(async () => void (await Promise.allSettled(children.map(killByPid))))
  try {
    const big = await bigNode()
    const many = await manyClients(children)
    console.log(`\n${table(['figure', 'value', 'target'], [
      [`a node with ${fmt(cfg.keys)} keys: serving after a start, s`, fmt(big.servingS, 1), ''],
      ['… its scans (Merkle trees, tombstones) done, s', fmt(big.scannedS, 1), '≤ 15'],
      ['… RSS then, MB', fmt(big.rssMb), '< 400'],
      ['… peak RSS, MB', fmt(big.peakRssMb), ''],
      [`${cfg.clients} SDK processes × ${cfg.inFlight} in flight: get errors`, String((many.get as { errors: number }).errors), '0'],
      ['… get p99 under load (median of the processes), µs', fmt((many.get as { p99Us: number }).p99Us), ''],
      ['… get errors in the warm-up before (cold processes)', String((many.get as { warmUpErrors: number }).warmUpErrors), ''],
      ['… put errors', String((many.put as { errors: number }).errors), '0'],
      ['… put p99 under load (median of the processes), µs', fmt((many.put as { p99Us: number }).p99Us), ''],
      ['… put errors in the warm-up before', String((many.put as { warmUpErrors: number }).warmUpErrors), ''],
    ])}`)
    await saveResults('scale', 'scale-latest.json', startedAt, { config: cfg, environment: environment(), bigNode: big, manyClients: many })
  } finally {
    await cleanup()
  }
}

runMain(main)
