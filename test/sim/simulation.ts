// One seeded run of the simulator: a cluster of real nodes forms, real SDK clients run the workload
// while the nemesis injects faults, then every fault heals and the run waits (on virtual time) until
// the cluster is quiet: every node serving one settled ring, no hint held, every key's replicas alike.
// The checker then holds the final state against the history. Everything is drawn from the seed, so a
// seed replays exactly: the same event log, hashed, byte for byte.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { SimCluster, type SimClient, type SimNode } from './cluster.js'
import { check, disagreement, readKey } from './checker.js'
import { Nemesis, type NemesisOptions } from './nemesis.js'
import { Workload, type Op } from './workload.js'

export interface SimConfig {
  nodes: number
  fsync: boolean[]
  clients: { routing: 'zero-hop' | 'load-balancer' }[]
  r: number
  w: number
  setKeys: number
  registerKeys: number
  /** Virtual ms of workload and faults. */
  loadMs: number
  /** Most virtual ms a client waits between two operations. */
  thinkMs: number
  /** Clock offsets of the founding nodes (ms). */
  skewMs: number[]
  /** Quiet also means every tombstone reaped (the run lasts a grace period longer). */
  reapAtEnd: boolean
  /** The nodes share a cluster secret: they sign their requests, the sets and contexts they hand out. */
  secured: boolean
  nemesis: Omit<NemesisOptions, 'nodeOptions' | 'clients'>
}

export interface SimResult {
  seed: number
  config: SimConfig
  violations: string[]
  ops: Op[]
  faults: string[]
  /** Virtual ms the run took, and of that, how long it took to go quiet after healing. */
  virtualMs: number
  quietMs: number
  steps: number
  messages: number
  digest: string
  /** What the nodes did, summed over those running at the end (each since its last start). */
  figures: Figures
  log?: readonly string[]
}

export interface Figures {
  hintsStored: number
  hintsDelivered: number
  handoffItems: number
  keysRepaired: number
  tombstonesReaped: number
}

/** How long, after healing, the cluster has to go quiet (virtual ms). */
export const QUIET_LIMIT_MS = 240_000

/** The run's shape, drawn from its seed. */
export function configOf(sim: SimCluster): SimConfig {
  const nodes = sim.between(3, 5)
  const clients = sim.between(2, 3)
  return {
    nodes,
    fsync: Array.from({ length: nodes }, () => sim.chance(0.3)),
    clients: Array.from({ length: clients }, () => ({ routing: sim.chance(0.3) ? 'load-balancer' : 'zero-hop' })),
    r: sim.chance(0.2) ? 1 : 2,
    w: 2,
    setKeys: sim.between(1, 3),
    registerKeys: sim.between(1, 3),
    loadMs: sim.between(8000, 20_000),
    thinkMs: sim.pick([100, 400, 800]),
    skewMs: Array.from({ length: nodes }, () => (sim.chance(0.3) ? sim.between(-3000, 3000) : 0)),
    reapAtEnd: sim.chance(0.3),
    secured: sim.chance(0.25),
    nemesis: {
      maxDown: sim.chance(0.2) ? 2 : 1,
      lossy: 1,
      everyMs: [500, sim.between(2000, 6000)],
      joins: sim.between(0, 1),
      leaves: sim.chance(0.5),
    },
  }
}

export interface SimulateOptions {
  /** Keep the event log's lines in the result. */
  keepLog?: boolean
}

export async function simulate(seed: number, options: SimulateOptions = {}): Promise<SimResult> {
  const sim = new SimCluster(seed, { keepLog: options.keepLog })
  const config = configOf(sim)
  sim.log(`config ${JSON.stringify(config)}`)
  const secret = config.secured ? secretFile() : undefined
  try {
    return await run(sim, seed, config, secret?.path, options)
  } finally {
    secret?.remove()
  }
}

