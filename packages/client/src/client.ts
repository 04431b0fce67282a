// The public API: connect() fetches the ring from a seed and waits for members still starting; a
// Client reads and writes through quorums it runs itself; collection() gives a typed view with its
// own encoding and merge function.
import {
  AbortError,
  ClientClosedError,
  InvalidArgumentError,
  MergeError,
  Ring,
  type ClusterView,
  fromUtf8,
  utf8,
  type ReplicaFailure,
} from '@zerohop/core'
import { Engine, channels } from './engine.js'
import { RingWatch, type MembershipEvents } from './membership.js'
import {
  checkEncoding,
  checkMerge,
  checkQuorum,
  resolveClientOptions,
  type ClientOptions,
  type GetOptions,
  type Key,
  type MergeFunction,
  type PutOptions,
  type CallOptions,
} from './options.js'
import { UndiciTransport, type Transport } from './transport.js'
import { FramesTransport } from './frames-transport.js'
import type { Coordinator } from './coordinator.js'
import { LoadBalancerCoordinator } from './load-balancer.js'

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
  /** A replica in the current ring (primary), or one gaining the partition in a join or leave (incoming). */
  role: 'primary' | 'incoming'
  /** The replica holds a live value. */
  found: boolean
  siblings: V[]
  /** The replica holds only a tombstone (a delete not yet reaped). */
  tombstone: boolean
  /** Equal digests mean the replicas hold the same DVV set; null when the replica holds nothing. */
  digest: string | null
  error?: ReplicaFailure
}

/** A hint a node holds for one of the key's replicas (a write it took while that replica was down). */
export interface HintState<V> {
  /** The node holding the hint. */
  holder: string
  /** The replica it is for. */
  target: string
  tombstone: boolean
  siblings: V[]
  digest: string
}

/** Where a key lives and what each of its replicas holds: see explain(). */
export interface ExplainResult<V> {
  /** The ring the explanation was made with. */
  epoch: string
  partition: number
  /** The N primaries, then the spares that take hinted writes for primaries that are down; up or down as seen by whoever explained. */
  preferenceList: { id: string; url: string; role: 'primary' | 'spare'; up: boolean }[]
  /** Each replica read directly, with no repair. */
  replicas: ReplicaState<V>[]
  /** Every replica answered and all hold the same set. */
  agree: boolean
  /** Hints held for this key, by any member that answered. */
  hints: HintState<V>[]
  /** Members that could not be asked for hints (down, or they failed to answer). */
  unasked: string[]
  /** A join or leave is moving the partition: from the current replicas to the next ones, and which of those have pulled it. */
  moving: { from: string[]; to: string[]; ready: string[] } | null
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
  readonly #coordinator: () => Coordinator
  readonly #codec: Codec<V>
  readonly #merge?: MergeFunction<V>

  /** @internal */
  constructor(coordinator: () => Coordinator, codec: Codec<V>, merge?: MergeFunction<V>) {
    this.#coordinator = coordinator
    this.#codec = codec
    this.#merge = merge
  }

