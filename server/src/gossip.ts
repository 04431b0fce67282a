// Gossip membership and failure detection. Each round this node bumps its heartbeat and does a
// push-pull of the whole member map with one random peer it believes alive, and now and then with a
// seed, so clusters started apart cannot stay apart. A phi accrual detector per peer, fed by that
// peer's heartbeat counter rising (directly or through others), gives the local up/down view. The
// view only steers routing: it never changes who owns a partition.
import {
  ClusterView,
  ErrorCodes,
  HttpError,
  InvalidArgumentError,
  PhiAccrualDetector,
  MAX_MEMBERS,
  mergeMembers,
  memberChanged,
  nextEventTime,
  parseGossipMessage,
  type Clock,
  type ClockTimer,
  type GossipMessage,
  type MemberState,
  type RingParams,
} from '@zerohop/core'
import { ReplicaClient } from '@zerohop/client'
import type { Logger } from 'pino'

export type { GossipMessage }

export interface GossipOptions {
  self: MemberState
  /** Entries known from an earlier run. */
  known: MemberState[]
  seeds: string[]
  intervalMs: number
  seedProbability: number
  phiThreshold: number
  params: Required<RingParams>
  clock: Clock
  random: () => number
  log: Logger
  /** How exchanges reach peers. */
  replicaClient: ReplicaClient
  /** Called after every change of an entry other than a heartbeat (persist, recompute). */
  onChange: (view: ClusterView) => void
}

export class Gossip {
  readonly states = new Map<string, MemberState>()
  readonly #o: GossipOptions
  readonly #detectors = new Map<string, PhiAccrualDetector>()
  readonly #down = new Set<string>()
  readonly #selfId: string
  #view: ClusterView
  #timer?: ClockTimer
  #stopped = false
  /** Seeds (by URL) that have answered at least once. */
  readonly heardFrom = new Set<string>()

  constructor(o: GossipOptions) {
    if (!(o.replicaClient instanceof ReplicaClient)) throw new InvalidArgumentError('gossip option replicaClient must be a ReplicaClient (new ReplicaClient(transport))')
    this.#o = o
    this.#selfId = o.self.id
    mergeMembers(this.states, o.known)
    this.states.set(o.self.id, { ...o.self })
    this.#view = new ClusterView(this.states.values(), o.params)
  }

  get view(): ClusterView {
    return this.#view
  }

  get self(): MemberState {
    return this.states.get(this.#selfId)!
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return
      void this.round().finally(() => {
        if (!this.#stopped) this.#timer = this.#o.clock.setTimeout(tick, this.#o.intervalMs)
      })
    }
    tick()
  }

  stop(): void {
    this.#stopped = true
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer)
  }

