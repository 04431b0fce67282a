// Replica endpoints: reads, coordination, stores and handoff ranges for the partitions this node
// holds, with their validation (bad input never reaches storage) and the ring-epoch check that makes a
// sender with an older ring refresh. Anti-entropy and reaping requests share the same checks.
import {
  EPOCH_HEADER,
  ErrorCodes,
  MAX_BATCH,
  MAX_SET_COUNTER,
  MSGPACK,
  Paths,
  checkSet,
  checkVector,
  join,
  joinVectors,
  vectorBytes,
  vectorFromBytes,
  MAX_CONTEXT_PARTS,
  bytesEqual,
  pack,
  show,
  unpack,
  type ClusterKeys,
  type ClusterView,
  type DvvSet,
  type CoordinateRequest,
  type CoordinateResponse,
  type Ring,
  type VersionVector,
} from '@zerohop/core'
import type { Replica } from '../replica.js'
import type { ResolvedNodeOptions } from '../config.js'
import type { HintStore } from '../hints.js'
import type { AntiEntropy } from '../anti-entropy.js'
import { ReapPaths, parseReapRequest, type Reaper } from '../reaper.js'
import { antiEntropyHandlers } from './anti-entropy.js'
import { mayDo } from '../auth.js'
import { bad, decodeBody, errorOf, header, msgpack, allow, requireMsgpack, type NodeRequest, type NodeReply, type Route } from './request.js'
import type { Logger } from 'pino'
import { LRUCache } from 'lru-cache'

export class Validator {
  readonly ring: Ring
  #mine?: Uint8Array
  constructor(readonly options: ResolvedNodeOptions, readonly view: ClusterView, readonly self: string) {
    this.ring = view.current
  }

  /** The node a hint is for: a known member other than this one. */
  hintTarget(x: unknown, where: string): string {
    if (typeof x !== 'string' || !this.view.members.has(x)) throw bad(400, ErrorCodes.BAD_BODY, `${where}: hintFor must be the id of a member of the cluster`)
    return x
  }

  /** A partition this node holds replicas of in the current or the next ring. */
  replicated(p: number, where: string): void {
    // Computed once per view: this check runs for every key of every request.
    this.#mine ??= Uint8Array.from({ length: this.ring.partitions }, (_, q) => (this.view.replicates(this.self, q) ? 1 : 0))
    if (this.#mine[p] !== 1) {
      throw bad(409, ErrorCodes.NOT_REPLICA, `${where}: node ${this.self} does not hold replicas of partition ${p} in ring ${this.view.epoch}; refresh the ring`)
    }
  }

