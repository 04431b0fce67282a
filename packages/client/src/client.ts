// The public API: connect() fetches the ring from a seed; a Client reads and writes through quorums
// it runs itself; collection() gives a typed view with its own encoding and merge function.
import {
  AbortError,
  ClientClosedError,
  InvalidArgumentError,
  MergeError,
  NoSeedReachableError,
  Paths,
  Ring,
  fromUtf8,
  siblings,
  utf8,
  sleep,
  type Clock,
  type Limits,
  type Member,
  type ReplicaFailure,
  type RingResponse,
} from '@zerohop/core'
import { Engine, channels, contextOf } from './engine.js'
import {
  checkEncoding,
  checkMerge,
  resolveClientOptions,
  type ClientOptions,
  type GetOptions,
  type Key,
  type MergeFunction,
  type PutOptions,
  type CallOptions,
} from './options.js'
import { UndiciTransport, type Transport } from './transport.js'

export interface GetResult<V> {
  /** False when no replica holds a live value (never written, or deleted). */
  found: boolean
  /** Set when exactly one live value remains, or after the merge function resolved the siblings. */
  value?: V
  /** Every concurrent live value the read saw. */
  siblings: V[]
  /** True when the merge function resolved siblings (the result is written back; see the merge channel if that failed). */
  merged: boolean
  /** Opaque causal context: pass it to the put() or delete() that follows this read. */
  context: string
}

export interface PutResult<V> {
  /**
   * Context for the next write. It covers this write when the coordinator holds nothing concurrent
   * with it; otherwise it is the context you passed in, so the next write becomes a sibling rather
   * than silently replacing a value you have not seen.
   */
  context: string
  /** The live values on the coordinating replica after the write. */
  siblings: V[]
  /** True when `siblings` holds values concurrent with this write: read and merge to resolve them. */
  conflict: boolean
}

export interface ReplicaState<V> {
  id: string
  url: string
  found: boolean
  siblings: V[]
  /** Equal digests mean the replicas hold the same DVV set. */
  digest: string | null
  error?: ReplicaFailure
}

export interface InspectResult<V> {
  partition: number
  preferenceList: { id: string; url: string; up: boolean }[]
  replicas: ReplicaState<V>[]
}

export interface Codec<V> {
  encode(value: V): Uint8Array
  decode(bytes: Uint8Array): V
}

const bytesCodec: Codec<Uint8Array | string> = {
  encode: (v) => {
    if (typeof v === 'string') return utf8(v)
    if (v instanceof Uint8Array) return v
    throw new InvalidArgumentError('value must be a Uint8Array or a string; for objects use encoding: "json"')
  },
  decode: (b) => b,
}

const jsonCodec: Codec<unknown> = {
  encode: (v) => {
    const s = JSON.stringify(v)
    if (s === undefined) throw new InvalidArgumentError('value is not JSON-serialisable')
    return utf8(s)
  },
  decode: (b) => JSON.parse(fromUtf8(b)),
}

function keyBytes(key: Key): Uint8Array {
  if (typeof key === 'string') return utf8(key)
  if (key instanceof Uint8Array) return key
  throw new InvalidArgumentError('key must be a string or a Uint8Array')
}

export interface CollectionOptions<V> {
  encoding?: 'bytes' | 'json'
  merge?: MergeFunction<V>
}

/** Reads and writes of one value type, with its own merge function. */
export class Collection<V> {
  readonly #engine: () => Engine
  readonly #codec: Codec<V>
  readonly #merge?: MergeFunction<V>

  /** @internal */
  constructor(engine: () => Engine, codec: Codec<V>, merge?: MergeFunction<V>) {
    this.#engine = engine
    this.#codec = codec
    this.#merge = merge
  }

