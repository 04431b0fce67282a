// LevelDB via `level` (classic-level on Node): the default on-disk store.
import { InvalidArgumentError } from '@zerohop/core'
import { Level } from 'level'
import { PAGE_ENTRIES, flatten, type Range, type Store } from './store.js'

/**
 * LevelDB's write buffer (its memtable) by default: 32 MiB, not LevelDB's 4 MiB. Every full buffer is
 * flushed to a table file that compactions then merge down; at 4 MiB a node taking 1 KB puts flushed
 * and compacted eight times as often, and spent a quarter more CPU per put (node CPU per put 439 µs
 * against 327 µs, 3,307 against 4,008 puts/s, over 40 s of puts on a 3-node cluster). It costs
 * memory: up to two buffers (the full one while it is written out) per node.
 */
export const WRITE_BUFFER_BYTES = 32 * 1024 * 1024

/** How long a getMany reads synchronously before it hands the rest to the thread pool (see getMany). */
export const SYNC_READ_BUDGET_MS = 1

export interface LevelStoreOptions {
  /** fsync every write (slower; survives an OS crash, not just a process crash). */
  sync?: boolean
  /** LevelDB's write buffer in bytes (default WRITE_BUFFER_BYTES, 32 MiB; at least 64 KiB). */
  writeBufferBytes?: number
  /** How long a getMany reads synchronously before it hands the rest to the thread pool (default SYNC_READ_BUDGET_MS). */
  syncReadBudgetMs?: number
}

type Op = { type: 'put'; key: Uint8Array; value: Uint8Array } | { type: 'del'; key: Uint8Array }

/** Writes made in one turn of the event loop, committed together. */
interface Pending {
  ops: Op[]
  sync: boolean
  done: Promise<void>
  resolve: () => void
  reject: (err: unknown) => void
}

export class LevelStore implements Store {
  readonly #db: Level<Uint8Array, Uint8Array>
  readonly #sync: boolean
  readonly #syncReadBudgetMs: number
  #pending?: Pending

  constructor(location: string, options: LevelStoreOptions = {}) {
    const writeBufferSize = options.writeBufferBytes ?? WRITE_BUFFER_BYTES
    if (!Number.isSafeInteger(writeBufferSize) || writeBufferSize < 64 * 1024) {
      throw new InvalidArgumentError(`LevelStore option writeBufferBytes must be a whole number of bytes, at least 65536 (64 KiB), got ${String(options.writeBufferBytes)}`)
    }
    this.#syncReadBudgetMs = options.syncReadBudgetMs ?? SYNC_READ_BUDGET_MS
    if (typeof this.#syncReadBudgetMs !== 'number' || !(this.#syncReadBudgetMs >= 0 && this.#syncReadBudgetMs <= 1000)) {
      throw new InvalidArgumentError(`LevelStore option syncReadBudgetMs must be a number of milliseconds from 0 to 1000, got ${String(options.syncReadBudgetMs)}`)
    }
    this.#db = new Level<Uint8Array, Uint8Array>(location, { keyEncoding: 'view', valueEncoding: 'view', writeBufferSize })
    this.#sync = options.sync ?? false
  }

  async open(): Promise<void> {
    await this.#db.open({ createIfMissing: true })
  }

  async close(): Promise<void> {
    await this.#pending?.done.catch(() => undefined)
    await this.#db.close()
  }

  // Point reads are synchronous: LevelDB serves them from its block cache or the OS page cache in a
  // few microseconds, while the async path costs a thread-pool round trip (about half of a node's CPU
  // per read in the benchmark).
  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#db.getSync(key) ?? undefined
  }

  /**
   * Reads synchronously, as get() does, until syncReadBudgetMs have passed, and the keys left in one
   * getMany on the thread pool. A key read synchronously costs about 4 us of CPU; getMany's round trip
   * about 70 us whatever it reads (9.5 us a key for 16 keys, 6.3 for 32, 5.2 for 64). The budget
   * bounds how long a batch whose blocks are not cached (a disk read each) holds up the event loop.
   */
  async getMany(keys: Uint8Array[]): Promise<(Uint8Array | undefined)[]> {
    const out = new Array<Uint8Array | undefined>(keys.length)
    const started = performance.now()
    let i = 0
    for (; i < keys.length; i++) {
      if ((i & 7) === 7 && performance.now() - started > this.#syncReadBudgetMs) break
      out[i] = this.#db.getSync(keys[i]) ?? undefined
    }
    if (i < keys.length) {
      const rest = await this.#db.getMany(keys.slice(i))
      for (let j = 0; j < rest.length; j++) out[i + j] = rest[j] ?? undefined
    }
    return out
  }

  put(key: Uint8Array, value: Uint8Array, options?: { sync?: boolean }): Promise<void> {
    return this.#write({ type: 'put', key, value }, options?.sync ?? this.#sync)
  }

  del(key: Uint8Array): Promise<void> {
    return this.#write({ type: 'del', key }, this.#sync)
  }

  /**
   * Writes made in one turn of the event loop (a request's items, a batch's stores) go to LevelDB as
   * one batch at the end of the turn, in the order made: one thread-pool job and one log append
   * instead of one each, which under load was a large part of a node's CPU per write. Each write
   * resolves once its batch is written; a synced write syncs its whole batch (and, as LevelDB's log
   * is sequential, everything before it).
   */
  #write(op: Op, sync: boolean): Promise<void> {
    let b = this.#pending
    if (!b) {
      let resolve!: () => void
      let reject!: (err: unknown) => void
      const done = new Promise<void>((res, rej) => ((resolve = res), (reject = rej)))
      b = this.#pending = { ops: [], sync: false, done, resolve, reject }
      const batch = b
      setImmediate(() => {
        if (this.#pending === batch) this.#pending = undefined
        this.#db.batch(batch.ops, { sync: batch.sync }).then(batch.resolve, batch.reject)
      })
    }
    b.ops.push(op)
    b.sync ||= sync
    return b.done
  }

  entries(range: Range = {}): AsyncIterable<[Uint8Array, Uint8Array]> {
    return flatten(this.pages(range))
  }

  async *pages(range: Range = {}, size = PAGE_ENTRIES): AsyncIterable<[Uint8Array, Uint8Array][]> {
    const opts: { gte?: Uint8Array; lt?: Uint8Array } = {}
    if (range.gte) opts.gte = range.gte
    if (range.lt) opts.lt = range.lt
    const it = this.#db.iterator(opts)
    try {
      for (;;) {
        const page = await it.nextv(size)
        if (page.length === 0) return
        yield page
      }
    } finally {
      await it.close()
    }
  }
}
