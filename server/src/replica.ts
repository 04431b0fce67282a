// The replica endpoints' logic, apart from HTTP: read sets, coordinate a write (mint a dot), store a
// set sent by a coordinator or by read repair. Writes to one key are serialised by a per-key lock so
// a read-modify-write never loses a concurrent sync.
import { decodeSet, encodeSet, sync, update, bytesEqual, type Value, type VersionVector } from '@zerohop/core'
import type { Store } from './storage/store.js'

/** Storage key of a data item: 'd' + partition (uint16 BE) + key bytes; one partition is one range. */
export function dataKey(partition: number, key: Uint8Array): Buffer {
  const b = Buffer.allocUnsafe(3 + key.byteLength)
  b[0] = 0x64
  b.writeUInt16BE(partition, 1)
  b.set(key, 3)
  return b
}

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

export class Replica {
  readonly #store: Store
  readonly #locks = new KeyLocks()
  readonly actor: string

  /** Called inside the key's lock after every change of a stored set (anti-entropy keeps its trees by it). */
  readonly #onWrite?: (partition: number, key: Uint8Array, before: Uint8Array | undefined, after: Uint8Array) => void

  constructor(store: Store, actor: string, onWrite?: (partition: number, key: Uint8Array, before: Uint8Array | undefined, after: Uint8Array) => void) {
    this.#store = store
    this.actor = actor
    this.#onWrite = onWrite
  }

  /** Stored (encoded) sets, as they are on disk: no decode on the read path. */
  async read(keys: [number, Uint8Array][]): Promise<(Uint8Array | null)[]> {
    if (keys.length <= 16) {
      const out: (Uint8Array | null)[] = []
      for (const [p, k] of keys) out.push((await this.#store.get(dataKey(p, k))) ?? null)
      return out
    }
    const rows = await this.#store.getMany(keys.map(([p, k]) => dataKey(p, k)))
    return rows.map((r) => r ?? null)
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
      const bytes = encodeSet(update(context, local, this.actor, value))
      await this.#store.put(dk, bytes)
      this.#onWrite?.(partition, key, stored, bytes)
      return bytes
    })
  }

  /** Sync a received set into the local one; true when the local state changed. */
  async store(partition: number, key: Uint8Array, incoming: Uint8Array): Promise<boolean> {
    const dk = dataKey(partition, key)
    return this.#locks.run(dk, async () => {
      const stored = await this.#store.get(dk)
      if (stored && bytesEqual(stored, incoming)) return false
      const merged = encodeSet(stored ? sync(decodeSet(stored), decodeSet(incoming)) : decodeSet(incoming))
      if (stored && bytesEqual(stored, merged)) return false
      await this.#store.put(dk, merged)
      this.#onWrite?.(partition, key, stored, merged)
      return true
    })
  }
}
