// Hinted handoff. A write meant for a replica that is down is kept here, on a fallback node, apart
// from this node's own data, with a hint naming the intended node. Hints for the same key merge by
// DVV sync. A periodic scan delivers them to their nodes once those are up again and deletes each
// hint after the target stored it (unless it changed meanwhile); one its target has not taken by half
// its lifetime is copied to the key's other replicas too. Hints live in LevelDB, so they
// survive a restart; the store is bounded per target, and overflow drops the oldest (anti-entropy
// repairs what a dropped hint carried). A hint expires --hint-ttl-ms after it was first stored, before
// any tombstone it could resurrect may be reaped (--tombstone-grace-ms is longer; see reaper.ts).
//
// Stored value: 0xc1 (a byte MessagePack never uses), the time the hint was first stored (ms, float64
// BE), then the set. A bare set is a hint stored by an earlier version: it counts from start-up.
import { ErrorCodes, HttpError, InvalidArgumentError, decodeSet, encodeSet, sync, bytesEqual, type Clock, type ClockTimer } from '@zerohop/core'
import { ReplicaClient } from '@zerohop/client'
import type { Logger } from 'pino'
import { KeyLocks } from './replica.js'
import type { Store } from './storage/store.js'

/** Targets whose hints are delivered at once (each target's batches go one after another). */
const TARGETS_AT_ONCE = 8

/** Storage key of a hint: 'h' + target id length + target id + partition (uint16 BE) + key. */
export function hintKey(target: string, partition: number, key: Uint8Array): Buffer {
  const id = Buffer.from(target)
  const b = Buffer.allocUnsafe(2 + id.length + 2 + key.byteLength)
  b[0] = 0x68
  b[1] = id.length
  id.copy(b, 2)
  b.writeUInt16BE(partition, 2 + id.length)
  b.set(key, 4 + id.length)
  return b
}

function parseHintKey(k: Uint8Array): { target: string; partition: number; key: Uint8Array } {
  const b = Buffer.from(k.buffer, k.byteOffset, k.byteLength)
  const len = b[1]
  return { target: b.subarray(2, 2 + len).toString(), partition: b.readUInt16BE(2 + len), key: b.subarray(4 + len) }
}

export interface HintMetrics {
  stored: number
  delivered: number
  dropped: number
  expired: number
}

const HINT_FORMAT = 0xc1

function packHint(created: number, set: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(9 + set.byteLength)
  b[0] = HINT_FORMAT
  b.writeDoubleBE(created, 1)
  b.set(set, 9)
  return b
}

function unpackHint(v: Uint8Array, legacyCreated: number): { created: number; set: Uint8Array } {
  const b = Buffer.from(v.buffer, v.byteOffset, v.byteLength)
  if (b[0] !== HINT_FORMAT) return { created: legacyCreated, set: b }
  return { created: b.readDoubleBE(1), set: b.subarray(9) }
}

export interface HintStoreOptions {
  store: Store
  /** How hints reach their nodes. */
  replicaClient: ReplicaClient
  clock: Clock
  log: Logger
  /** Most bytes of hints kept per target node. */
  maxBytesPerTarget: number
  /** How often hints are offered to targets that are up. */
  intervalMs: number
  /** Items per delivery request. */
  batchItems: number
  /** A hint not delivered this long after it was first stored is dropped. */
  ttlMs: number
  /** Where a target node is, and whether it is believed up. */
  locate: (id: string) => { url: string; up: boolean } | undefined
  /** When a target no longer replicates a hint's partition: the nodes that do now. */
  replicasOf: (partition: number) => { id: string; url: string }[]
}

interface Held {
  hk: Buffer
  partition: number
  key: Uint8Array
  /** As stored (time and set): a hint is deleted only if this is still what is stored. */
  raw: Uint8Array
  created: number
  set: Uint8Array
}

interface Entry {
  bytes: number
  created: number
  /** Copied to the key's other replicas already (see #rescue). */
  rescued?: boolean
}

