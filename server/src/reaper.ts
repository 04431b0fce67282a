// Tombstone reaping. A delete leaves a tombstone (a set whose values are all deletes) so that older
// copies of the key, wherever they still are, lose to it when they meet. It can only go once no older
// copy can meet the replicas again. The first replica of a partition's preference list reaps, when the
// rings are not changing and every replica is up, in two phases:
//   1. check: every replica holds exactly the same tombstone set and has held it for the grace period;
//   2. reap: every replica deletes the key if its set is still that one (a newer write keeps it).
// The grace period covers what could still carry an older copy: hints, which expire sooner
// (--hint-ttl-ms < --tombstone-grace-ms), and read repairs and stores in flight. A replica that misses
// the second phase keeps the tombstone; anti-entropy copies it back to the others, and a later round
// reaps it again. The replicas mint with a new actor epoch after reaping (see Actors in replica.ts), so
// a write to a reaped key cannot alias a dot an unreaped tombstone still holds.
//
// Which tombstones a node holds, and since when, is kept in memory: one scan at start-up (which
// counts from the start, so a restart only postpones reaping), then kept by every write.
import { ErrorCodes, HttpError, InvalidArgumentError, MAX_BATCH, Paths, bytesEqual, decodeSet, onlyTombstones, type Clock, type ClockTimer, type ReapRequest, type ReapResponse } from '@zerohop/core'
import { ReplicaClient } from '@zerohop/client'
import type { Logger } from 'pino'
import type { Replica } from './replica.js'
import type { Store } from './storage/store.js'
import { DataScan } from './scan.js'

/** `{partition, phase: 'check' | 'reap', items: [key, set][]}` → `{ok: boolean[]}` (ReapRequest in core's wire.ts). */
export const ReapPaths = { reap: Paths.reap } as const

export type { ReapRequest, ReapResponse }

/** The shape of a reap request's body (whether its keys belong to `partition` is the ring's to check). */
export function parseReapRequest(body: Record<string, unknown>): ReapRequest {
  const { partition, phase, items } = body as Partial<ReapRequest>
  if (phase !== 'check' && phase !== 'reap') throw new HttpError(400, ErrorCodes.BAD_BODY, 'phase must be "check" or "reap"')
  if (!Array.isArray(items) || items.length === 0 || items.length > MAX_BATCH || !items.every((it) => Array.isArray(it) && it.length === 2 && it[0] instanceof Uint8Array && it[1] instanceof Uint8Array)) {
    throw new HttpError(400, ErrorCodes.BAD_BODY, `items must be 1 to ${MAX_BATCH} [key, set] pairs of bytes`)
  }
  return { partition: partition as number, phase, items }
}

export interface ReapPeer {
  id: string
  url: string
}

export interface ReaperOptions {
  /** Scanned once at start-up for the tombstones already stored. */
  store: Store
  /** That scan, shared with the node's other parts (default: one of its own). */
  scan?: DataScan
  replica: Replica
  clock: Clock
  log: Logger
  /** How long every replica must have held a tombstone before it goes. */
  graceMs: number
  /** Time between two reaping rounds. */
  intervalMs: number
  /**
   * Milliseconds on a clock that never steps (default `clock.now`): how long a tombstone has been held
   * is kept only in memory, so a wall-clock step (NTP, a resumed VM) must not shorten it.
   */
  elapsed?: () => number
  /** Keys per request. */
  batchKeys?: number
  /**
   * The other replicas of `partition` when this node should reap it now (it is the first of the
   * preference list, the rings are not changing, every replica is believed up), with the ring epoch
   * the requests carry; undefined otherwise.
   */
  plan: (partition: number) => { epoch: string; peers: ReapPeer[] } | undefined
  /** How check and reap requests reach the peers (they carry the plan's ring epoch). */
  replicaClient: ReplicaClient
}

const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')

export class Reaper {
  readonly metrics = { reaped: 0, rounds: 0, failures: 0 }
  readonly #o: ReaperOptions
  readonly #scanner: DataScan
  /** Partition → key (latin1) → when this node came to hold its current tombstone set. */
  readonly #held = new Map<number, Map<string, number>>()
  /** Keys written while the start-up scan runs: the scan must not overwrite what they recorded. */
  #touched?: Set<string>
  #timer?: ClockTimer
  #round?: Promise<void>
  #stopped = false

  readonly #now: () => number

  constructor(o: ReaperOptions) {
    if (!(o.replicaClient instanceof ReplicaClient)) throw new InvalidArgumentError('reaper option replicaClient must be a ReplicaClient (new ReplicaClient(transport))')
    if (o.scan !== undefined && (!(o.scan instanceof DataScan) || o.scan.store !== o.store)) throw new InvalidArgumentError('reaper option scan must be a DataScan of the same store (new DataScan(store)), or unset')
    this.#o = o
    this.#scanner = o.scan ?? new DataScan(o.store)
    this.#now = o.elapsed ?? (() => o.clock.now())
  }

  /** The scan at start-up is done: every tombstone stored is held (and counted). */
  scanned = false

