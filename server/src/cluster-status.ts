// What an operator sees of a node and of the cluster: GET /v1/stats (this node's own figures) and
// GET /v1/cluster (the membership as the asked node sees it, every member's figures, ownership,
// balance and the moves of a join or leave). `zerohop status`, `zerohop ring`, `zerohop leave` and
// the dashboard all read /v1/cluster.
import type { ClusterMember, ClusterResponse, ClusterView, MemberState, NodeStats, PendingMove } from '@zerohop/core'
import type { AntiEntropy } from './anti-entropy.js'
import type { Handoff } from './handoff.js'
import type { HintStore } from './hints.js'
import type { RequestMetrics } from './metrics.js'
import type { Reaper } from './reaper.js'

export interface StatsSources {
  id: string
  url: string
  now: () => number
  member: () => string
  hints: HintStore
  handoff: Handoff
  antiEntropy: AntiEntropy
  reaper: Reaper
  requests: RequestMetrics
}

export async function nodeStats(s: StatsSources): Promise<NodeStats> {
  const targets = s.hints.backlog()
  let items = 0
  let bytes = 0
  for (const t of Object.values(targets)) {
    items += t.items
    bytes += t.bytes
  }
  const ae = s.antiEntropy.metrics
  return {
    id: s.id,
    url: s.url,
    time: s.now(),
    member: s.member(),
    hints: { items, bytes, targets, ...s.hints.metrics },
    handoff: { ...s.handoff.progress, items: s.handoff.stats.items, bytes: s.handoff.stats.bytes },
    antiEntropy: { ready: s.antiEntropy.ready, rounds: ae.rounds, exchanges: ae.exchanges, keysRepaired: ae.keysRepaired, lastRoundAt: ae.lastRoundAt },
    tombstones: { scanned: s.reaper.scanned, held: s.reaper.count, reaped: s.reaper.metrics.reaped },
    requests: await s.requests.latencies(),
  }
}

/** How the asked node's failure detector sees a member. */
export interface Liveness {
  self: string
  isUp: (id: string) => boolean
  phi: (id: string) => number
  phiThreshold: number
}

export function statusOf(m: MemberState): ClusterMember['status'] {
  return m.removed ? 'removed' : m.status
}

/**
 * The cluster as one node sees it. `stats` holds each member's /v1/stats, or why it could not be
 * had. A member is suspect once its phi passes half the threshold, down past the threshold.
 */
export function clusterStatus(view: ClusterView, live: Liveness, stats: ReadonlyMap<string, NodeStats | string>): ClusterResponse {
  const ring = view.current
  const { partitions, n } = ring
  const held = new Map<string, number>()
  const owners: string[] = []
  const moves: PendingMove[] = []
  for (let p = 0; p < partitions; p++) {
    const { current, next } = view.replicas(p)
    owners.push(current[0]?.id ?? '')
    for (const m of current) held.set(m.id, (held.get(m.id) ?? 0) + 1)
    const to = next.map((m) => m.id)
    // A partition that only loses a replica moves nothing: none of its data needs handing off.
    if (view.transition && to.some((id) => !current.some((m) => m.id === id))) {
      moves.push({ partition: p, from: current.map((m) => m.id), to })
    }
  }
  const slots = partitions * Math.min(n, ring.members.length)
  const members: ClusterMember[] = [...view.members.values()]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((m) => {
      const phi = live.phi(m.id)
      const health = m.id === live.self ? 'self' : !live.isUp(m.id) ? 'down' : phi >= live.phiThreshold / 2 ? 'suspect' : 'up'
      const out: ClusterMember = { id: m.id, url: m.url, zone: m.zone, weight: m.weight, status: statusOf(m), health, share: slots > 0 ? (held.get(m.id) ?? 0) / slots : 0 }
      const s = stats.get(m.id)
      if (typeof s === 'string') out.error = s
      else if (s) out.stats = s
      return out
    })
  const shares = [...held.values()]
  const mean = shares.length > 0 ? shares.reduce((a, b) => a + b, 0) / shares.length : 0
  // Gained partitions come from the rings; how many are pulled from each member's own figures, or
  // all of them once its entry says it is ready for the next ring.
  const gainedBy = new Map<string, number>()
  for (const move of moves) for (const id of move.to) if (!move.from.includes(id)) gainedBy.set(id, (gainedBy.get(id) ?? 0) + 1)
  let gained = 0
  let pulled = 0
  for (const [id, g] of gainedBy) {
    gained += g
    const s = stats.get(id)
    if (view.members.get(id)?.ready === view.next.epoch) pulled += g
    else if (typeof s === 'object' && s.handoff.active) pulled += Math.min(g, s.handoff.pulled)
  }
  return {
    node: live.self,
    epoch: view.epoch,
    n,
    partitions,
    transition: view.transition,
    members,
    owners,
    balance: mean > 0 ? Math.max(...shares) / mean : 1,
    moves,
    handoff: { gained, pulled },
  }
}
