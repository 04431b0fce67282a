// Partition handoff. While the `current` and `next` rings differ, every member of `next` pulls each
// partition it gains from the live replicas of that partition in `current` (pages in key order, at a
// bounded rate, DVV sync on arrival, resumable after a restart), then announces that it is ready for
// `next`. Once every member of `next` is ready the transition is over everywhere at once; joiners and
// leavers then rewrite their own status, and old replicas drop partitions they no longer hold after a
// grace period, by which time the new owners have confirmed (they are ready).
import { InvalidArgumentError, pack, sleep, unpack, type Clock, type ClusterView, type MemberState } from '@zerohop/core'
import { ReplicaClient } from '@zerohop/client'
import type { Logger } from 'pino'
import type { Gossip } from './gossip.js'
import { partitionRange, type Replica } from './replica.js'
import type { Store } from './storage/store.js'

export interface HandoffOptions {
  gossip: Gossip
  replica: Replica
  store: Store
  /** How pages are pulled from other nodes. */
  replicaClient: ReplicaClient
  clock: Clock
  log: Logger
  /** Most bytes per second pulled from other nodes. */
  rateBytesPerSec: number
  /** Items per page. */
  pageItems: number
  /** How long a partition this node no longer replicates is kept after a transition ends. */
  dropDelayMs: number
  /** Called when this node has left the cluster (its leave is complete). */
  onLeft: () => void
}

const PROGRESS_KEY = Buffer.from('mhandoff')

interface Progress {
  /** Epochs of the `current` and `next` rings the pulls were made for (a pull is good for that pair only). */
  current: string
  done: number[]
  /** Resume points: `${partition}/${source}` → last key stored. */
  cursors: Record<string, Uint8Array>
}

/** Two views name the same rings (entries may differ in versions, heartbeats or ready flags). */
function sameRings(a: ClusterView, b: ClusterView): boolean {
  return a.current.epoch === b.current.epoch && a.next.epoch === b.next.epoch
}

export class Handoff {
  readonly #o: HandoffOptions
  #running?: Promise<void>
  #again = false
  #stopped = false
  #wake?: () => void
  #dropTimer?: ReturnType<Clock['setTimeout']>
  #dropFor?: string
  /** The current ring whose handed-off partitions this node has dropped. */
  #droppedFor?: string
  #dropping?: Promise<void>
  /** Bytes and items pulled since start (metrics). */
  readonly stats = { items: 0, bytes: 0, partitions: 0, dropped: 0 }
  /** The transition in progress: partitions this node gains in it and how many it has pulled (status, dashboard). */
  progress = { active: false, gained: 0, pulled: 0 }

  constructor(o: HandoffOptions) {
    if (!(o.replicaClient instanceof ReplicaClient)) throw new InvalidArgumentError('handoff option replicaClient must be a ReplicaClient (new ReplicaClient(transport))')
    this.#o = o
  }

  /** The view changed: (re)run the handoff loop. */
  kick(): void {
    if (this.#stopped) return
    this.#again = true
    this.#wake?.()
    this.#running ??= this.#loop().finally(() => {
      this.#running = undefined
      if (this.#again && !this.#stopped) this.kick()
    })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    this.#wake?.()
    if (this.#dropTimer) this.#o.clock.clearTimeout(this.#dropTimer)
    await this.#running
    await this.#dropping
  }

  async #loop(): Promise<void> {
    while (this.#again && !this.#stopped) {
      this.#again = false
      try {
        const view = this.#o.gossip.view
        if (view.transition) {
          await this.#transfer(view)
          this.#complete(this.#o.gossip.view)
        } else this.#settle(view)
      } catch (err) {
        this.#o.log.warn({ err }, 'handoff round failed; retrying')
        this.#again = true
        await this.#pause(1000)
      }
    }
  }