  async get(key: Key, options: GetOptions = {}): Promise<GetResult<V>> {
    const coordinator = this.#coordinator()
    const k = keyBytes(key)
    const raw = await coordinator.get(k, options)
    const siblings = raw.siblings.map((b) => this.#decode(b))
    const result: GetResult<V> = { found: raw.found, siblings, merged: false, context: raw.context }
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
        const written = await coordinator.put(k, bytes, { context: result.context, timeoutMs: options.timeoutMs, signal: options.signal })
        result.context = written.context
        channels.merge.hasSubscribers && channels.merge.publish({ key, siblings: siblings.length, writtenBack: true })
      } catch (err) {
        if (err instanceof AbortError) throw err
        channels.merge.hasSubscribers && channels.merge.publish({ key, siblings: siblings.length, writtenBack: false, error: err })
      }
    }
    return result
  }

  async put(key: Key, value: V, options: PutOptions = {}): Promise<PutResult<V>> {
    const raw = await this.#coordinator().put(keyBytes(key), this.#encode(value), options)
    return { context: raw.context, siblings: raw.siblings.map((b) => this.#decode(b)), conflict: raw.conflict }
  }

  /**
   * Write a tombstone. With the context of a read, it supersedes what that read saw; without one, the
   * coordinator reads first (at R) and deletes what it finds.
   */
  async delete(key: Key, options: PutOptions = {}): Promise<{ context: string; conflict: boolean }> {
    const raw = await this.#coordinator().delete(keyBytes(key), options)
    // conflict: values concurrent with the delete are still live.
    return { context: raw.context, conflict: raw.conflict }
  }

  /**
   * Where a key lives and what its replicas hold, read directly with no repair: its partition, its
   * preference list (primaries and spares, up or down), each replica's versions and whether they agree,
   * hints held for its replicas, and whether a join or leave is moving it. For operators and tests.
   */
  async explain(key: Key, options: CallOptions = {}): Promise<ExplainResult<V>> {
    const raw = await this.#coordinator().explain(keyBytes(key), options)
    return {
      epoch: raw.epoch,
      partition: raw.partition,
      preferenceList: raw.preferenceList.map((m) => ({ id: m.id, url: m.url, role: m.role, up: m.up })),
      replicas: raw.replicas.map((r) => {
        const state: ReplicaState<V> = {
          id: r.id,
          url: r.url,
          role: r.role,
          found: r.found,
          siblings: r.siblings.map((v) => this.#decode(v)),
          tombstone: r.tombstone,
          digest: r.digest,
        }
        if (r.error) state.error = r.error
        return state
      }),
      agree: raw.agree,
      hints: raw.hints.map((h) => ({ holder: h.holder, target: h.target, tombstone: h.tombstone, siblings: h.siblings.map((v) => this.#decode(v)), digest: h.digest })),
      unasked: raw.unasked,
      moving: raw.moving,
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
  #parts?: { coordinator: Coordinator; membership: RingWatch; transport: Transport }
  #closed = false

  /** @internal */
  constructor(coordinator: Coordinator, membership: RingWatch, transport: Transport, codec: Codec<V>, merge?: MergeFunction<V>) {
    super(() => this.#live().coordinator, codec, merge)
    this.#parts = { coordinator, membership, transport }
  }

  #live(): { coordinator: Coordinator; membership: RingWatch; transport: Transport } {
    if (this.#closed || !this.#parts) throw new ClientClosedError()
    return this.#parts
  }

  /** The ring this client routes reads with (the current one; see `view` for both during a change). */
  get ring(): Ring {
    return this.#live().membership.view.current
  }

  /** The cluster as this client sees it: member entries, current and next rings, epoch. */
  get view(): ClusterView {
    return this.#live().membership.view
  }

  /** Whether this client currently sends requests to the node (not in back-off, not held down by the cluster). */
  isUp(nodeId: string): boolean {
    return this.#live().membership.up(nodeId)
  }

  /** Re-read the ring from a live node now. */
  refresh(): Promise<void> {
    return this.#live().membership.refresh()
  }

  /** Typed events: `ring` (a new view), `node-up`, `node-down`. */
  on<E extends keyof MembershipEvents>(event: E, listener: (...args: MembershipEvents[E]) => void): this {
    this.#live().membership.on(event, listener as never)
    return this
  }

  off<E extends keyof MembershipEvents>(event: E, listener: (...args: MembershipEvents[E]) => void): this {
    this.#parts?.membership.off(event, listener as never)
    return this
  }

  /** A typed view over the same connection: its own encoding and merge function. */
  collection<T>(options: CollectionOptions<T> = {}): Collection<T> {
    const encoding = checkEncoding(options.encoding ?? 'json')
    checkMerge(options.merge)
    const codec = (encoding === 'json' ? jsonCodec : bytesCodec) as Codec<T>
    return new Collection<T>(() => this.#live().coordinator, codec, options.merge)
  }

  /** Close connections to every node. Later calls reject with ClientClosedError. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const parts = this.#parts
    this.#parts = undefined
    parts?.membership.close()
    parts?.membership.removeAllListeners()
    await parts?.transport.close()
  }
}

export function connect(options: ClientOptions & { encoding: 'json' }): Promise<Client<unknown>>
export function connect(options: ClientOptions): Promise<Client<Uint8Array | string>>
export async function connect(options: ClientOptions): Promise<Client<any>> {
  const o = resolveClientOptions(options)
  const builtIn = { connections: o.connections, tls: o.tls, headers: o.token ? { authorization: `Bearer ${o.token}` } : undefined }
  const transport = o.transport ?? (o.protocol === 'frames' ? new FramesTransport(builtIn) : new UndiciTransport(builtIn))
  try {
    const balanced = o.routing === 'load-balancer'
    const deadline = o.clock.now() + o.connectTimeoutMs
    const membership = await RingWatch.connect(transport, o.seeds, o.clock, deadline, {
      refreshIntervalMs: o.refreshIntervalMs,
      refreshDebounceMs: o.refreshDebounceMs,
      backoffMs: o.backoffMs,
      via: balanced ? o.seeds : undefined,
      random: o.random,
    })
    let coordinator: Coordinator
    try {
      // The defaults must fit this cluster's N (each call checks its own r and w again).
      checkQuorum('r', o.r, membership.view.current.n)
      checkQuorum('w', o.w, membership.view.current.n)
      coordinator = balanced ? new LoadBalancerCoordinator(o, transport, membership) : new Engine(o, transport, membership)
      // A new cluster: the seed that answered serves, some of the others may still be starting. With
      // load-balancer routing the nodes behind the seeds wait for their replicas themselves.
      if (!balanced) await membership.serving(o.w, deadline)
    } catch (err) {
      membership.close()
      throw err
    }
    return new Client(coordinator, membership, transport, (o.encoding === 'json' ? jsonCodec : bytesCodec) as Codec<any>, o.merge)
  } catch (err) {
    await transport.close()
    throw err
  }
}