export class HintStore {
  readonly metrics: HintMetrics = { stored: 0, delivered: 0, dropped: 0, expired: 0 }
  readonly #o: HintStoreOptions
  readonly #locks = new KeyLocks()
  /** Per target: hint storage key (latin1) → size, oldest first (a rewrite moves a hint to the end). */
  readonly #index = new Map<string, Map<string, Entry>>()
  readonly #bytes = new Map<string, number>()
  #timer?: ClockTimer
  #stopped = false
  #delivering?: Promise<void>
  #swept = 0
  /** When this store opened: the start of the TTL of hints stored by an earlier version. */
  #opened = 0

  constructor(o: HintStoreOptions) {
    if (!(o.replicaClient instanceof ReplicaClient)) throw new InvalidArgumentError('hint store option replicaClient must be a ReplicaClient (new ReplicaClient(transport))')
    this.#o = o
  }

  /** Build the in-memory index with one scan of the hint range. */
  async open(): Promise<void> {
    this.#opened = this.#o.clock.now()
    for await (const [k, v] of this.#o.store.entries({ gte: Buffer.from([0x68]), lt: Buffer.from([0x69]) })) {
      const { target } = parseHintKey(k)
      this.#track(target, Buffer.from(k).toString('latin1'), k.byteLength + v.byteLength, unpackHint(v, this.#opened).created)
    }
  }