  /** A partition of this ring. */
  partition(p: unknown, where: string): number {
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p >= this.ring.partitions) {
      throw bad(400, ErrorCodes.UNKNOWN_PARTITION, `${where}: partition ${show(p)} does not exist; this ring has partitions 0..${this.ring.partitions - 1}`)
    }
    return p
  }

  partitionKey(p: unknown, k: unknown, where: string): [number, Uint8Array] {
    if (!(k instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, `${where}: key must be bytes`)
    if (k.byteLength === 0) throw bad(400, ErrorCodes.BAD_BODY, `${where}: key must not be empty`)
    if (k.byteLength > this.options.maxKeyBytes) {
      throw bad(400, ErrorCodes.KEY_TOO_LARGE, `${where}: key is ${k.byteLength} bytes; the limit is ${this.options.maxKeyBytes} (--max-key-bytes)`)
    }
    const partition = this.partition(p, where)
    const expected = this.ring.partitionOf(k)
    if (partition !== expected) throw bad(400, ErrorCodes.WRONG_PARTITION, `${where}: key belongs to partition ${expected}, not ${partition}`)
    return [partition, k]
  }

  batch(x: unknown, field: string): unknown[] {
    if (!Array.isArray(x) || x.length === 0 || x.length > MAX_BATCH) {
      throw bad(400, ErrorCodes.BAD_BODY, `${field} must be an array of 1 to ${MAX_BATCH} items`)
    }
    return x
  }

  value(v: unknown): Uint8Array | null {
    if (v === null) return null
    if (!(v instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, 'value must be bytes or null (a tombstone)')
    if (v.byteLength > this.options.maxValueBytes) {
      throw bad(413, ErrorCodes.VALUE_TOO_LARGE, `value is ${v.byteLength} bytes; the limit is ${this.options.maxValueBytes} (--max-value-bytes)`)
    }
    return v
  }

  set(s: unknown, where: string): Uint8Array {
    if (!(s instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, `${where}: set must be bytes`)
    let x: unknown
    try {
      x = unpack(s)
    } catch {
      throw bad(400, ErrorCodes.BAD_BODY, `${where}: set is not valid MessagePack`)
    }
    const why = checkSet(x, this.options.maxValueBytes, MAX_SET_COUNTER)
    if (why) throw bad(why.includes('over the limit') ? 413 : 400, why.includes('over the limit') ? ErrorCodes.VALUE_TOO_LARGE : ErrorCodes.BAD_BODY, `${where}: ${why}`)
    return s
  }
}

export interface Parts {
  hints: HintStore
  antiEntropy: AntiEntropy
  reaper: Reaper
}

/** In a cluster with a secret: how sets and contexts handed out are signed, and relayed ones checked. */
export interface Proofs {
  keys: ClusterKeys
  /** The context MACs of the sets this node hands out. */
  contexts: ContextMacs
  now: () => number
  /** Oldest proof a relayed set may carry (see proofMaxAge in parts.ts). */
  maxAgeMs: number
  /** The request's sets come from a client (not a node): each needs its proof. */
  relayed: boolean
  /** The client may write: it may leave a hint (a reader's store only repairs). */
  mayHint: boolean
  refused: (reason: string) => void
}

export type Handler = (body: Record<string, unknown>, v: Validator, replica: Replica, parts: Parts, proofs: Proofs | undefined, log: Logger) => Promise<unknown>

/** The most bytes of sets ContextMacs keeps: about 16,000 keys of 1 KB values. */
export const CONTEXT_MACS_BYTES = 16 * 1024 * 1024

/**
 * The MAC of a stored set's join as a context part of its key, which every read answers with: an
 * unpack, a join and an HMAC, about 5 µs per key in a tight loop and twice that in a node (25 µs of
 * a get's 80 in one process holding 3 nodes and the SDK). The last ones made are kept by key with the
 * set they sign, so reading a set again that is unchanged costs a comparison of its bytes. The MAC is
 * a function of the key and the set, so a kept one is the one that would be made. Bounded by the
 * bytes of the sets it keeps (`maxBytes`).
 */
export class ContextMacs {
  readonly #keys: ClusterKeys
  readonly #made: LRUCache<string, { set: Buffer; mac: Uint8Array }>

  constructor(keys: ClusterKeys, maxBytes = CONTEXT_MACS_BYTES) {
    this.#keys = keys
    this.#made = new LRUCache({ maxSize: maxBytes, sizeCalculation: (v, k) => v.set.byteLength + k.length + 64 })
  }

  of(key: Uint8Array, set: Uint8Array): Uint8Array {
    const k = Buffer.from(key.buffer, key.byteOffset, key.byteLength).toString('latin1')
    const kept = this.#made.get(k)
    if (kept && bytesEqual(kept.set, set)) return kept.mac
    const mac = this.#keys.proveContext(key, vectorBytes(join(unpack(set) as DvvSet)))
    // A copy: the set may be a view of a buffer its maker reuses.
    this.#made.set(k, { set: Buffer.from(set), mac })
    return mac
  }
}

/** The context a coordination supersedes: with proofs, the join of its signed parts (and nothing unsigned). */
function signedContext(proofs: Proofs, key: Uint8Array, context: VersionVector, parts: unknown): VersionVector {
  if (parts === undefined && context.length === 0) return context
  const refuse = (why: string) => {
    proofs.refused('bad-context')
    return bad(400, ErrorCodes.BAD_CONTEXT, `${why}; pass the context a get() or put() of this cluster returned for this key`)
  }
  if (!Array.isArray(parts) || parts.length === 0 || parts.length > MAX_CONTEXT_PARTS) throw refuse('the context carries no signature of this cluster')
  const vectors = parts.map((part: unknown) => {
    if (!Array.isArray(part) || part.length !== 2 || !(part[0] instanceof Uint8Array) || !(part[1] instanceof Uint8Array)) throw refuse('a context part must be [vector, mac]')
    if (!proofs.keys.checkContext(key, part[0], part[1])) throw refuse('the context was not signed by this cluster for this key (forged or altered)')
    const vv = vectorFromBytes(part[0])
    if (!vv || !checkVector(vv)) throw refuse('a context part is not a version vector')
    return vv
  })
  return joinVectors(vectors)
}

/** Mint one client write (see Replica.coordinate): checked, then its set, and in a cluster with a secret its proof and context MAC. */
async function coordinate(req: Partial<CoordinateRequest>, v: Validator, replica: Replica, proofs: Proofs | undefined): Promise<CoordinateResponse> {
  const [p, k] = v.partitionKey(req.partition, req.key, 'request')
  v.replicated(p, 'request')
  let context = req.context ?? []
  if (!checkVector(context)) throw bad(400, ErrorCodes.BAD_BODY, 'context must be a version vector [[actor, counter], ...]')
  // Every context is checked, whoever relays it: a node coordinating for a client passes the
  // client's context on.
  if (proofs) context = signedContext(proofs, k, context, req.parts)
  const value = v.value(req.value)
  const set = await replica.coordinate(p, k, context, value)
  return proofs ? { set, proof: proofs.keys.proveSet(k, set, proofs.now()), context: proofs.contexts.of(k, set) } : { set }
}

const handlers: Record<string, Handler> = {
  [Paths.read]: async (body, v, replica, _parts, proofs) => {
    const keys = v.batch(body.keys, 'keys').map((item, i) => {
      if (!Array.isArray(item) || item.length !== 2) throw bad(400, ErrorCodes.BAD_BODY, `keys[${i}] must be [partition, key]`)
      const pk = v.partitionKey(item[0], item[1], `keys[${i}]`)
      v.replicated(pk[0], `keys[${i}]`)
      return pk
    })
    const sets = await replica.read(keys)
    if (!proofs) return { sets }
    // Set proofs (an HMAC over the whole set) only when asked: a read needs its context, only read
    // repair relays sets.
    const contexts = sets.map((s, i) => (s === null ? null : proofs.contexts.of(keys[i][1], s)))
    if (body.prove !== true) return { sets, contexts }
    const now = proofs.now()
    return { sets, contexts, proofs: sets.map((s, i) => (s === null ? null : proofs.keys.proveSet(keys[i][1], s, now))) }
  },
  // One write (`{partition, key, context, value, parts?}` → `{set, proof?, context?}`), or several
  // (`{items: [...]}` → `{results: [...]}`, each the answer or `{error: {status, code, message}}`): an
  // SDK sends the coordinations that wait while one to this node is in flight together. Each item is
  // minted on its own; their writes reach LevelDB in one batch.
  [Paths.coordinate]: async (body, v, replica, _parts, proofs, log) => {
    if (body.items === undefined) return coordinate(body as Partial<CoordinateRequest>, v, replica, proofs)
    const items = v.batch(body.items, 'items')
    return {
      results: await Promise.all(items.map(async (item, i) => {
        try {
          if (item === null || typeof item !== 'object' || Array.isArray(item)) throw bad(400, ErrorCodes.BAD_BODY, `items[${i}] must be a map {partition, key, context, value}`)
          return await coordinate(item as Partial<CoordinateRequest>, v, replica, proofs)
        } catch (err) {
          const { status, error } = errorOf(err, log)
          return { error: { status, code: error.code, message: error.message } }
        }
      })),
    }
  },
  [Paths.store]: async (body, v, replica, { hints }, proofs) => {
    const items = v.batch(body.items, 'items').map((item, i) => {
      if (!Array.isArray(item) || item.length < 3 || item.length > 5) throw bad(400, ErrorCodes.BAD_BODY, `items[${i}] must be [partition, key, set, hintFor?, proof?]`)
      const [p, k] = v.partitionKey(item[0], item[1], `items[${i}]`)
      const target = item[3] ?? undefined
      const hint = target !== undefined && target !== v.self ? v.hintTarget(target, `items[${i}]`) : undefined
      if (hint !== undefined && proofs?.relayed) {
        // From a client, a hint is for a replica of the key's partition, and only with the write role:
        // anything else would only fill the bounded hint store and push genuine hints out.
        if (!proofs.mayHint) throw bad(403, ErrorCodes.FORBIDDEN, `items[${i}]: a hint takes the write role`)
        const { current, next } = v.view.replicas(v.partition(item[0], `items[${i}]`))
        if (!current.some((m) => m.id === hint) && !next.some((m) => m.id === hint)) {
          throw bad(400, ErrorCodes.BAD_BODY, `items[${i}]: hintFor ${hint} is not a replica of partition ${item[0]}`)
        }
      }
      // A hint is kept apart from this node's data, for any partition: this node is a fallback.
      if (!hint) v.replicated(p, `items[${i}]`)
      const set = v.set(item[2], `items[${i}]`)
      if (proofs?.relayed) {
        const why = proofs.keys.checkSet(k, set, item[4], proofs.now(), proofs.maxAgeMs)
        if (why) {
          proofs.refused('bad-proof')
          throw bad(403, ErrorCodes.FORBIDDEN, `items[${i}]: ${why}`)
        }
      }
      return [p, k, set, hint] as const
    })
    // Items of one batch come from different writes: store them concurrently (per-key locks order
    // any that share a key).
    const results = await Promise.all(items.map(([p, k, s, hint]) => (hint ? hints.put(hint, p, k, s).then(() => true) : replica.store(p, k, s))))
    return { changed: results.filter(Boolean).length }
  },
  [Paths.hints]: async (body, v, _replica, { hints }) => {
    const [p, k] = v.partitionKey(body.partition, body.key, 'request')
    return { hints: await hints.forKey(p, k) }
  },
  [ReapPaths.reap]: async (body, v, _replica, { reaper }) => {
    const req = parseReapRequest(body)
    req.items.forEach(([key], i) => v.replicated(v.partitionKey(req.partition, key, `items[${i}]`)[0], `items[${i}]`))
    return reaper.handle(req)
  },
  [Paths.range]: async (body, v, replica) => {
    const p = v.partition(body.partition, 'request')
    const after = body.after
    if (after !== undefined && !(after instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, 'after must be bytes (a key)')
    const limit = body.limit
    if (typeof limit !== 'number' || !Number.isInteger(limit) || limit < 1 || limit > MAX_BATCH) throw bad(400, ErrorCodes.BAD_BODY, `limit must be an integer from 1 to ${MAX_BATCH}`)
    return replica.range(p, after, limit)
  },
}


/**
 * Replica requests made with other rings than this node's are refused, so the sender refreshes: the
 * sender's may be older, or newer (it heard of a change before this node did; gossip brings the node
 * up to date within a few rounds, and the sender retries meanwhile).
 */
const epochChecked = new Set<string>([Paths.read, Paths.coordinate, Paths.store, ReapPaths.reap])

export interface ReplicaRouteDeps {
  options: ResolvedNodeOptions
  log: Logger
  /** The replica, once the node serves. */
  replica: () => Replica | undefined
  view: () => ClusterView | undefined
  parts: () => Parts | undefined
  stopping: () => boolean
  /** In a cluster with a secret: its keys, the clock the proofs are dated with, and refusals counted. */
  signing?: { keys: ClusterKeys; now: () => number; maxAgeMs: number; refused: (reason: string) => void }
}

export function replicaRoute(deps: ReplicaRouteDeps): Route {
  const all: Record<string, Handler> = { ...handlers, ...antiEntropyHandlers }
  let validator: Validator | undefined
  const contexts = deps.signing && new ContextMacs(deps.signing.keys)
  return (req) => {
    const handler = all[req.path]
    return handler ? serve(req, handler) : undefined
  }

  async function serve(req: NodeRequest, handler: Handler): Promise<NodeReply> {
    allow(req, ['POST'])
    requireMsgpack(req)
    const view = deps.view()
    const replica = deps.replica()
    const parts = deps.parts()
    if (req.arrivedStopping ?? deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
    if (!view || !replica || !parts) throw bad(503, ErrorCodes.NOT_READY, 'this node is starting: it has not heard from enough seeds yet; retry shortly')
    const epoch = header(req, EPOCH_HEADER)
    if (epochChecked.has(req.path) && view.differs(epoch)) {
      throw bad(409, ErrorCodes.STALE_RING, `the request was made with ring ${epoch}, not this node's ${view.epoch} (one of the two has not heard of the latest change yet); refresh the ring and retry`)
    }
    if (!validator || validator.view !== view) validator = new Validator(deps.options, view, deps.options.id)
    const signing = deps.signing
    const who = req.principal ?? { kind: 'anonymous' as const }
    const proofs = signing && contexts && { ...signing, contexts, relayed: who.kind !== 'node', mayHint: mayDo(who, 'write') }
    const answer = await handler(decodeBody(req.body), validator, replica, parts, proofs, deps.log)
    // The rings may have changed while the write waited for its lock: a read or store made with the
    // old rings is then refused, so its sender does not count it (a stored set stays: a sync is
    // harmless). A coordination is not re-checked: its version is minted and the sender's stores that
    // follow are.
    const now = deps.view()
    if (req.path !== Paths.coordinate && now && now !== view && epochChecked.has(req.path) && now.differs(epoch)) {
      throw bad(409, ErrorCodes.STALE_RING, `the rings changed while the request was served (now ${now.epoch}); refresh the ring and retry`)
    }
    return msgpack(pack(answer))
  }
}