  /** Change this node's own entry (status, ready, ...): a new version that gossip spreads. */
  updateSelf(patch: Partial<Omit<MemberState, 'id' | 'version' | 'heartbeat'>>): MemberState {
    const next = { ...this.self, ...patch, version: this.self.version + 1 }
    this.states.set(this.#selfId, next)
    this.#changed()
    return next
  }

  /** Put an entry written on another node's behalf (an operator's removal). */
  put(entry: MemberState): void {
    if (mergeMembers(this.states, [entry]).length > 0) this.#changed()
  }

  /** The time to stamp a join or leave with (after every recorded event). */
  nextEventTime(): number {
    return nextEventTime(this.states.values(), this.#o.clock.now())
  }

  /** Whether this node believes the member is alive. */
  isUp(id: string): boolean {
    if (id === this.#selfId) return true
    return !this.#down.has(id)
  }

  /** Ids of live members (not left) this node believes down. */
  down(): string[] {
    return [...this.#down]
  }

  phi(id: string): number {
    return this.#detectors.get(id)?.phi(this.#o.clock.now()) ?? 0
  }

  message(): GossipMessage {
    return { partitions: this.#o.params.partitions, n: this.#o.params.n, members: [...this.states.values()] }
  }

  /**
   * Merge what a peer sent, answer with everything this node knows. The message is rebuilt field by
   * field first (parseGossipMessage): a bad one is refused whole and changes nothing.
   */
  receive(body: unknown): GossipMessage {
    const m = parseGossipMessage(body)
    if (typeof m === 'string') throw new HttpError(400, ErrorCodes.BAD_BODY, m)
    if (m.partitions !== this.#o.params.partitions || m.n !== this.#o.params.n) {
      throw new HttpError(409, ErrorCodes.CLUSTER_MISMATCH, `the sender runs with n=${m.n} partitions=${m.partitions}, this node with n=${this.#o.params.n} partitions=${this.#o.params.partitions}; every node of a cluster needs the same --n and --partitions`)
    }
    const over = this.#overCap(m.members)
    if (over) throw new HttpError(400, ErrorCodes.BAD_BODY, over)
    this.#merge(m.members)
    return this.message()
  }

  /** One push-pull with the node at `url`; true if it answered. */
  async exchange(url: string, timeoutMs = Math.max(500, this.#o.intervalMs)): Promise<boolean> {
    try {
      // The answer is rebuilt and checked like a request (ReplicaClient's gossip frame).
      const m = await this.#o.replicaClient.gossip(url, this.message(), { timeoutMs })
      const over = this.#overCap(m.members)
      if (over) {
        this.#o.log.warn({ peer: url }, `ignored the peer's gossip answer: ${over}`)
        return false
      }
      this.#merge(m.members)
      this.heardFrom.add(url)
      return true
    } catch (err) {
      if (err instanceof HttpError && err.status === 409) this.#o.log.error({ peer: url, err }, 'peer refused our gossip')
      return false
    }
  }

  /** One gossip round: heartbeat, detector sweep, one exchange (two if a seed is picked too). */
  async round(): Promise<void> {
    const self = this.self
    this.states.set(this.#selfId, { ...self, heartbeat: self.heartbeat + 1 })
    this.#sweep()
    const peers = [...this.states.values()].filter((s) => s.id !== this.#selfId && s.status !== 'left' && this.isUp(s.id))
    const targets = new Set<string>()
    if (peers.length > 0) targets.add(peers[Math.floor(this.#o.random() * peers.length)].url)
    const seeds = this.#o.seeds.filter((s) => s !== self.url)
    if (seeds.length > 0 && (targets.size === 0 || this.#o.random() < this.#o.seedProbability)) {
      targets.add(seeds[Math.floor(this.#o.random() * seeds.length)])
    }
    // A peer believed down is tried now and then, so one that comes back is seen without waiting for it.
    const downPeers = [...this.states.values()].filter((s) => s.id !== this.#selfId && s.status !== 'left' && !this.isUp(s.id))
    if (downPeers.length > 0 && this.#o.random() < 0.2) targets.add(downPeers[Math.floor(this.#o.random() * downPeers.length)].url)
    await Promise.all([...targets].map((u) => this.exchange(u)))
  }

  /** Why merging these entries would make this node know too many members, or undefined. */
  #overCap(remote: MemberState[]): string | undefined {
    let added = 0
    for (const e of remote) if (!this.states.has(e.id)) added++
    const total = this.states.size + added
    return total > MAX_MEMBERS ? `members: this node would know ${total} members; at most ${MAX_MEMBERS}` : undefined
  }

  #merge(remote: MemberState[]): void {
    const before = new Map<string, MemberState | undefined>()
    for (const r of remote) before.set(r.id, this.states.get(r.id))
    const own = this.self
    const changed = mergeMembers(this.states, remote)
    let ringChanged = false
    const theirs = this.states.get(this.#selfId)!
    if (theirs !== own && !theirs.removed) {
      // Peers remember a newer entry of ours than we have (our disk was lost or replaced). Nobody else
      // speaks for this node except to say it was removed: take a version above theirs. Where this node stands in the ring's history (status, join/leave times, weight) is the
      // cluster's to keep: only the address and incarnation are ours.
      this.states.set(this.#selfId, { ...theirs, url: own.url, incarnation: own.incarnation, version: theirs.version + 1, heartbeat: Math.max(own.heartbeat, theirs.heartbeat) + 1 })
      ringChanged = true
    }
    const now = this.#o.clock.now()
    for (const c of changed) {
      const prev = before.get(c.id)
      if (c.id !== this.#selfId && (!prev || c.heartbeat > prev.heartbeat || c.incarnation !== prev.incarnation)) this.#detector(c.id).heartbeat(now)
      if (memberChanged(prev, c)) ringChanged = true
    }
    if (ringChanged) this.#changed()
  }

  #detector(id: string): PhiAccrualDetector {
    let d = this.#detectors.get(id)
    if (!d) {
      d = new PhiAccrualDetector({ threshold: this.#o.phiThreshold, firstIntervalMs: this.#o.intervalMs, minStdDevMs: Math.max(100, this.#o.intervalMs / 4), acceptablePauseMs: this.#o.intervalMs })
      // A peer known but never heard from starts its silence now, so one that is dead from the start is found too.
      d.heartbeat(this.#o.clock.now())
      this.#detectors.set(id, d)
    }
    return d
  }

  #sweep(): void {
    const now = this.#o.clock.now()
    for (const s of this.states.values()) {
      if (s.id === this.#selfId) continue
      if (s.status === 'left') {
        this.#down.delete(s.id)
        this.#detectors.delete(s.id)
        continue
      }
      const available = this.#detector(s.id).isAvailable(now)
      if (!available && !this.#down.has(s.id)) {
        this.#down.add(s.id)
        this.#o.log.warn({ peer: s.id, url: s.url, phi: Number(this.phi(s.id).toFixed(1)) }, 'peer is down')
      } else if (available && this.#down.has(s.id)) {
        this.#down.delete(s.id)
        this.#o.log.info({ peer: s.id, url: s.url }, 'peer is up')
      }
    }
  }

  #changed(): void {
    this.#view = new ClusterView(this.states.values(), this.#o.params)
    this.#o.onChange(this.#view)
  }
}