  start(): void {
    const tick = () => {
      if (this.#stopped) return
      this.#delivering = this.deliver().catch((err) => this.#o.log.warn({ err }, 'hint delivery failed')).finally(() => {
        if (!this.#stopped) this.#timer = this.#o.clock.setTimeout(tick, this.#o.intervalMs)
      })
    }
    this.#timer = this.#o.clock.setTimeout(tick, this.#o.intervalMs)
  }

  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer) this.#o.clock.clearTimeout(this.#timer)
    await this.#delivering
  }

  /** The hints held for one key, per node they are for (explain). */
  async forKey(partition: number, key: Uint8Array): Promise<[target: string, set: Uint8Array][]> {
    const out: [string, Uint8Array][] = []
    for (const [target, held] of this.#index) {
      const hk = hintKey(target, partition, key)
      if (!held.has(hk.toString('latin1'))) continue
      const v = await this.#o.store.get(hk)
      if (v) out.push([target, unpackHint(v, this.#opened).set])
    }
    return out
  }

  /** Hints held and their bytes, per target. */
  backlog(): Record<string, { items: number; bytes: number }> {
    return Object.fromEntries([...this.#index].map(([t, m]) => [t, { items: m.size, bytes: this.#bytes.get(t) ?? 0 }]))
  }

  /** Hints held, per target. */
  counts(): Record<string, number> {
    return Object.fromEntries([...this.#index].map(([t, m]) => [t, m.size]))
  }

  #track(target: string, k: string, bytes: number, created: number): void {
    let m = this.#index.get(target)
    if (!m) this.#index.set(target, (m = new Map()))
    const prev = m.get(k)
    m.delete(k)
    m.set(k, { bytes, created })
    this.#bytes.set(target, (this.#bytes.get(target) ?? 0) - (prev?.bytes ?? 0) + bytes)
  }

  #untrack(target: string, k: string): void {
    const m = this.#index.get(target)
    const prev = m?.get(k)
    if (!m || !prev) return
    m.delete(k)
    this.#bytes.set(target, (this.#bytes.get(target) ?? 0) - prev.bytes)
    if (m.size === 0) this.#index.delete(target)
  }

  /** Keep a set for `target`, merged with any hint already held for that key. */
  async put(target: string, partition: number, key: Uint8Array, set: Uint8Array): Promise<void> {
    const hk = hintKey(target, partition, key)
    await this.#locks.run(hk, async () => {
      const raw = await this.#o.store.get(hk)
      const now = this.#o.clock.now()
      // A merged hint keeps its first time: it expires no later than the oldest write it carries. An
      // expired one is replaced, not merged into, so nothing older than the TTL travels on.
      const stored = raw ? unpackHint(raw, this.#opened) : undefined
      const live = stored && this.#fresh(stored.created, now) ? stored : undefined
      const created = live?.created ?? now
      const merged = live ? encodeSet(sync(decodeSet(live.set), decodeSet(set))) : set
      if (live && bytesEqual(live.set, merged)) return
      const value = packHint(created, merged)
      await this.#o.store.put(hk, value)
      this.#track(target, hk.toString('latin1'), hk.length + value.byteLength, created)
      this.metrics.stored++
    })
    await this.#bound(target)
  }

  /** Drop the oldest hints of a target over its byte budget. */
  async #bound(target: string): Promise<void> {
    let over = (this.#bytes.get(target) ?? 0) - this.#o.maxBytesPerTarget
    if (over <= 0) return
    const m = this.#index.get(target)!
    let dropped = 0
    for (const [k, e] of m) {
      if (over <= 0) break
      over -= e.bytes
      this.#untrack(target, k)
      await this.#o.store.del(Buffer.from(k, 'latin1'))
      dropped++
    }
    this.metrics.dropped += dropped
    this.#o.log.warn({ target, dropped, limit: this.#o.maxBytesPerTarget }, 'hint store for this target is full: dropped the oldest hints (anti-entropy will repair them)')
  }

  /**
   * Within the TTL. A hint from the future (the clock went back) counts as expired: a backward step
   * must not lengthen a hint's life past the tombstone grace period.
   */
  #fresh(created: number, now = this.#o.clock.now()): boolean {
    const age = now - created
    return age >= 0 && age <= this.#o.ttlMs
  }

  /** Drop hints older than the TTL (a pass at most four times per TTL). */
  async #expire(): Promise<void> {
    const now = this.#o.clock.now()
    if (now - this.#swept < this.#o.ttlMs / 4) return
    this.#swept = now
    for (const [target, m] of [...this.#index]) {
      let expired = 0
      for (const [k, e] of [...m]) {
        if (this.#fresh(e.created, now)) continue
        const hk = Buffer.from(k, 'latin1')
        await this.#locks.run(hk, async () => {
          const raw = await this.#o.store.get(hk)
          if (raw && this.#fresh(unpackHint(raw, this.#opened).created, now)) return
          await this.#o.store.del(hk)
          this.#untrack(target, k)
          expired++
        })
      }
      if (expired > 0) {
        this.metrics.expired += expired
        this.#o.log.warn({ target, expired, ttlMs: this.#o.ttlMs }, 'hints expired undelivered (anti-entropy repairs what they carried)')
      }
    }
  }

  /**
   * Drop expired hints; copy the hints a target has not taken by half their lifetime to the key's
   * other replicas; offer every target that is up its hints, in batches.
   */
  async deliver(): Promise<void> {
    await this.#expire()
    // Targets are served side by side (each its batches in turn), so one that is up but does not
    // answer holds only its own hints for the request timeout, not every other target's.
    const targets = [...this.#index.keys()][Symbol.iterator]()
    const worker = async () => {
      for (const target of targets) {
        if (this.#stopped) return
        const where = this.#o.locate(target)
        if (!where) {
          // The target left the cluster: its hints go to whoever replicates the keys now.
          await this.#deliverTo(target, undefined)
          continue
        }
        // First: a delivery to a target that does not answer waits out its timeout.
        await this.#rescue(target)
        if (where.up) await this.#deliverTo(target, where.url)
      }
    }
    await Promise.all(Array.from({ length: Math.min(TARGETS_AT_ONCE, this.#index.size) }, worker))
  }

  /**
   * A hint may have counted toward its write's W: the write's other copy may be the coordinator's
   * alone. Should the target stay out of reach for the hint's whole lifetime and that copy be lost
   * (a lost disk), the expired hint would take an acknowledged write with it; a write merged into a
   * hint for its key shares that hint's lifetime, which may be nearly over. So a hint its target
   * has not taken by half its lifetime is also stored, once, on the key's other replicas (a plain
   * store: a DVV sync with what they hold; anti-entropy then brings it to the target). It stays
   * until delivered or expired. Within the TTL this is as safe as the delivery itself: the tombstone
   * grace period covers hints for as long as they live, wherever they are stored.
   */
  async #rescue(target: string): Promise<void> {
    const m = this.#index.get(target)
    if (!m) return
    const now = this.#o.clock.now()
    const due = [...m].filter(([, e]) => !e.rescued && this.#fresh(e.created, now) && now - e.created >= this.#o.ttlMs / 2)
    for (let i = 0; i < due.length && !this.#stopped; i += this.#o.batchItems) {
      const slice = due.slice(i, i + this.#o.batchItems)
      const rows = await this.#o.store.getMany(slice.map(([k]) => Buffer.from(k, 'latin1')))
      // Per replica: the items it is sent, and which entries they are.
      const to = new Map<string, { items: { partition: number; key: Uint8Array; set: Uint8Array }[]; entries: Entry[] }>()
      const rescued = new Set<Entry>()
      slice.forEach(([k, e], j) => {
        const raw = rows[j]
        if (!raw) return
        const { partition, key } = parseHintKey(Buffer.from(k, 'latin1'))
        const { set } = unpackHint(raw, this.#opened)
        rescued.add(e)
        for (const r of this.#o.replicasOf(partition)) {
          if (r.id === target) continue
          let batch = to.get(r.url)
          if (!batch) to.set(r.url, (batch = { items: [], entries: [] }))
          batch.items.push({ partition, key, set })
          batch.entries.push(e)
        }
      })
      await Promise.all([...to].map(async ([url, b]) => {
        if ((await this.#send(url, b.items)) !== 'ok') for (const e of b.entries) rescued.delete(e)
      }))
      for (const e of rescued) e.rescued = true
      if (rescued.size > 0) this.#o.log.info({ target, hints: rescued.size }, 'hints not yet taken by their target at half their lifetime: copied to the keys\' other replicas')
    }
  }

  async #deliverTo(target: string, url: string | undefined): Promise<void> {
    const keys = [...(this.#index.get(target)?.keys() ?? [])]
    for (let i = 0; i < keys.length && !this.#stopped; i += this.#o.batchItems) {
      const batch: Held[] = []
      const slice = keys.slice(i, i + this.#o.batchItems)
      const rows = await this.#o.store.getMany(slice.map((k) => Buffer.from(k, 'latin1')))
      for (const [j, k] of slice.entries()) {
        const hk = Buffer.from(k, 'latin1')
        const raw = rows[j]
        if (!raw) {
          this.#untrack(target, k)
          continue
        }
        const { created, set } = unpackHint(raw, this.#opened)
        // Too old to deliver: the next expiry pass deletes it.
        if (!this.#fresh(created)) continue
        const { partition, key } = parseHintKey(hk)
        batch.push({ hk, partition, key, raw, created, set })
      }
      if (batch.length === 0) continue
      const answer = url ? await this.#send(url, batch) : 'gone'
      if (answer === 'failed') return
      const delivered = answer === 'ok' ? batch : await this.#reroute(batch)
      await Promise.all(delivered.map((h) => this.#locks.run(h.hk, async () => {
        const now = await this.#o.store.get(h.hk)
        // A hint that grew while it travelled stays for the next round.
        if (now && !bytesEqual(now, h.raw)) return
        await this.#o.store.del(h.hk)
        this.#untrack(target, h.hk.toString('latin1'))
        this.metrics.delivered++
      })))
    }
  }

  async #send(url: string, batch: { partition: number; key: Uint8Array; set: Uint8Array }[]): Promise<'ok' | 'gone' | 'failed'> {
    try {
      await this.#o.replicaClient.store(url, { items: batch.map((h) => [h.partition, h.key, h.set]) }, { timeoutMs: 5000 })
      return 'ok'
    } catch (err) {
      return err instanceof HttpError && err.code === ErrorCodes.NOT_REPLICA ? 'gone' : 'failed'
    }
  }

  /** The target cannot take these any more (left, or no longer a replica): give them to the current replicas. */
  async #reroute(batch: Held[]): Promise<Held[]> {
    const done: typeof batch = []
    for (const h of batch) {
      // Checked again before each send: rerouting a batch can take a while.
      if (!this.#fresh(h.created)) continue
      const replicas = this.#o.replicasOf(h.partition)
      const answers = await Promise.all(replicas.map((r) => this.#send(r.url, [h])))
      if (replicas.length > 0 && answers.every((a) => a === 'ok')) done.push(h)
    }
    return done
  }
}