  async #pause(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const t = this.#o.clock.setTimeout(resolve, ms)
      this.#wake = () => {
        this.#o.clock.clearTimeout(t)
        resolve()
      }
    })
    this.#wake = undefined
  }

  /** Partitions this node holds in `next` but not in `current`. */
  gained(view: ClusterView): number[] {
    const me = this.#o.gossip.self.id
    const out: number[] = []
    for (let p = 0; p < view.current.partitions; p++) {
      const { current, next } = view.replicas(p)
      if (next.some((m) => m.id === me) && !current.some((m) => m.id === me)) out.push(p)
    }
    return out
  }

  async #transfer(view: ClusterView): Promise<void> {
    const { gossip, log } = this.#o
    const self = gossip.self
    if (self.status !== 'joining' && self.status !== 'normal') return
    if (self.ready === view.next.epoch) {
      const n = this.gained(view).length
      this.progress = { active: true, gained: n, pulled: n }
      return
    }
    const progress = await this.#progress(`${view.current.epoch}/${view.next.epoch}`)
    const done = new Set(progress.done)
    const gained = this.gained(view)
    const todo = gained.filter((p) => !done.has(p))
    this.progress = { active: true, gained: gained.length, pulled: gained.length - todo.length }
    if (todo.length > 0) log.info({ partitions: todo.length, next: view.next.epoch }, 'pulling gained partitions')
    for (const p of todo) {
      if (this.#stopped || !sameRings(gossip.view, view)) {
        this.#again = true
        return
      }
      // Every current replica, not only those believed up: a write acknowledged by one that is down
      // (W=1, or two suspected) must not be lost. A removed member is dead for good: it is skipped.
      const sources = view.replicas(p).current.filter((m) => m.id !== self.id && !view.members.get(m.id)?.removed)
      for (const source of sources) {
        // The source hears of the transition before serving, so it refuses writes made with other rings.
        if (!(await gossip.exchange(source.url))) {
          log.warn({ partition: p, source: source.id }, 'a replica to pull a gained partition from does not answer; waiting (remove it if it is dead)')
          this.#again = true
          await this.#pause(1000)
          return
        }
        await this.#pull(p, source.id, source.url, progress)
      }
      progress.done.push(p)
      for (const k of Object.keys(progress.cursors)) if (k.startsWith(`${p}/`)) delete progress.cursors[k]
      await this.#save(progress)
      this.stats.partitions++
      this.progress.pulled++
    }
    if (!sameRings(gossip.view, view)) {
      this.#again = true
      return
    }
    log.info({ next: view.next.epoch }, 'ready for the next ring')
    gossip.updateSelf({ ready: view.next.epoch })
  }

  async #pull(partition: number, sourceId: string, url: string, progress: Progress): Promise<void> {
    const cursorKey = `${partition}/${sourceId}`
    for (;;) {
      if (this.#stopped) throw new Error('stopping')
      const after = progress.cursors[cursorKey]
      let bytes = 0
      const page = await this.#o.replicaClient.range(url, { partition, ...(after ? { after } : {}), limit: this.#o.pageItems }, { timeoutMs: 10_000, onReply: (r) => (bytes = r.body.length) })
      for (const [key, set] of page.items) await this.#o.replica.store(partition, key, set)
      this.stats.items += page.items.length
      this.stats.bytes += bytes
      if (page.items.length > 0) progress.cursors[cursorKey] = page.items[page.items.length - 1][0]
      await this.#save(progress)
      // Rate limit: a page of B bytes is followed by B / rate seconds of quiet, the last page of a
      // partition too. (It was not: a partition that fits in one page, which at 500 items a page is
      // most of them, was never limited, and a join pulled 1 MB in 0.7 s at 16 KB/s.)
      await sleep(this.#o.clock, (bytes / this.#o.rateBytesPerSec) * 1000)
      if (!page.more) return
    }
  }

  async #progress(current: string): Promise<Progress> {
    const raw = await this.#o.store.get(PROGRESS_KEY)
    const p = raw ? (unpack(raw) as Progress) : undefined
    if (p && p.current === current) return p
    return { current, done: [], cursors: {} }
  }

  async #save(p: Progress): Promise<void> {
    await this.#o.store.put(PROGRESS_KEY, pack(p))
  }

  /**
   * Every member of `next` holds its share: the change completes as each joiner and leaver rewrites
   * its own status (and any node does it for a removed member). A completion is written down, so
   * nothing learnt later can undo it.
   */
  #complete(view: ClusterView): void {
    if (!view.transition || !view.nextReady) return
    const { gossip, log } = this.#o
    const self = gossip.self
    if (self.status === 'joining') {
      log.info('join complete: now a normal member')
      gossip.updateSelf({ status: 'normal' })
    } else if (self.status === 'leaving') {
      log.info('leave complete: every partition of this node has a new home')
      gossip.updateSelf({ status: 'left' })
      this.#o.onLeft()
      return
    }
    // Every node writes the same entry for a removed member, so concurrent writers agree.
    for (const m of gossip.states.values()) {
      if (m.removed && m.status === 'leaving') gossip.put({ ...m, status: 'left', version: m.version + 1 } satisfies MemberState)
    }
  }

  /** No change in progress: later, drop partitions this node no longer holds. */
  #settle(view: ClusterView): void {
    this.progress = { active: false, gained: 0, pulled: 0 }
    // Armed once per ring: views that differ only in versions or heartbeats do not postpone it.
    if (this.#droppedFor === view.current.epoch) return
    if (this.#dropTimer && this.#dropFor === view.current.epoch) return
    if (this.#dropTimer) this.#o.clock.clearTimeout(this.#dropTimer)
    this.#dropFor = view.current.epoch
    this.#dropTimer = this.#o.clock.setTimeout(() => {
      this.#dropTimer = undefined
      this.#dropping = this.#drop(view).catch((err) => this.#o.log.warn({ err }, 'dropping handed-off partitions failed'))
    }, this.#o.dropDelayMs)
  }

  /** Delete the data of partitions this node does not replicate in `view` (still the view, and settled). */
  async #drop(view: ClusterView): Promise<void> {
    const { gossip, store, replica, log } = this.#o
    if (!sameRings(gossip.view, view) || gossip.view.transition || this.#stopped) return
    const me = gossip.self.id
    let deleted = 0
    for (let p = 0; p < view.current.partitions; p++) {
      if (view.replicates(me, p)) continue
      let first = true
      for await (const [k] of store.entries(partitionRange(p))) {
        if (!sameRings(gossip.view, view) || this.#stopped) return
        // This node's actors may not reuse their counters for keys of this partition again.
        if (first) await replica.actors.retire([p])
        first = false
        await replica.drop(p, k.subarray(3))
        deleted++
      }
    }
    this.stats.dropped += deleted
    if (deleted > 0) log.info({ keys: deleted }, 'dropped data of partitions handed off to other nodes')
    this.#droppedFor = view.current.epoch
    if (gossip.self.dropped !== view.current.epoch) gossip.updateSelf({ dropped: view.current.epoch })
  }
}
