// What the coordinator engine needs to know of the cluster (Membership), and the SDK's implementation
// of it (RingWatch): a copy of the member entries (so of the current and next rings),
// refreshed when a node answers with a newer epoch (debounced) and periodically; and a liveness view
// that combines the SDK's own failures (consecutive timeouts or refused connections put a node in
// back-off) with what the nodes' failure detectors say, so requests skip dead nodes without waiting
// for a timeout each time.
import diagnostics from 'node:diagnostics_channel'
import { EventEmitter } from 'node:events'
import {
  ClusterView,
  NoSeedReachableError,
  ForbiddenError,
  TransportError,
  UnauthenticatedError,
  mergeMembers,
  memberChanged,
  pack,
  type MemberState,
  type RingParams,
  Paths,
  sleep,
  type Clock,
  type ClockTimer,
  type Random,
  type Limits,
  type Member,
  type ReplicaFailure,
  type RingResponse,
} from '@zerohop/core'
import { gossipAnswer, ringAnswer } from './replica-client.js'
import type { Transport } from './transport.js'
import { systemRandom } from './clock.js'
import { replyError } from './replica-client.js'

export const membershipChannels = {
  ring: diagnostics.channel('zerohop:client:ring'),
  nodeUp: diagnostics.channel('zerohop:client:node-up'),
  nodeDown: diagnostics.channel('zerohop:client:node-down'),
}

export interface NodeEvent {
  id: string
  url: string
  /** Why the SDK changed its mind: its own requests, or the cluster's failure detectors. */
  reason: string
}

export interface MembershipEvents {
  ring: [view: ClusterView]
  'node-up': [node: NodeEvent]
  'node-down': [node: NodeEvent]
}

/**
 * The cluster as a coordinator sees it. The SDK implements it over a watch of a node's ring
 * (RingWatch); a node implements it over its gossip view and failure detector.
 */
export interface Membership {
  /** The member entries, and so the current and next rings. */
  readonly view: ClusterView
  /** The cluster's key, value and body size limits. */
  readonly limits: Limits
  /** Whether requests should go to this node now. */
  up(id: string): boolean
  /** A request to `member` succeeded. */
  ok(member: Member): void
  /** A request to `member` failed. */
  failed(member: Member, failure: ReplicaFailure): void
  /** A node answered with ring `epoch`. */
  observe(epoch: string | undefined, url: string): void
  /** Bring this view in line with the node at `url` (which refused our ring), or with any live node. */
  refresh(url?: string): Promise<void>
}

export interface MembershipOptions {
  refreshIntervalMs: number
  /** Shortest gap between two refreshes triggered by epochs in responses. */
  refreshDebounceMs: number
  /** Back-off after a node fails at the network level: doubles per consecutive failure, up to 8x. */
  backoffMs: number
  /**
   * Reach the cluster only through these URLs (load-balancer routing): ring refreshes and the watch
   * go there, never to the members' own URLs, which the client may not be able to reach.
   */
  via?: string[]
  /** Picks the node a refresh asks (default systemRandom). */
  random?: Random
}

interface Backoff {
  failures: number
  until: number
  /** When the node last answered. */
  lastOk: number
}

/** Pause between two rounds of asking the seeds for a ring, or the members whether they serve. */
const CONNECT_POLL_MS = 100

/** The `status` of a health answer (`ok`, `starting`, `stopping`), if it has one. */
function healthStatus(body: Buffer): string | undefined {
  try {
    return (JSON.parse(body.toString('utf8')) as { status?: string } | null)?.status
  } catch {
    return undefined
  }
}

function parseRing(body: Buffer): RingResponse {
  const d = ringAnswer(body)
  if (typeof d === 'string') throw new TypeError(`malformed ring response: the node ${d}`)
  return d
}

export class RingWatch extends EventEmitter<MembershipEvents> implements Membership {
  view: ClusterView
  limits: Limits
  readonly #transport: Transport
  readonly #clock: Clock
  readonly #o: MembershipOptions
  readonly #random: Random
  readonly #backoff = new Map<string, Backoff>()
  /** Member entries merged from every node heard: knowledge only grows, so the view never goes back. */
  readonly #states = new Map<string, MemberState>()
  readonly #params: RingParams
  #clusterDown = new Set<string>()
  #clusterDownAt = 0
  /** Last up/down reported per node, to emit changes once. */
  readonly #reported = new Map<string, boolean>()
  /** Refreshes in flight, by the node asked ('' for any live one). */
  readonly #refreshing = new Map<string, Promise<void>>()
  #lastRefresh = 0
  #timer?: ClockTimer
  #closed = false
  /** The cluster refused our gossip (a cluster secret: only nodes gossip): exchanges go one way, reads of the ring. */
  #gossipRefused = false
  readonly #abort = new AbortController()

