// LevelDB via `level` (classic-level on Node): the default on-disk store.
import { Level } from 'level'
import type { Range, Store } from './store.js'

export interface LevelStoreOptions {
  /** fsync every write (slower; survives an OS crash, not just a process crash). */
  sync?: boolean
}

export class LevelStore implements Store {
  readonly #db: Level<Uint8Array, Uint8Array>
  readonly #sync: boolean

  constructor(location: string, options: LevelStoreOptions = {}) {
    this.#db = new Level<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view' })
    this.#sync = options.sync ?? false
  }

  async open(): Promise<void> {
    await this.#db.open({ createIfMissing: true })
  }

  async close(): Promise<void> {
    await this.#db.close()
  }

  // Point reads are synchronous: LevelDB serves them from its block cache or the OS page cache in a
  // few microseconds, while the async path costs a thread-pool round trip (about half of a node's CPU
  // per read in the benchmark). Batches (getMany) stay asynchronous.
  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#db.getSync(key) ?? undefined
  }

  async getMany(keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    const rows = await this.#db.getMany(keys)
    return rows.map((r) => r ?? undefined)
  }

  async put(key: Uint8Array, value: Uint8Array, options?: { sync?: boolean }): Promise<void> {
    await this.#db.put(key, value, { sync: options?.sync ?? this.#sync })
  }

  async del(key: Uint8Array): Promise<void> {
    await this.#db.del(key, { sync: this.#sync })
  }

  async *entries(range: Range = {}): AsyncIterable<[Uint8Array, Uint8Array]> {
    const opts: { gte?: Uint8Array; lt?: Uint8Array } = {}
    if (range.gte) opts.gte = range.gte
    if (range.lt) opts.lt = range.lt
    for await (const [k, v] of this.#db.iterator(opts)) yield [k, v]
  }
}
