// What the benchmarks' client processes measure, and how: CPU of this process and of the server
// processes (from /proc), single-flight latency percentiles, and throughput at a given concurrency.
// Every loop is bounded in count and in time. Used by client-worker.mjs (npm run bench) and
// peers-worker.mjs (npm run bench:peers).
import { readFileSync } from 'node:fs'
import { performance } from 'node:perf_hooks'

let clkTck = 100 // getconf CLK_TCK on Linux; the drivers pass the real value

/** The machine's clock ticks per second (getconf CLK_TCK), for /proc's CPU times. */
export function setClkTck(tck) {
  if (tck) clkTck = tck
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/** utime + stime of a process, in µs (from /proc/<pid>/stat, clock-tick resolution). */
export function procCpuUs(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ')
    // After "pid (comm) ": state is field 3, utime field 14, stime field 15.
    return ((Number(f[11]) + Number(f[12])) * 1e6) / clkTck
  } catch {
    return NaN
  }
}

/** Busy and total jiffies of the whole machine (/proc/stat), to see load from other processes. */
export function machineJiffies() {
  try {
    const line = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]
    const v = line.trim().split(/\s+/).slice(1).map(Number)
    const idle = v[3] + (v[4] || 0)
    const total = v.reduce((a, b) => a + b, 0)
    return { busy: total - idle, total }
  } catch {
    return { busy: NaN, total: NaN }
  }
}

/** `lbPid`: HAProxy's own process, counted apart from the servers (NaN when there is none). */
export function snapshot(pids, lbPid) {
  const cu = process.cpuUsage()
  return {
    t: performance.now(),
    client: cu.user + cu.system,
    servers: pids.map(procCpuUs),
    lb: lbPid ? procCpuUs(lbPid) : NaN,
    machine: machineJiffies(),
  }
}

export function cpuDelta(a, b, ops) {
  const wallUs = (b.t - a.t) * 1000
  const clientUs = b.client - a.client
  const perServerUs = b.servers.map((x, i) => x - a.servers[i])
  const serversUs = perServerUs.reduce((s, x) => s + x, 0)
  const lbUs = b.lb - a.lb
  const machineBusyUs = ((b.machine.busy - a.machine.busy) * 1e6) / clkTck
  return {
    clientUsPerOp: clientUs / ops,
    serversUsPerOp: serversUs / ops,
    perServerUsPerOp: perServerUs.map((x) => x / ops),
    // HAProxy's process (both its threads), apart from the servers; NaN when not in the path.
    lbUsPerOp: lbUs / ops,
    // Cores busy on average: ours (client + servers + HAProxy) and the whole machine (includes other tenants).
    oursCores: (clientUs + serversUs + (Number.isFinite(lbUs) ? lbUs : 0)) / wallUs,
    machineCores: machineBusyUs / wallUs,
  }
}

// ---------------------------------------------------------------------------------------------
// Phases

export function percentile(sorted, q) {
  if (sorted.length === 0) return NaN
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))]
}

/** The quantiles of latencies in ms (sorted in place), in µs to a tenth; 1 is the maximum. */
function quantiles(ms) {
  const sorted = ms.sort()
  return (q) => Math.round(percentile(sorted, q) * 1000 * 10) / 10
}

export async function sleep(ms) {
  await new Promise((r) => setTimeout(r, ms))
}

/** Sequential ops, one in flight. */
export async function latencyPhase(op, ops, maxMs, pids, lbPid) {
  const lat = new Float64Array(ops)
  let n = 0
  let errors = 0
  let firstError
  const a = snapshot(pids, lbPid)
  const deadline = a.t + maxMs
  while (n < ops && performance.now() < deadline) {
    const s = performance.now()
    try {
      await op()
    } catch (err) {
      errors++
      firstError ??= String(err?.stack ?? err)
      if (errors > 100) break
      continue
    }
    lat[n++] = performance.now() - s
  }
  const b = snapshot(pids, lbPid)
  const at = quantiles(lat.subarray(0, n))
  return {
    ops: n,
    errors,
    firstError,
    elapsedMs: b.t - a.t,
    p50: at(0.5),
    p90: at(0.9),
    p99: at(0.99),
    p999: at(0.999),
    max: at(1),
    mean: n ? Math.round((lat.subarray(0, n).reduce((s, x) => s + x, 0) / n) * 1000 * 10) / 10 : NaN,
    cpu: cpuDelta(a, b, Math.max(1, n)),
  }
}

/** `concurrency` loops sharing one op budget and one deadline; each op's latency under that load is kept too. */
export async function throughputPhase(op, concurrency, ops, maxMs, pids, lbPid) {
  let started = 0
  let done = 0
  let errors = 0
  let firstError
  const lat = new Float64Array(ops)
  const a = snapshot(pids, lbPid)
  const deadline = a.t + maxMs
  const loop = async () => {
    while (started < ops && performance.now() < deadline && errors <= 100) {
      started++
      const s = performance.now()
      try {
        await op()
        lat[done++] = performance.now() - s
      } catch (err) {
        errors++
        firstError ??= String(err?.stack ?? err)
      }
    }
  }
  await Promise.all(Array.from({ length: concurrency }, loop))
  const b = snapshot(pids, lbPid)
  const elapsedMs = b.t - a.t
  const at = quantiles(lat.subarray(0, done))
  return {
    ops: done,
    errors,
    firstError,
    elapsedMs,
    opsPerSec: Math.round((done * 1000) / elapsedMs),
    // Latency under this load (queueing included).
    loadedP50: at(0.5),
    loadedP99: at(0.99),
    cpu: cpuDelta(a, b, Math.max(1, done)),
  }
}

// ---------------------------------------------------------------------------------------------
// The driver's calls

/**
 * Answer the driver's calls over IPC (`{id, cmd, args}` → `{id, ok, result | error}`) with
 * `commands`; `close` ends the channel once answered. The process never outlives its driver.
 */
export function serve(commands) {
  process.on('message', async (msg) => {
    const { id, cmd, args } = msg
    try {
      const result = await commands[cmd](args ?? {})
      process.send({ id, ok: true, result }, () => {
        if (cmd === 'close') process.disconnect()
      })
    } catch (err) {
      process.send({ id, ok: false, error: String(err?.stack ?? err) })
    }
  })
  process.on('disconnect', () => {
    setTimeout(() => process.exit(0), 100).unref()
  })
}