  private constructor(transport: Transport, clock: Clock, o: MembershipOptions, ring: RingResponse) {
    super()
    this.#transport = transport
    this.#clock = clock
    this.#o = o
    this.#random = o.random ?? systemRandom
    this.limits = ring.limits
    this.#params = { partitions: ring.partitions, n: ring.n, spares: ring.spares }
    mergeMembers(this.#states, ring.members)
    this.view = new ClusterView(this.#states.values(), this.#params)
    this.#clusterDown = new Set(ring.down)
    this.#lastRefresh = clock.now()
    for (const m of this.#live()) this.#reported.set(m.id, this.up(m.id))
    this.#schedule()
    void this.#watch()
  }

  /** A view from a ring response already in hand (tests and simulations). */
  static from(transport: Transport, clock: Clock, ring: RingResponse, o: MembershipOptions): RingWatch {
    return new RingWatch(transport, clock, o, ring)
  }

  /**
   * Ask the seeds in turn until one answers with its ring (a node answers only once it serves); dead
   * seeds are skipped.
   */
  static async connect(transport: Transport, seeds: string[], clock: Clock, deadline: number, o: MembershipOptions): Promise<RingWatch> {
    const errors = new Map<string, string>()
    for (;;) {
      for (const url of seeds) {
        try {
          const reply = await transport.get(url, Paths.ring, { timeoutMs: Math.max(1, Math.min(2000, deadline - clock.now())) })
          if (reply.status === 200) return new RingWatch(transport, clock, o, parseRing(reply.body))
          // The credentials are wrong for the cluster: asking again, or another seed, cannot help.
          if (reply.status === 401 || reply.status === 403) throw credentialError(url, reply)
          errors.set(url, `HTTP ${reply.status}`)
        } catch (err) {
          if (err instanceof UnauthenticatedError || err instanceof ForbiddenError) throw err
          // A time-out says less than what an earlier attempt learned (a certificate not accepted, a
          // refusal): the last attempt may have had only what was left of the deadline.
          const timedOut = err instanceof TransportError && err.kind === 'timeout'
          if (!timedOut || !errors.has(url)) errors.set(url, (err as Error)?.message ?? String(err))
        }
      }
      if (clock.now() >= deadline) throw new NoSeedReachableError(seeds.map((url) => ({ url, message: errors.get(url) ?? 'no answer' })))
      await sleep(clock, CONNECT_POLL_MS)
    }
  }

  /**
   * Wait until `deadline` for members that are still starting (GET /v1/health answers 503 with
   * status `starting`), so that the first writes do not meet them: resolves as soon as every
   * partition has `w` of its replicas serving (all of them when it has fewer), or no member is
   * starting any more (the rest refuse, time out or are stopping: they are down, and waiting would not
   * bring them back), or at the deadline. Resolves in every case: calls wait for a starting replica
   * themselves, within their own deadline.
   */
  async serving(w: number, deadline: number): Promise<void> {
    const serving = new Set<string>()
    while (!this.#closed) {
      const left = deadline - this.#clock.now()
      const members = this.#live().filter((m) => !serving.has(m.id))
      const starting = new Set<string>()
      await Promise.all(members.map(async (m) => {
        try {
          const reply = await this.#transport.get(m.url, Paths.health, { timeoutMs: Math.max(1, Math.min(1000, left)) })
          if (reply.status === 200) serving.add(m.id)
          else if (reply.status === 503 && healthStatus(reply.body) !== 'stopping') starting.add(m.id)
        } catch {
          // down: not waited for
        }
      }))
      if (starting.size === 0 || this.#quorate(w, serving) || this.#clock.now() >= deadline) return
      await sleep(this.#clock, Math.min(CONNECT_POLL_MS, deadline - this.#clock.now()), this.#abort.signal)
    }
  }

  /** Every partition has `w` replicas among `serving` (all of its replicas when it has fewer), in both rings during a change. */
  #quorate(w: number, serving: ReadonlySet<string>): boolean {
    for (let p = 0; p < this.#params.partitions; p++) {
      const { current, next } = this.view.replicas(p)
      for (const list of current === next ? [current] : [current, next]) {
        if (list.filter((m) => serving.has(m.id)).length < Math.min(w, list.length)) return false
      }
    }
    return true
  }

  /** Members that hold or will hold data (not left). */
  #live(): Member[] {
    const out: Member[] = []
    for (const m of this.view.members.values()) if (m.status !== 'left') out.push({ id: m.id, url: m.url, weight: m.weight })
    return out
  }

  /** Whether requests should go to this node: not in back-off, and not held down by the cluster unless it answered us since. */
  up(id: string): boolean {
    const b = this.#backoff.get(id)
    if (b === undefined) return !this.#clusterDown.has(id)
    if (b.failures > 0 && b.until > this.#clock.now()) return false
    return !this.#clusterDown.has(id) || b.lastOk >= this.#clusterDownAt
  }

  failed(member: Member, f: ReplicaFailure): void {
    if (!(f.cause === 'refused' || f.cause === 'network' || f.cause === 'timeout' || (f.cause === 'http' && f.status === 503))) return
    const b = this.#backoff.get(member.id) ?? { failures: 0, until: 0, lastOk: 0 }
    b.failures++
    b.until = this.#clock.now() + this.#o.backoffMs * 2 ** Math.min(b.failures - 1, 3)
    this.#backoff.set(member.id, b)
    this.#report(member.id, member.url, 'requests failed')
  }

  /** On the hot path: a node that has never failed and is not held down costs one map lookup. */
  ok(member: Member): void {
    const b = this.#backoff.get(member.id)
    if (b === undefined) {
      if (!this.#clusterDown.has(member.id)) return
      this.#backoff.set(member.id, { failures: 0, until: 0, lastOk: this.#clock.now() })
    } else {
      const wasFailing = b.failures > 0
      b.failures = 0
      b.until = 0
      b.lastOk = this.#clock.now()
      if (!wasFailing && !this.#clusterDown.has(member.id)) return
    }
    this.#report(member.id, member.url, 'answered')
  }

  /** A node answered with `epoch`: refresh from it if it names other rings than ours. */
  observe(epoch: string | undefined, url: string): void {
    if (epoch === undefined || epoch === this.view.epoch) return
    if (!this.view.differs(epoch)) return
    if (this.#clock.now() - this.#lastRefresh < this.#o.refreshDebounceMs) return
    void this.#fetch(url)
  }

  /** Fetch the ring from `url` (or a live member); one refresh per node at a time. */
  #fetch(url?: string): Promise<void> {
    const key = url ?? ''
    let p = this.#refreshing.get(key)
    if (!p) {
      p = this.#refresh(url).finally(() => this.#refreshing.delete(key))
      this.#refreshing.set(key, p)
    }
    return p
  }

  /**
   * Without `url`, re-read the ring from a live node. With it (a node that refused our ring): exchange
   * member entries with it both ways (read its ring, then gossip ours to it), after which the two agree
   * unless something changed meanwhile. Which side was behind does not matter. A cluster with a secret
   * takes gossip from its nodes only: after its first refusal, only the ring is read.
   */
  async refresh(url?: string): Promise<void> {
    await this.#fetch(url)
    if (url === undefined || this.#o.via || this.#gossipRefused) return
    try {
      const body = pack({ partitions: this.#params.partitions, n: this.#params.n, members: [...this.#states.values()] })
      const reply = await this.#transport.post(url, Paths.gossip, body, { timeoutMs: 2000 })
      if (reply.status === 401 || reply.status === 403) this.#gossipRefused = true
      if (reply.status !== 200) return
      const m = gossipAnswer(reply.body)
      if (typeof m !== 'string') this.#merge(m.members)
    } catch {
      // the retry that follows reports the node's failure
    }
  }

  async #refresh(url?: string): Promise<void> {
    const live = this.#live().filter((m) => this.up(m.id))
    const via = this.#o.via
    const candidates = url ? [url] : via ? via : live.length > 0 ? [live[Math.floor(this.#random.next() * live.length)].url] : this.#live().map((m) => m.url)
    for (const u of candidates) {
      if (this.#closed) return
      try {
        const reply = await this.#transport.get(u, Paths.ring, { timeoutMs: 2000 })
        if (reply.status !== 200) continue
        this.#apply(parseRing(reply.body))
        return
      } catch {
        // try the next one; the periodic refresh comes back later
      }
    }
  }

  #apply(ring: RingResponse): void {
    this.#lastRefresh = this.#clock.now()
    this.limits = ring.limits
    this.#clusterDown = new Set(ring.down)
    this.#clusterDownAt = this.#clock.now()
    this.#merge(ring.members)
    for (const m of this.#live()) this.#report(m.id, m.url, 'cluster view')
  }

  #merge(members: MemberState[]): void {
    const before = new Map(this.#states)
    if (!mergeMembers(this.#states, members).some((m) => memberChanged(before.get(m.id), m))) return
    const epoch = this.view.epoch
    this.view = new ClusterView(this.#states.values(), this.#params)
    if (this.view.epoch === epoch) return
    this.emit('ring', this.view)
    if (membershipChannels.ring.hasSubscribers) membershipChannels.ring.publish({ epoch: this.view.epoch, transition: this.view.transition })
  }

  #report(id: string, url: string, reason: string): void {
    const up = this.up(id)
    if (this.#reported.get(id) === up) return
    const first = !this.#reported.has(id)
    this.#reported.set(id, up)
    if (first && up) return
    const event: NodeEvent = { id, url, reason }
    if (up) {
      this.emit('node-up', event)
      if (membershipChannels.nodeUp.hasSubscribers) membershipChannels.nodeUp.publish(event)
    } else {
      this.emit('node-down', event)
      if (membershipChannels.nodeDown.hasSubscribers) membershipChannels.nodeDown.publish(event)
    }
  }

  /**
   * Hold a `GET /v1/ring?wait=EPOCH` open on one live node: it answers as soon as its epoch differs,
   * so even an idle client follows a join or leave within a gossip round or two.
   */
  async #watch(): Promise<void> {
    // Wait on the epoch the watched node last reported: when this client knows more than that node,
    // waiting on our own epoch would be answered at once, again and again.
    let url: string | undefined
    let theirs = this.view.epoch
    while (!this.#closed) {
      if (url === undefined) {
        const live = this.#live().filter((m) => this.up(m.id))
        const pool = this.#o.via?.map((u) => ({ url: u })) ?? (live.length > 0 ? live : this.#live())
        if (pool.length === 0) {
          await sleep(this.#clock, this.#o.backoffMs, this.#abort.signal)
          continue
        }
        url = pool[Math.floor(this.#random.next() * pool.length)].url
        theirs = this.view.epoch
      }
      try {
        const reply = await this.#transport.get(url, `${Paths.ring}?wait=${encodeURIComponent(theirs)}`, { timeoutMs: 30_000, signal: this.#abort.signal })
        if (reply.status === 200) {
          const ring = parseRing(reply.body)
          this.#apply(ring)
          // An answer with the same epoch is the node's periodic timeout: wait again.
          theirs = ring.epoch
          continue
        }
      } catch {
        // the node is down or the client closing: try another after a pause
      }
      url = undefined
      await sleep(this.#clock, this.#o.backoffMs, this.#abort.signal)
    }
  }

  #schedule(): void {
    if (this.#closed) return
    this.#timer = this.#clock.setTimeout(() => {
      void this.#fetch().finally(() => this.#schedule())
    }, this.#o.refreshIntervalMs)
    // The periodic refresh must not keep a process alive on its own.
    ;(this.#timer as { unref?: () => void })?.unref?.()
  }

  close(): void {
    this.#closed = true
    this.#abort.abort()
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer)
  }
}

/** A 401 or 403 answer to the ring request of connect(), typed. */
function credentialError(url: string, reply: { status: number; body: Uint8Array }): UnauthenticatedError | ForbiddenError {
  const { message } = replyError(reply)
  return reply.status === 401
    ? new UnauthenticatedError(`${url} refused the credentials: ${message}; pass connect({ token }) with a token from zerohop user add`)
    : new ForbiddenError(`${url}: ${message}`)
}
