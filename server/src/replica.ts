// The replica endpoints' logic, apart from HTTP: read sets, coordinate a write (mint a dot), store a
// set sent by a coordinator or by read repair. Writes to one key are serialised by a per-key lock so
// a read-modify-write never loses a concurrent sync.
import { decodeSet, encodeSet, sync, update, bytesEqual, onlyTombstones, type DvvSet, type Value, type VersionVector } from '@zerohop/core'
import type { Store } from './storage/store.js'

/** Storage key of a data item: 'd' + partition (uint16 BE) + key bytes; one partition is one range. */
export function dataKey(partition: number, key: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(3 + key.byteLength)
  b[0] = 0x64
  b.writeUInt16BE(partition, 1)
  b.set(key, 3)
  return b
}

/** Every data key: the 'd' prefix. */
export const DATA_RANGE: { gte: Buffer; lt: Buffer } = { gte: Buffer.from([0x64]), lt: Buffer.from([0x65]) }

export function partitionRange(partition: number): { gte: Buffer; lt: Buffer } {
  const gte = Buffer.from([0x64, 0, 0])
  gte.writeUInt16BE(partition, 1)
  // The last partition ends where the 'd' prefix does: [0x65] (not [0x65, 0, 0], which would let keys
  // such as [0x65] or [0x65, 0] fall inside partition 65535).
  if (partition === 0xffff) return { gte, lt: Buffer.from([0x65]) }
  const lt = Buffer.from([0x64, 0, 0])
  lt.writeUInt16BE(partition + 1, 1)
  return { gte, lt }
}

export class KeyLocks {
  #tails = new Map<string, Promise<unknown>>()

  async run<T>(key: Uint8Array, fn: () => Promise<T>): Promise<T> {
    const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')
    const prev = this.#tails.get(k) ?? Promise.resolve()
    const next = prev.then(fn, fn)
    const tail = next.catch(() => undefined)
    this.#tails.set(k, tail)
    try {
      return await next
    } finally {
      if (this.#tails.get(k) === tail) this.#tails.delete(k)
    }
  }
}

/**
 * Which actor id mints a write. A node's actors are `ID~INCARNATION` and `ID~INCARNATION.EPOCH`; the
 * epoch rises (durably, before the deletes) every time this node deletes sets it held: reaped
 * tombstones, handed-off partitions. A counter an actor minted for a key is only reused safely when
 * the local set still holds that actor's newest dot, and that is only certain for actors of the
 * current epoch, or of an older one still in the local set (a reap deletes a set every replica held
 * identically, so whatever comes back holds the newest dot; a dropped partition may come back from a
 * replica that missed the last writes, so a drop also sets that partition's floor).
 * Without this, a key reaped here but not yet on a replica whose reap failed would get counter 1 again
 * and the old tombstone would silently supersede the new, acknowledged write (the dots alias).
 */
export class Actors {
  #epoch = 0
  /** Partition → lowest epoch whose actors may be reused (set when the partition's data is dropped). */
  readonly #floors = new Map<number, number>()

  constructor(readonly base: string, readonly persist: (state: ActorState) => Promise<void> = async () => undefined, state?: ActorState) {
    if (state && state.base === base) {
      this.#epoch = state.epoch
      for (const [p, e] of state.floors) this.#floors.set(p, e)
    }
  }

  /** The actor new keys are written with. */
  get current(): string {
    return this.#epoch === 0 ? this.base : `${this.base}.${this.#epoch}`
  }

  get epoch(): number {
    return this.#epoch
  }

  /** The actor that mints the next dot for a key whose local set is `local`, in `partition`. */
  pick(local: DvvSet, partition: number): string {
    const floor = this.#floors.get(partition) ?? 0
    let best = -1
    let actor = this.current
    for (const [id] of local) {
      const e = this.#epochOf(id)
      if (e > best && e >= floor) {
        best = e
        actor = id
      }
    }
    return actor
  }

  #epochOf(id: string): number {
    if (id === this.base) return 0
    if (id.length <= this.base.length + 1 || !id.startsWith(this.base) || id.charCodeAt(this.base.length) !== 0x2e) return -1
    const e = Number(id.slice(this.base.length + 1))
    return Number.isSafeInteger(e) ? e : -1
  }

  #retiring: Promise<void> = Promise.resolve()

