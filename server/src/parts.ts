// The parts of a storage node, built from its options and seams (store, transport, clock, random,
// logger) and wired to each other: replica, gossip, handoff, hints, anti-entropy, reaper, the
// coordinator engine for load-balanced clients, metrics and the request handler. StorageNode owns
// the lifecycle; this owns who talks to whom.
import { HttpError, Paths, type Clock, type Random, type ClusterView, type MemberState, type NodeStats, type ClusterResponse } from '@zerohop/core'
import { Engine, ReplicaClient, resolveEngineOptions, systemClock } from '@zerohop/client'
import type { Logger } from 'pino'
import type { ResolvedNodeOptions } from './config.js'
import { Gossip } from './gossip.js'
import { Handoff } from './handoff.js'
import { HintStore } from './hints.js'
import { nodeMetrics, RequestMetrics } from './metrics.js'
import { clusterStatus, nodeStats } from './cluster-status.js'
import { Registry } from 'prom-client'
import { AntiEntropy } from './anti-entropy.js'
import { Actors, Replica } from './replica.js'
import { DataScan } from './scan.js'
import { Reaper } from './reaper.js'
import { NodeMembership } from './membership.js'
import type { LocalTransport } from './local-transport.js'
import type { Store } from './storage/store.js'
import { createRequestHandler, type RequestHandler } from './routes/index.js'
import { ZerohopError, ErrorCodes, SIGNATURE_WINDOW_MS } from '@zerohop/core'
import type { Auth } from './auth.js'

export interface WireDeps {
  options: ResolvedNodeOptions
  store: Store
  transport: LocalTransport
  clock: Clock
  random: Random
  log: Logger
  actors: Actors
  self: MemberState
  known: MemberState[]
  /** The membership view once the node serves (undefined before). */
  view: () => ClusterView | undefined
  ready: () => boolean
  stopping: () => boolean
  onChange: (view: ClusterView) => void
  onLeft: () => void
  health: () => object
  leave: () => { member: MemberState; changed: boolean }
  remove: (id: string) => { member: MemberState; changed: boolean }
  nextChange: (ms: number) => Promise<void>
  auth: Auth
}

export interface NodeParts {
  replica: Replica
  gossip: Gossip
  handoff: Handoff
  hints: HintStore
  antiEntropy: AntiEntropy
  reaper: Reaper
  engine: Engine
  handler: RequestHandler
  /** This node's figures (GET /v1/stats). */
  stats: () => Promise<NodeStats>
}

/**
 * The oldest proof a relayed set may carry: the signature window, or less when tombstones are reaped
 * sooner. A set proved before a delete must not be accepted once the tombstone that superseded it may
 * be gone (the grace period minus the hints' lifetime, halved for clocks that differ).
 */
/** How long one /v1/cluster answer is reused (the dashboard polls every 2 s). */
export const CLUSTER_CACHE_MS = 1000

export function proofMaxAge(o: Pick<ResolvedNodeOptions, 'tombstoneGraceMs' | 'hintTtlMs'>): number {
  return Math.min(SIGNATURE_WINDOW_MS, Math.floor((o.tombstoneGraceMs - o.hintTtlMs) / 2))
}