  /** Tombstones held. */
  get count(): number {
    let n = 0
    for (const m of this.#held.values()) n += m.size
    return n
  }

  /** The write hook (replica.ts): track which keys hold only tombstones, and since when. */
  onWrite(partition: number, key: Uint8Array, dead: boolean): void {
    // The common case (a live write to a partition with no tombstones) costs one map lookup.
    if (!dead && !this.#touched && !this.#held.has(partition)) return
    const k = latin1(key)
    this.#touched?.add(`${partition}:${k}`)
    let m = this.#held.get(partition)
    if (dead) {
      if (!m) this.#held.set(partition, (m = new Map()))
      m.set(k, this.#now())
    } else if (m?.delete(k) && m.size === 0) this.#held.delete(partition)
  }

  async start(): Promise<void> {
    this.#stopped = false
    await this.#scan()
    this.#schedule()
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer)
    await this.#round
  }

  async #scan(): Promise<void> {
    const touched = (this.#touched = new Set())
    const since = this.#now()
    let n = 0
    try {
      await this.#scanner.visit((partition, k, v) => {
        if (this.#stopped) return
        // A tombstone is MessagePack's nil (0xc0): a set without that byte anywhere holds none, and is
        // not decoded (most live sets, at start-up over every key).
        if (!Buffer.from(v.buffer, v.byteOffset, v.byteLength).includes(0xc0)) return
        const key = latin1(k)
        if (touched.has(`${partition}:${key}`)) return
        let dead
        try {
          dead = onlyTombstones(decodeSet(v))
        } catch {
          return // not a set this node can read: never a reapable tombstone
        }
        if (!dead) return
        let m = this.#held.get(partition)
        if (!m) this.#held.set(partition, (m = new Map()))
        m.set(key, since)
        n++
      })
    } finally {
      this.#touched = undefined
    }
    if (this.#stopped) return
    this.scanned = true
    if (n > 0) this.#o.log.info({ tombstones: n }, 'tombstones found at start-up: reaped once the grace period has passed')
  }

  #schedule(): void {
    if (this.#stopped) return
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#round = this.round().catch((err) => {
        this.metrics.failures++
        this.#o.log.warn({ err }, 'reaping round failed')
      }).finally(() => {
        this.#round = undefined
        this.#schedule()
      })
    }, this.#o.intervalMs)
  }

  /** One reaping round over every partition this node should reap now. */
  async round(): Promise<void> {
    this.metrics.rounds++
    for (const partition of [...this.#held.keys()]) {
      if (this.#stopped) return
      const plan = this.#o.plan(partition)
      if (!plan) continue
      const due = this.#due(partition)
      for (let i = 0; i < due.length && !this.#stopped; i += this.#batch) {
        const keys = due.slice(i, i + this.#batch)
        const sets = await this.#o.replica.snapshot(partition, keys)
        const items: [Uint8Array, Uint8Array][] = []
        keys.forEach((k, j) => {
          const s = sets[j]
          if (s && this.#heldLongEnough(partition, k)) items.push([k, s])
        })
        if (items.length > 0) await this.#reap(partition, plan, items)
      }
    }
  }

  get #batch(): number {
    return Math.min(this.#o.batchKeys ?? 500, MAX_BATCH)
  }

  #due(partition: number): Uint8Array[] {
    const cutoff = this.#now() - this.#o.graceMs
    const out: Uint8Array[] = []
    for (const [k, since] of this.#held.get(partition) ?? []) if (since <= cutoff) out.push(Buffer.from(k, 'latin1'))
    return out
  }

  #heldLongEnough(partition: number, key: Uint8Array): boolean {
    const since = this.#held.get(partition)?.get(latin1(key))
    return since !== undefined && since <= this.#now() - this.#o.graceMs
  }

  async #reap(partition: number, plan: { epoch: string; peers: ReapPeer[] }, items: [Uint8Array, Uint8Array][]): Promise<void> {
    const ask = async (phase: 'check' | 'reap', batch: [Uint8Array, Uint8Array][]): Promise<boolean[][] | undefined> => {
      const answers = await Promise.all(plan.peers.map(async (peer) => {
        try {
          return (await this.#o.replicaClient.reap(peer.url, { partition, phase, items: batch }, { epoch: plan.epoch })).ok
        } catch {
          return undefined
        }
      }))
      return answers.every((a) => a !== undefined) ? (answers as boolean[][]) : undefined
    }
    const checked = await ask('check', items)
    if (!checked) return
    const agreed = items.filter((_, i) => checked.every((ok) => ok[i]))
    if (agreed.length === 0) return
    // Peers first: if this node stopped halfway, its own tombstones would still be there to copy back.
    await ask('reap', agreed)
    const gone = await this.#o.replica.reap(partition, agreed)
    const n = gone.filter(Boolean).length
    this.metrics.reaped += n
    if (n > 0) this.#o.log.debug({ partition, keys: n }, 'reaped tombstones')
  }

  /** Serve a peer's check or reap request (parsed by parseReapRequest; its keys checked against the ring). */
  async handle(req: ReapRequest): Promise<ReapResponse> {
    const { partition, items } = req
    if (req.phase === 'reap') {
      // A replayed or hand-made request cannot reap what this node has not held for the grace period.
      const due = items.map(([k]) => this.#heldLongEnough(partition, k))
      const gone = await this.#o.replica.reap(partition, items.filter((_, i) => due[i]))
      let j = 0
      const ok = due.map((d) => d && gone[j++])
      this.metrics.reaped += ok.filter(Boolean).length
      return { ok }
    }
    const sets = await this.#o.replica.snapshot(partition, items.map(([k]) => k))
    return { ok: items.map(([k, s], i) => !!sets[i] && bytesEqual(sets[i], s) && this.#heldLongEnough(partition, k)) }
  }
}