  /**
   * Call before deleting sets (of `partitions`, when whole partitions are dropped); resolves once the
   * new epoch is on disk. Retirements run one at a time, and a new epoch is used only once it is on
   * disk: otherwise two saves could land out of order, or a crash could hand out an epoch again.
   */
  retire(partitions: number[] = []): Promise<void> {
    const run = async () => {
      const epoch = this.#epoch + 1
      const floors = new Map(this.#floors)
      for (const p of partitions) floors.set(p, epoch)
      await this.persist({ base: this.base, epoch, floors: [...floors] })
      this.#epoch = epoch
      for (const [p, e] of floors) this.#floors.set(p, e)
    }
    const done = this.#retiring.then(run)
    this.#retiring = done.catch(() => undefined)
    return done
  }

  state(): ActorState {
    return { base: this.base, epoch: this.#epoch, floors: [...this.#floors] }
  }
}

export interface ActorState {
  base: string
  epoch: number
  floors: [number, number][]
}

/** Called inside the key's lock after every change of a stored set; `after` undefined is a deletion, `dead` a set of tombstones only. */
export type WriteHook = (partition: number, key: Uint8Array, before: Uint8Array | undefined, after: Uint8Array | undefined, dead: boolean) => void

export class Replica {
  readonly #store: Store
  readonly #locks = new KeyLocks()
  readonly actors: Actors
  readonly #onWrite?: WriteHook

  constructor(store: Store, actors: Actors | string, onWrite?: WriteHook) {
    this.#store = store
    this.actors = typeof actors === 'string' ? new Actors(actors) : actors
    this.#onWrite = onWrite
  }

  /** The actor id new keys are written with (health, logs). */
  get actor(): string {
    return this.actors.current
  }

  /**
   * Stored (encoded) sets, as they are on disk: no decode on the read path. One getMany, whatever the
   * count: the store reads synchronously while that is cheap (see LevelStore.getMany).
   */
  async read(keys: [number, Uint8Array][]): Promise<(Uint8Array | null)[]> {
    const rows = await this.#store.getMany(keys.map(([p, k]) => dataKey(p, k)))
    return rows.map((r) => r ?? null)
  }

  /** Stored sets read inside each key's lock: every write that finished has run its write hook. */
  snapshot(partition: number, keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    return Promise.all(keys.map((key) => {
      const dk = dataKey(partition, key)
      return this.#locks.run(dk, () => this.#store.get(dk))
    }))
  }

  /** One page of a partition in key order, after `after` (exclusive): partition handoff. */
  async range(partition: number, after: Uint8Array | undefined, limit: number): Promise<{ items: [Uint8Array, Uint8Array][]; more: boolean }> {
    const range = partitionRange(partition)
    const gte = after ? Buffer.concat([dataKey(partition, after), Buffer.from([0])]) : range.gte
    const items: [Uint8Array, Uint8Array][] = []
    for await (const [k, v] of this.#store.entries({ gte, lt: range.lt })) {
      if (items.length === limit) return { items, more: true }
      items.push([k.subarray(3), v])
    }
    return { items, more: false }
  }

  /** Coordinate a client write: the new dot supersedes `context` and nothing else. */
  async coordinate(partition: number, key: Uint8Array, context: VersionVector, value: Value): Promise<Uint8Array> {
    const dk = dataKey(partition, key)
    return this.#locks.run(dk, async () => {
      const stored = await this.#store.get(dk)
      const local = stored ? decodeSet(stored) : []
      const set = update(context, local, this.actors.pick(local, partition), value)
      const bytes = encodeSet(set)
      await this.#store.put(dk, bytes)
      this.#onWrite?.(partition, key, stored, bytes, onlyTombstones(set))
      return bytes
    })
  }

  /** Sync a received set into the local one; true when the local state changed. */
  async store(partition: number, key: Uint8Array, incoming: Uint8Array): Promise<boolean> {
    const dk = dataKey(partition, key)
    return this.#locks.run(dk, async () => {
      const stored = await this.#store.get(dk)
      if (stored && bytesEqual(stored, incoming)) return false
      const set = stored ? sync(decodeSet(stored), decodeSet(incoming)) : decodeSet(incoming)
      const merged = encodeSet(set)
      if (stored && bytesEqual(stored, merged)) return false
      await this.#store.put(dk, merged)
      this.#onWrite?.(partition, key, stored, merged, onlyTombstones(set))
      return true
    })
  }

  /**
   * Delete a key of a partition this node no longer replicates (handed off); retire the actors with
   * that partition's floor first (`actors.retire([partition])`).
   */
  async drop(partition: number, key: Uint8Array): Promise<void> {
    const dk = dataKey(partition, key)
    await this.#locks.run(dk, async () => {
      await this.#store.del(dk)
      this.#onWrite?.(partition, key, undefined, undefined, false)
    })
  }

  /**
   * Delete each key whose stored set is still exactly `expected` (tombstone reaping, after every replica
   * was found holding that set). The actor epoch is retired before the first delete. Returns, per item, whether it went.
   */
  async reap(partition: number, items: [key: Uint8Array, expected: Uint8Array][]): Promise<boolean[]> {
    let retired: Promise<void> | undefined
    return Promise.all(items.map(([key, expected]) => {
      const dk = dataKey(partition, key)
      return this.#locks.run(dk, async () => {
        const stored = await this.#store.get(dk)
        // Only ever a set of tombstones, whatever the request says.
        if (!stored || !bytesEqual(stored, expected) || !onlyTombstones(decodeSet(stored))) return false
        await (retired ??= this.actors.retire())
        await this.#store.del(dk)
        this.#onWrite?.(partition, key, stored, undefined, false)
        return true
      })
    }))
  }
}
