// The storage adapter: an ordered byte-keyed map. The node only needs get/getMany/put/del and range
// scans, so any ordered KV can back it; LevelDB is the default, the in-memory store serves tests and
// the simulator. Both pass the same conformance suite (server/test/store-conformance.ts).

export interface Range {
  gte?: Uint8Array
  lt?: Uint8Array
}

export interface Store {
  open(): Promise<void>
  close(): Promise<void>
  get(key: Uint8Array): Promise<Uint8Array | undefined>
  getMany(keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]>
  /** `sync` forces this write (and every one before it) to disk before resolving. */
  put(key: Uint8Array, value: Uint8Array, options?: { sync?: boolean }): Promise<void>
  del(key: Uint8Array): Promise<void>
  /** Entries in key order within the range. */
  entries(range?: Range): AsyncIterable<[Uint8Array, Uint8Array]>
}

function compare(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

/** A Store in a Map (keys as hex): for unit tests and the simulator. */
export class MemoryStore implements Store {
  #map = new Map<string, [Uint8Array, Uint8Array]>()
  #open = false

  async open(): Promise<void> {
    this.#open = true
  }

  async close(): Promise<void> {
    this.#open = false
  }

  #check(): void {
    if (!this.#open) throw new Error('store is not open')
  }

  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    this.#check()
    const v = this.#map.get(hex(key))?.[1]
    return v && Uint8Array.from(v)
  }

  async getMany(keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    this.#check()
    return keys.map((k) => {
      const v = this.#map.get(hex(k))?.[1]
      return v && Uint8Array.from(v)
    })
  }

  async put(key: Uint8Array, value: Uint8Array, _options?: { sync?: boolean }): Promise<void> {
    this.#check()
    this.#map.set(hex(key), [Uint8Array.from(key), Uint8Array.from(value)])
  }

  async del(key: Uint8Array): Promise<void> {
    this.#check()
    this.#map.delete(hex(key))
  }

  async *entries(range: Range = {}): AsyncIterable<[Uint8Array, Uint8Array]> {
    this.#check()
    const rows = [...this.#map.values()]
      .filter(([k]) => (!range.gte || compare(k, range.gte) >= 0) && (!range.lt || compare(k, range.lt) < 0))
      .sort((a, b) => compare(a[0], b[0]))
    for (const [k, v] of rows) yield [Uint8Array.from(k), Uint8Array.from(v)]
  }
}