async function run(sim: SimCluster, seed: number, config: SimConfig, clusterSecretFile: string | undefined, options: SimulateOptions): Promise<SimResult> {
  const violations: string[] = []
  const result = (extra: Partial<SimResult>): SimResult => ({
    seed,
    config,
    violations,
    ops: [],
    faults: [],
    virtualMs: sim.now,
    quietMs: 0,
    steps: sim.scheduler.steps,
    messages: sim.network.counts.sent,
    digest: sim.digest(),
    figures: { hintsStored: 0, hintsDelivered: 0, handoffItems: 0, keysRepaired: 0, tombstonesReaped: 0 },
    log: options.keepLog ? sim.logLines : undefined,
    ...extra,
  })

  // The founding seeds start within half a second of each other.
  const ids = Array.from({ length: config.nodes }, (_, i) => `n${i + 1}`)
  const seeds = ids.map((id) => `http://${id}.sim:7000`)
  const nodeOptions = { seeds, r: config.r, w: config.w, clusterSecretFile }
  const founders = ids.map((id, i) => {
    const s = sim.define(id, nodeOptions, config.fsync[i])
    s.skewMs = config.skewMs[i]
    return s
  })
  for (const s of founders) sim.scheduler.at(sim.scheduler.now + sim.random.next() * 500, sim.owner, () => sim.start(s))
  if (!(await sim.runUntil(() => founders.every((s) => s.node?.view !== undefined), 30_000))) {
    violations.push(`the cluster did not form within 30 s: ${founders.filter((s) => !s.node?.view).map((s) => s.id).join(', ')} not serving`)
    return result({})
  }

  const clients: SimClient[] = []
  for (const [i, c] of config.clients.entries()) {
    try {
      clients.push(await sim.settle(sim.client(`c${i + 1}`, { seeds, routing: c.routing, r: config.r, w: config.w }), 30_000))
    } catch (err) {
      violations.push(`client c${i + 1} could not connect to a healthy cluster: ${(err as Error).message}`)
      return result({})
    }
  }

  const workload = new Workload(sim, { setKeys: config.setKeys, registerKeys: config.registerKeys, thinkMs: config.thinkMs })
  const nemesis = new Nemesis(sim, { ...config.nemesis, nodeOptions, clients: clients.map((c) => c.id) })
  const end = sim.now + config.loadMs
  workload.start(clients, end)
  nemesis.start(end)
  await sim.runUntil(() => sim.now >= end && workload.running === 0, config.loadMs + 60_000)
  if (workload.running > 0) violations.push(`${workload.running} clients were still in an operation 60 s after the load ended`)

  nemesis.heal()
  const healed = sim.now
  let why = await stillBusy(sim, workload, nemesis, config.reapAtEnd)
  while (why !== undefined && sim.now - healed < QUIET_LIMIT_MS) {
    await sim.run(1000)
    why = await stillBusy(sim, workload, nemesis, config.reapAtEnd)
  }
  const quietMs = sim.now - healed
  sim.log(why === undefined ? `quiet after ${quietMs} ms` : `not quiet: ${why}`)
  if (why !== undefined) violations.push(`not quiet ${QUIET_LIMIT_MS / 1000} s after healing: ${why}`)
  else {
    const view = anyView(sim)!
    violations.push(...check(workload.ops, workload.keys.map((k) => readKey(sim, view, k))))
  }
  for (const v of violations) sim.log(`violation ${v}`)
  for (const c of clients) await c.db.close()
  return result({ ops: workload.ops, faults: nemesis.applied, quietMs, figures: await figuresOf(sim) })
}

async function figuresOf(sim: SimCluster): Promise<Figures> {
  const f: Figures = { hintsStored: 0, hintsDelivered: 0, handoffItems: 0, keysRepaired: 0, tombstonesReaped: 0 }
  for (const s of sim.live()) {
    const st = await s.node!.stats()
    if (!st) continue
    f.hintsStored += st.hints.stored
    f.hintsDelivered += st.hints.delivered
    f.handoffItems += st.handoff.items
    f.keysRepaired += st.antiEntropy.keysRepaired
    f.tombstonesReaped += st.tombstones.reaped
  }
  return f
}

/**
 * The cluster secret of a secured run: a file the nodes read at start (the one thing a simulated node
 * reads from a real disk), removed when the run ends (an exit handler would not run in a test worker
 * that is stopped, and left one directory behind per test file).
 */
function secretFile(): { path: string; remove: () => void } {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'zerohop-sim-'))
  const file = path.join(dir, 'cluster-secret')
  writeFileSync(file, 'a simulated cluster secret, the same for every run', { mode: 0o600 })
  return { path: file, remove: () => rmSync(dir, { recursive: true, force: true }) }
}

function anyView(sim: SimCluster) {
  return sim.live().find((s) => s.node?.view)?.node?.view
}

/**
 * Why the cluster is not quiet yet, or undefined: every node that should run is serving one settled
 * ring, and the same one; no hint is held; every key's replicas hold the same bytes; with `reaped`,
 * no tombstone is held either.
 */
export async function stillBusy(sim: SimCluster, workload: Workload, nemesis: Nemesis, reaped: boolean): Promise<string | undefined> {
  if (nemesis.pending > 0) return 'a leave or remove is under way'
  const nodes = [...sim.nodes.values()].filter((s) => !s.departed)
  const notServing = nodes.filter((s) => !s.node?.view)
  if (notServing.length > 0) return `${notServing.map((s) => s.id).join(', ')} not serving`
  const views = nodes.map((s) => s.node!.view!)
  const epoch = views[0].epoch
  const differ = nodes.filter((_, i) => views[i].epoch !== epoch)
  if (differ.length > 0) return `rings differ (${nodes.map((s, i) => `${s.id} ${views[i].epoch.slice(0, 8)}`).join(', ')})`
  if (views[0].transition) return 'a join or leave is under way'
  const members = new Set([...views[0].current.members].map((m) => m.id))
  for (const s of nodes) {
    if (!members.has(s.id)) return `${s.id} is not a member of the ring`
  }
  for (const s of nodes) {
    const held = Object.entries(hintsOf(s)).filter(([, n]) => n > 0)
    if (held.length > 0) return `${s.id} holds hints for ${held.map(([t, n]) => `${t} (${n})`).join(', ')}`
  }
  for (const key of workload.keys) {
    const why = disagreement(readKey(sim, views[0], key))
    if (why) return why
  }
  if (reaped) {
    for (const s of nodes) {
      const held = (await s.node!.stats())?.tombstones.held ?? 0
      if (held > 0) return `${s.id} holds ${held} tombstones`
    }
  }
  return undefined
}

function hintsOf(s: SimNode): Record<string, number> {
  return s.node?.hints?.counts() ?? {}
}
