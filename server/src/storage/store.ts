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
  /**
   * The same entries in pages of at most `size` (at least one entry each): for a scan of the whole
   * store, which then pays the async iteration once per page rather than once per entry.
   */
  pages(range?: Range, size?: number): AsyncIterable<[Uint8Array, Uint8Array][]>
}

/** Entries per page of a scan, unless asked otherwise. */
export const PAGE_ENTRIES = 1000

/** The entries of `pages`, one by one (what `entries` is made of). */
export async function* flatten<T>(pages: AsyncIterable<T[]>): AsyncIterable<T> {
  for await (const page of pages) yield* page
}

function compare(a: Uint8Array, b: Uint8Array): number {
  return Buffer.compare(a, b)
}

function hex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}

type Row = [Uint8Array, Uint8Array]

/**
 * What a disk holds for a MemoryStore, modelled as a store's file under an OS page cache: `cache` is
 * what the process reads back (it survives a process crash), `durable` what has reached the disk
 * (it survives a power loss). A synced write makes every write before it durable, as LevelDB's log
 * does. A simulator crashes the node on it, loses power, or loses the disk.
 */
export class MemoryDisk {
  readonly cache = new Map<string, Row>()
  #durable = new Map<string, Row>()
  /** Writes in order since the last sync (undefined: a delete). */
  #tail: [string, Row | undefined][] = []
  /** Bumped by every crash: a store opened before it is dead. */
  generation = 0

  write(hex: string, row: Row | undefined, sync: boolean): void {
    if (row) this.cache.set(hex, row)
    else this.cache.delete(hex)
    this.#tail.push([hex, row])
    if (sync) this.#sync(this.#tail.length)
  }

  /** Writes not yet durable. */
  get unsynced(): number {
    return this.#tail.length
  }

  #sync(count: number): void {
    for (const [hex, row] of this.#tail.slice(0, count)) {
      if (row) this.#durable.set(hex, row)
      else this.#durable.delete(hex)
    }
    this.#tail = []
  }

  /** The process dies; the page cache keeps what it wrote. */
  crash(): void {
    this.generation++
  }

  /** The machine loses power: the first `kept` unsynced writes had reached the disk, the rest are lost. */
  powerLoss(kept: number): void {
    this.#sync(Math.max(0, Math.min(kept, this.#tail.length)))
    this.cache.clear()
    for (const [k, v] of this.#durable) this.cache.set(k, v)
    this.generation++
  }

  /** The disk is replaced by an empty one. */
  wipe(): void {
    this.#tail = []
    this.#durable.clear()
    this.cache.clear()
    this.generation++
  }
}

export interface MemoryStoreOptions {
  /** The disk it keeps its data on (default: its own, never crashed). */
  disk?: MemoryDisk
  /** Sync every write, like --fsync (default false). */
  sync?: boolean
}

/** A Store in a Map (keys as hex), on a modelled disk: for unit tests and the simulator. */
export class MemoryStore implements Store {
  readonly #disk: MemoryDisk
  readonly #sync: boolean
  #generation = -1
  #open = false

  constructor(options: MemoryStoreOptions = {}) {
    this.#disk = options.disk ?? new MemoryDisk()
    this.#sync = options.sync ?? false
  }

  get #map(): Map<string, Row> {
    return this.#disk.cache
  }

  async open(): Promise<void> {
    this.#generation = this.#disk.generation
    this.#open = true
  }

  async close(): Promise<void> {
    this.#open = false
  }

  #check(): void {
    if (!this.#open || this.#generation !== this.#disk.generation) throw new Error('store is not open')
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

  async put(key: Uint8Array, value: Uint8Array, options?: { sync?: boolean }): Promise<void> {
    this.#check()
    this.#disk.write(hex(key), [Uint8Array.from(key), Uint8Array.from(value)], this.#sync || options?.sync === true)
  }

  async del(key: Uint8Array): Promise<void> {
    this.#check()
    this.#disk.write(hex(key), undefined, this.#sync)
  }

  entries(range: Range = {}): AsyncIterable<[Uint8Array, Uint8Array]> {
    return flatten(this.pages(range, 1))
  }

  async *pages(range: Range = {}, size = PAGE_ENTRIES): AsyncIterable<[Uint8Array, Uint8Array][]> {
    this.#check()
    const rows = [...this.#map.values()]
      .filter(([k]) => (!range.gte || compare(k, range.gte) >= 0) && (!range.lt || compare(k, range.lt) < 0))
      .sort((a, b) => compare(a[0], b[0]))
    for (let i = 0; i < rows.length; i += size) {
      this.#check()
      yield rows.slice(i, i + size).map(([k, v]): [Uint8Array, Uint8Array] => [Uint8Array.from(k), Uint8Array.from(v)])
    }
  }
}