  async get(key: Key, options: GetOptions = {}): Promise<GetResult<V>> {
    const engine = this.#engine()
    const k = keyBytes(key)
    engine.checkKey(k)
    const raw = await engine.get(k, options.r, options.timeoutMs, options.signal)
    const siblings = raw.siblings.map((b) => this.#decode(b))
    const result: GetResult<V> = { found: raw.found, siblings, merged: false, context: contextOf(raw.vector, raw.first) }
    if (siblings.length === 1) result.value = siblings[0]
    else if (siblings.length > 1 && this.#merge) {
      let merged: V
      let bytes: Uint8Array
      try {
        merged = await this.#merge(siblings, key)
        bytes = this.#encode(merged)
      } catch (err) {
        throw new MergeError(`the merge function threw, or returned a value this collection cannot encode, for ${siblings.length} siblings`, { cause: err })
      }
      result.value = merged
      result.merged = true
      // Write the resolution back with the joined context, so later reads see one value.
      try {
        const written = await engine.put(k, bytes, result.context, undefined, options.timeoutMs, options.signal)
        result.context = contextOf(written.vector, written.coordinator)
        channels.merge.hasSubscribers && channels.merge.publish({ key, siblings: siblings.length, writtenBack: true })
      } catch (err) {
        if (err instanceof AbortError) throw err
        channels.merge.hasSubscribers && channels.merge.publish({ key, siblings: siblings.length, writtenBack: false, error: err })
      }
    }
    return result
  }

  async put(key: Key, value: V, options: PutOptions = {}): Promise<PutResult<V>> {
    const engine = this.#engine()
    const k = keyBytes(key)
    engine.checkKey(k)
    const raw = await engine.put(k, this.#encode(value), options.context, options.w, options.timeoutMs, options.signal)
    return { context: contextOf(raw.vector, raw.coordinator), siblings: raw.siblings.map((b) => this.#decode(b)), conflict: raw.conflict }
  }

  /**
   * Write a tombstone. With the context of a read, it supersedes what that read saw; without one, the
   * SDK reads first (at R) and deletes what it finds.
   */
  async delete(key: Key, options: PutOptions = {}): Promise<{ context: string; conflict: boolean }> {
    const engine = this.#engine()
    const k = keyBytes(key)
    engine.checkKey(k)
    let context = options.context
    if (context === undefined) {
      const read = await engine.get(k, undefined, options.timeoutMs, options.signal)
      if (read.vector.length === 0) return { context: contextOf([], read.first), conflict: false }
      context = contextOf(read.vector, read.first)
    }
    const raw = await engine.put(k, null, context, options.w, options.timeoutMs, options.signal)
    // conflict: values concurrent with the delete are still live.
    return { context: contextOf(raw.vector, raw.coordinator), conflict: raw.conflict }
  }

  /** Each of the key's N replicas, read directly with no repair: for operators and tests. */
  async inspect(key: Key, options: CallOptions = {}): Promise<InspectResult<V>> {
    const engine = this.#engine()
    const k = keyBytes(key)
    engine.checkKey(k)
    const raw = await engine.inspect(k, options.timeoutMs, options.signal)
    return {
      partition: raw.partition,
      preferenceList: raw.preferenceList.map((m) => ({ id: m.id, url: m.url, up: m.up })),
      replicas: raw.replicas.map((r) => {
        const state: ReplicaState<V> = {
          id: r.id,
          url: r.url,
          found: r.found,
          siblings: r.set ? siblings(r.set).map((v) => this.#decode(v)) : [],
          digest: r.digest ?? null,
        }
        if (r.error) state.error = r.error
        return state
      }),
    }
  }

  #encode(v: V): Uint8Array {
    return this.#codec.encode(v)
  }

  #decode(b: Uint8Array): V {
    return this.#codec.decode(b)
  }
}

/** A connection to a cluster. Values are bytes (strings in, Uint8Array out) unless encoding is 'json'. */
export class Client<V = Uint8Array | string> extends Collection<V> {
  #engine?: Engine
  #closed = false

  /** @internal */
  constructor(engine: Engine, codec: Codec<V>, merge?: MergeFunction<V>) {
    super(() => this.#live(), codec, merge)
    this.#engine = engine
  }

  #live(): Engine {
    if (this.#closed || !this.#engine) throw new ClientClosedError()
    return this.#engine
  }

  /** The ring this client routes with. */
  get ring(): Ring {
    return this.#live().ring
  }

  /** A typed view over the same connection: its own encoding and merge function. */
  collection<T>(options: CollectionOptions<T> = {}): Collection<T> {
    const encoding = checkEncoding(options.encoding ?? 'json')
    checkMerge(options.merge)
    const codec = (encoding === 'json' ? jsonCodec : bytesCodec) as Codec<T>
    return new Collection<T>(() => this.#live(), codec, options.merge)
  }

  /** Close connections to every node. Later calls reject with ClientClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const engine = this.#engine
    this.#engine = undefined
    await engine?.transport.close()
  }
}

async function fetchRing(transport: Transport, seeds: string[], clock: Clock, deadline: number): Promise<{ ring: Ring; limits: Limits }> {
  const errors = new Map<string, string>()
  for (;;) {
    for (const url of seeds) {
      try {
        const reply = await transport.get(url, Paths.ring, { timeoutMs: Math.max(1, Math.min(2000, deadline - clock.now())) })
        if (reply.status === 200) {
          const d = JSON.parse(reply.body.toString('utf8')) as RingResponse
          return { ring: new Ring(d.members as Member[], { partitions: d.partitions, n: d.n, spares: d.spares }), limits: d.limits }
        }
        errors.set(url, `HTTP ${reply.status}`)
      } catch (err) {
        const e = err as { code?: string; message?: string }
        errors.set(url, e.code ?? e.message ?? String(err))
      }
    }
    if (clock.now() >= deadline) throw new NoSeedReachableError(seeds.map((url) => ({ url, message: errors.get(url) ?? 'no answer' })))
    await sleep(clock, 100)
  }
}

export function connect(options: ClientOptions & { encoding: 'json' }): Promise<Client<unknown>>
export function connect(options: ClientOptions): Promise<Client<Uint8Array | string>>
export async function connect(options: ClientOptions): Promise<Client<any>> {
  const o = resolveClientOptions(options)
  const transport = o.transport ?? new UndiciTransport({ connections: o.connections })
  try {
    const { ring, limits } = await fetchRing(transport, o.seeds, o.clock, o.clock.now() + o.connectTimeoutMs)
    const engine = new Engine(o, transport, ring, limits)
    return new Client(engine, (o.encoding === 'json' ? jsonCodec : bytesCodec) as Codec<any>, o.merge)
  } catch (err) {
    await transport.close()
    throw err
  }
}