export function wire(d: WireDeps): NodeParts {
  const o = d.options
  const { store, transport, clock, log } = d
  // Durations (how long a tombstone was held, how long a request took) on a clock that never steps;
  // a simulation's clock is virtual and steps only forward.
  const elapsed = clock === systemClock ? () => performance.now() : () => clock.now()
  // The hooks reach parts built after the replica.
  let antiEntropy: AntiEntropy | undefined
  let reaper: Reaper | undefined
  const replica = new Replica(store, d.actors, (p, k, before, after, dead) => {
    antiEntropy?.onWrite(p, k, before, after)
    reaper?.onWrite(p, k, dead)
  })
  /** Every node-to-node request (gossip, handoff, hints, anti-entropy, reaping). */
  const replicaClient = new ReplicaClient(transport)
  const gossip = new Gossip({
    self: d.self,
    known: d.known,
    seeds: o.seeds,
    intervalMs: o.gossipIntervalMs,
    seedProbability: o.seedProbability,
    phiThreshold: o.phiThreshold,
    params: { partitions: o.partitions, n: o.n, spares: 2 },
    clock,
    random: () => d.random.next(),
    log,
    replicaClient,
    onChange: d.onChange,
  })
  const handoff = new Handoff({
    gossip,
    replica,
    store,
    replicaClient,
    clock,
    log,
    rateBytesPerSec: o.handoffRateBytes,
    pageItems: o.handoffPageItems,
    dropDelayMs: o.dropDelayMs,
    onLeft: d.onLeft,
  })
  const hints = new HintStore({
    store,
    replicaClient,
    clock,
    log,
    maxBytesPerTarget: o.maxHintBytes,
    ttlMs: o.hintTtlMs,
    intervalMs: o.hintIntervalMs,
    batchItems: 500,
    locate: (id) => {
      const m = gossip.states.get(id)
      if (!m || m.status === 'left') return undefined
      return { url: m.url, up: gossip.isUp(id) }
    },
    replicasOf: (p) => [...gossip.view.replicas(p).current],
  })
  // Anti-entropy's trees and the reaper's tombstones are built by one pass over the data at start-up.
  const scan = new DataScan(store)
  antiEntropy = new AntiEntropy({
    store,
    scan,
    storeSet: (p, k, set) => replica.store(p, k, set),
    replicaClient,
    clock,
    random: () => d.random.next(),
    partitions: () => {
      const view = d.view()
      if (!view || view.transition) return []
      const out: number[] = []
      for (let p = 0; p < view.current.partitions; p++) if (view.replicates(o.id, p)) out.push(p)
      return out
    },
    peers: (p) => {
      const view = d.view()
      if (!view) return []
      return view.replicas(p).current.filter((m) => m.id !== o.id && gossip.isUp(m.id)).map((m) => ({ id: m.id, url: m.url }))
    },
    intervalMs: o.aeIntervalMs,
    maxKeysPerSecond: o.aeMaxKeysPerSecond,
    onError: (err, partition, peer) => {
      // A peer with other tree options can never be compared with: say so where an operator looks.
      const mismatch = err instanceof ZerohopError && err.code === ErrorCodes.CLUSTER_MISMATCH
      log[mismatch ? 'warn' : 'debug']({ err, partition, peer: peer.id }, partition === undefined ? 'anti-entropy roots request failed' : 'anti-entropy exchange failed')
    },
  })
  reaper = new Reaper({
    store,
    scan,
    replica,
    clock,
    log,
    graceMs: o.tombstoneGraceMs,
    intervalMs: o.reapIntervalMs,
    elapsed,
    plan: (p) => {
      const view = d.view()
      if (!view || !view.settled) return undefined
      const replicas = view.replicas(p).current
      if (replicas[0]?.id !== o.id) return undefined
      const peers = replicas.slice(1)
      if (!peers.every((m) => gossip.isUp(m.id))) return undefined
      return { epoch: view.epoch, peers: peers.map((m) => ({ id: m.id, url: m.url })) }
    },
    replicaClient,
  })
  const limits = { maxKeyBytes: o.maxKeyBytes, maxValueBytes: o.maxValueBytes, maxBodyBytes: o.maxBodyBytes }
  // Load-balancer mode: this node coordinates clients' requests with the SDK's engine, over its own
  // gossip view; its own replica is reached through the local path of the transport.
  const engine = new Engine(
    resolveEngineOptions({ r: o.r, w: o.w, timeoutMs: o.timeoutMs, clock, random: d.random, local: o.id }),
    transport,
    new NodeMembership({ gossip, view: d.view, limits, clock, debounceMs: 200 }),
  )
  const ae = antiEntropy
  const rp = reaper
  const registry = new Registry()
  const requests = new RequestMetrics(registry)
  nodeMetrics({
    requests: () => requests.counts,
    hints: () => ({ ...hints.metrics, held: hints.counts() }),
    handoff: () => handoff.stats,
    peersDown: () => gossip.down().length,
    antiEntropy: () => ae.metrics,
    tombstones: () => ({ held: rp.count, reaped: rp.metrics.reaped }),
    refused: () => auth.refused,
  }, registry)
  const stats = () => nodeStats({ id: o.id, url: o.advertise, now: () => clock.now(), member: () => gossip.self.status, hints, handoff, antiEntropy: ae, reaper: rp, requests })
  /** Every member's /v1/stats (this node's own without a request), 1 s each at most. */
  const gather = async () => {
    const view = d.view()
    if (!view) throw new HttpError(503, ErrorCodes.NOT_READY, 'this node is starting: it has not heard from enough seeds yet; retry shortly')
    const found = new Map<string, NodeStats | string>()
    await Promise.all([...view.members.values()].filter((m) => m.status !== 'left').map(async (m) => {
      if (m.id === o.id) return found.set(m.id, await stats())
      if (!gossip.isUp(m.id)) return found.set(m.id, `down as far as ${o.id} can tell`)
      try {
        const reply = await transport.get(m.url, Paths.stats, { timeoutMs: 1000 })
        const body = reply.status === 200 ? (JSON.parse(reply.body.toString('utf8')) as NodeStats) : undefined
        found.set(m.id, body?.id === m.id && isStats(body) ? body : `answered HTTP ${reply.status}${body ? ' without its figures' : ''}`)
      } catch (err) {
        found.set(m.id, (err as Error).message)
      }
    }))
    return clusterStatus(view, { self: o.id, isUp: (id) => gossip.isUp(id), phi: (id) => gossip.phi(id), phiThreshold: o.phiThreshold }, found)
  }
  // One fan-out at a time, and its answer kept for CLUSTER_CACHE_MS: however often /v1/cluster is
  // asked (dashboards, scripts, anyone on an open cluster), the members get at most one /v1/stats
  // from this node per period.
  let last: { at: number; answer: Promise<ClusterResponse> } | undefined
  const cluster = (): Promise<ClusterResponse> => {
    const now = clock.now()
    if (last && now - last.at < CLUSTER_CACHE_MS) return last.answer
    const answer = gather()
    const entry = { at: now, answer }
    last = entry
    answer.catch(() => {
      if (last === entry) last = undefined
    })
    return answer
  }
  const { auth } = d
  const handler = createRequestHandler({
    auth,
    signing: auth.keys && { keys: auth.keys, now: () => clock.now(), maxAgeMs: proofMaxAge(o), refused: (reason) => auth.count(reason) },
    options: o,
    log,
    requests,
    elapsed,
    view: d.view,
    gossip: () => gossip,
    replica: () => (d.ready() ? replica : undefined),
    parts: () => ({ hints, antiEntropy: ae, reaper: rp }),
    engine: () => (d.ready() ? engine : undefined),
    random: d.random,
    metrics: async () => ({ contentType: registry.contentType, text: await registry.metrics() }),
    health: d.health,
    stats,
    cluster,
    stopping: d.stopping,
    leave: d.leave,
    remove: d.remove,
    nextChange: d.nextChange,
  })
  transport.serve(handler)
  return { replica, gossip, handoff, hints, antiEntropy: ae, reaper: rp, engine, handler, stats }
}

/** A member's /v1/stats answer has every part status and the dashboard read (a partial one is refused, not shown). */
function isStats(x: NodeStats): boolean {
  const obj = (v: unknown) => typeof v === 'object' && v !== null
  return obj(x.hints) && obj(x.hints.targets) && typeof x.hints.items === 'number' && obj(x.handoff) && obj(x.antiEntropy) && obj(x.tombstones) && Array.isArray(x.requests) && typeof x.time === 'number'
}
