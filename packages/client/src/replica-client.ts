// The one client of the replica protocol (core's wire.ts): every request a node or an SDK sends to a
// node is framed, sent and its answer decoded and checked here, and every error body is parsed by
// `replyError`. An error status rejects with HttpError (the node's status and code), a 200 whose body
// is not the answer asked for with InvalidResponseError, no answer with the transport's TransportError.
import {
  ErrorCodes,
  HASH_BYTES,
  MAC_BYTES,
  SET_PROOF_BYTES,
  HttpError,
  InvalidArgumentError,
  InvalidResponseError,
  Paths,
  pack,
  parseGossipMessage,
  parseMembers,
  unpack,
  type CoordinateBatchRequest,
  type CoordinateBatchResponse,
  type CoordinateItemError,
  type CoordinateRequest,
  type CoordinateResponse,
  type ErrorCode,
  type GossipMessage,
  type KeysRequest,
  type KeysResponse,
  type HintsRequest,
  type HintsResponse,
  type RangeRequest,
  type RangeResponse,
  type ReadRequest,
  type ReadResponse,
  type ReapRequest,
  type ReapResponse,
  type RingResponse,
  type RootsRequest,
  type RootsResponse,
  type StoreRequest,
  type StoreResponse,
  type TreeRequest,
  type TreeResponse,
} from '@zerohop/core'
import type { Reply, SendOptions, Transport } from './transport.js'

/** What a node said in an answer with an error status. */
export interface ReplyErrorBody {
  status: number
  /** The node's error code, when the body is the protocol's `{"error":{"code","message"}}`. */
  code?: string
  message: string
}

/**
 * The error an answer with an error status carries: the node's `{"error":{"code","message"}}`, or,
 * for a body that is not that (a proxy, another server on that port), `HTTP <status>` and the start
 * of the body when it is text.
 */
export function replyError(reply: { status: number; body: Uint8Array }): ReplyErrorBody {
  const text = Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength).toString('utf8')
  try {
    const error = (JSON.parse(text) as { error?: { code?: unknown; message?: unknown } } | null)?.error
    if (error && typeof error.code === 'string') {
      return { status: reply.status, code: error.code, message: typeof error.message === 'string' && error.message ? error.message : `HTTP ${reply.status}` }
    }
  } catch {
    // Not JSON: described below.
  }
  const start = text.slice(0, 120).replace(/\s+/g, ' ').trim()
  const printable = start !== '' && !/[\u0000-\u0008\u000e-\u001f\ufffd]/.test(start)
  return { status: reply.status, message: printable ? `HTTP ${reply.status}: ${start}` : `HTTP ${reply.status}` }
}

/**
 * An answer with an error status as the error to throw. The node's code is kept as sent (one of a
 * newer version may not be in ErrorCodes); a body without one counts as ZH_INTERNAL.
 */
export function replyHttpError(url: string, path: string, reply: { status: number; body: Uint8Array }): HttpError {
  const { status, code, message } = replyError(reply)
  // Without a code, the message is `HTTP <status>...` already.
  return new HttpError(status, (code ?? ErrorCodes.INTERNAL) as ErrorCode, `${path} on ${url} answered ${code === undefined ? message : `${status}: ${message}`}`)
}

/**
 * How one request is framed: where it goes, its body, and its answer decoded, or why it is unusable
 * (a phrase that follows the node's name: `answered /v1/ae/roots with ...`).
 */
export interface Frame<Req, Res> {
  path: string
  encode(req: Req): Uint8Array
  decode(body: Uint8Array, req: Req): Res | string
}

type Fields = Record<string, unknown>

/** A MessagePack map that `check` finds sound, or why the body is unusable. */
function decodeMap<T>(body: Uint8Array, what: string, check: (x: Fields) => string | undefined): T | string {
  let x: unknown
  try {
    x = unpack(body)
  } catch {
    return `answered ${what} with a malformed body`
  }
  if (x === null || typeof x !== 'object' || Array.isArray(x)) return `answered ${what} with a malformed body`
  return check(x as Fields) ?? (x as T)
}

const isBytes = (x: unknown, length?: number): x is Uint8Array => x instanceof Uint8Array && (length === undefined ? x.byteLength > 0 : x.byteLength === length)
const isHash = (x: unknown) => isBytes(x, HASH_BYTES)

/** Why a coordination's answer is unusable, or undefined. */
function coordinateFault(x: Fields): string | undefined {
  if (!(x.set instanceof Uint8Array)) return 'answered a coordinate without a set'
  const ok = (x.proof === undefined || isBytes(x.proof, SET_PROOF_BYTES)) && (x.context === undefined || isBytes(x.context, MAC_BYTES))
  return ok ? undefined : 'answered a coordinate with a malformed proof'
}

/** One entry per item asked, each passing `ok`; else why not. */
function perItem(x: unknown, count: number, ok: (v: unknown) => boolean, what: string, item: string): string | undefined {
  return Array.isArray(x) && x.length === count && x.every(ok) ? undefined : `answered ${what} with something other than ${count} ${item}`
}

/** A read answer for `count` keys (the SDK's batched reads decode with this too). */
export function readAnswer(body: Uint8Array, count: number): ReadResponse | string {
  return decodeMap<ReadResponse>(body, 'a read', (x) => {
    if (!Array.isArray(x.sets) || x.sets.length !== count) return `answered a read of ${count} keys with ${Array.isArray(x.sets) ? x.sets.length : 'no'} sets`
    if (!x.sets.every((s) => s === null || s instanceof Uint8Array)) return 'answered a read with something that is not a set'
    const sets = x.sets as (Uint8Array | null)[]
    // One per set, where there is a set.
    const matches = (list: unknown, length: number) => list === undefined || (Array.isArray(list) && list.length === count && list.every((p, i) => (p === null ? sets[i] === null : sets[i] !== null && isBytes(p, length))))
    if (!matches(x.contexts, MAC_BYTES)) return 'answered a read with context MACs that do not match its sets'
    if (!matches(x.proofs, SET_PROOF_BYTES)) return 'answered a read with proofs that do not match its sets'
    return undefined
  })
}

/** A store answer (the SDK's batched stores decode with this too). */
export function storeAnswer(body: Uint8Array): StoreResponse | string {
  return decodeMap<StoreResponse>(body, 'a store', (x) => (typeof x.changed === 'number' ? undefined : 'answered a store without the count of changes'))
}

/** A gossip answer, rebuilt field by field (parseGossipMessage): unknown fields of a peer's entries are dropped. */
export function gossipAnswer(body: Uint8Array): GossipMessage | string {
  const x = decodeMap<Fields>(body, Paths.gossip, () => undefined)
  if (typeof x === 'string') return x
  const m = parseGossipMessage(x)
  return typeof m === 'string' ? `answered ${Paths.gossip} with something that is not a gossip message: ${m}` : m
}

function frame<Req, Res>(path: string, decode: (body: Uint8Array, req: Req) => Res | string): Frame<Req, Res> {
  return { path, encode: (req) => pack(req), decode }
}

/** The replica protocol's requests (bodies and answers: core's wire.ts), each with its answer's checks. */
export const frames = {
  read: frame<ReadRequest, ReadResponse>(Paths.read, (body, req) => readAnswer(body, req.keys.length)),
  store: frame<StoreRequest, StoreResponse>(Paths.store, (body) => storeAnswer(body)),
  coordinate: frame<CoordinateRequest, CoordinateResponse>(Paths.coordinate, (body) =>
    decodeMap(body, 'a coordinate', coordinateFault),
  ),
  coordinateBatch: frame<CoordinateBatchRequest, CoordinateBatchResponse>(Paths.coordinate, (body, req) =>
    decodeMap(body, 'a coordinate', (x) => {
      const count = req.items.length
      if (!Array.isArray(x.results) || x.results.length !== count) return `answered ${count} coordinations with ${Array.isArray(x.results) ? x.results.length : 'no'} results`
      for (const r of x.results as unknown[]) {
        if (r === null || typeof r !== 'object') return 'answered a coordination with something that is not a result'
        const e = (r as CoordinateItemError).error
        if (e !== undefined) {
          if (typeof e !== 'object' || e === null || typeof e.status !== 'number' || typeof e.code !== 'string' || typeof e.message !== 'string') return 'answered a coordination with a malformed error'
          continue
        }
        const why = coordinateFault(r as Fields)
        if (why) return why
      }
      return undefined
    }),
  ),
  hints: frame<HintsRequest, HintsResponse>(Paths.hints, (body) =>
    decodeMap(body, Paths.hints, (x) => {
      if (!Array.isArray(x.hints)) return `answered ${Paths.hints} without hints`
      return x.hints.every((h) => Array.isArray(h) && h.length === 2 && typeof h[0] === 'string' && h[1] instanceof Uint8Array) ? undefined : `answered ${Paths.hints} with a hint that is not [target, set]`
    }),
  ),
  range: frame<RangeRequest, RangeResponse>(Paths.range, (body) =>
    decodeMap(body, Paths.range, (x) => {
      if (!Array.isArray(x.items) || typeof x.more !== 'boolean') return `answered ${Paths.range} without items and more`
      return x.items.every((it) => Array.isArray(it) && it.length === 2 && isBytes(it[0]) && it[1] instanceof Uint8Array) ? undefined : `answered ${Paths.range} with an item that is not [key, set]`
    }),
  ),
  roots: frame<RootsRequest, RootsResponse>(Paths.roots, (body, req) =>
    decodeMap(body, Paths.roots, (x) => perItem(x.roots, req.partitions.length, isHash, Paths.roots, `roots of ${HASH_BYTES} bytes`)),
  ),
  tree: frame<TreeRequest, TreeResponse>(Paths.tree, (body, req) =>
    decodeMap(body, Paths.tree, (x) => perItem(x.hashes, req.indices.length, isHash, Paths.tree, `hashes of ${HASH_BYTES} bytes`)),
  ),
  keys: frame<KeysRequest, KeysResponse>(Paths.keys, (body) =>
    decodeMap(body, Paths.keys, (x) => {
      if (!Array.isArray(x.keys)) return `answered ${Paths.keys} without keys`
      return x.keys.every((it) => Array.isArray(it) && isBytes(it[0]) && isHash(it[1])) ? undefined : `answered ${Paths.keys} with an item that is not [key, ${HASH_BYTES}-byte digest]`
    }),
  ),
  reap: frame<ReapRequest, ReapResponse>(Paths.reap, (body, req) =>
    decodeMap(body, Paths.reap, (x) => perItem(x.ok, req.items.length, (v) => typeof v === 'boolean', Paths.reap, 'booleans')),
  ),
  gossip: frame<GossipMessage, GossipMessage>(Paths.gossip, (body) => gossipAnswer(body)),
} as const

/** GET /v1/ring's JSON. */
export function ringAnswer(body: Uint8Array): RingResponse | string {
  let d: RingResponse
  try {
    d = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString('utf8')) as RingResponse
  } catch {
    return `answered ${Paths.ring} with something other than JSON`
  }
  if (!Array.isArray(d?.members) || typeof d.partitions !== 'number' || typeof d.n !== 'number') return `answered ${Paths.ring} without members, partitions and n`
  // Entries rebuilt field by field, as gossip's are.
  const members = parseMembers(d.members)
  if (typeof members === 'string') return `answered ${Paths.ring} with a member entry that is not one: ${members}`
  return { ...d, members }
}

export interface ReplicaRequestOptions extends SendOptions {
  /** Called with every reply, whatever its status, and the request body's size (byte counters, epochs). */
  onReply?: (reply: Reply, sentBytes: number) => void
}

export interface ReplicaClientOptions {
  /** How long a request that names no `timeoutMs` waits for its answer. Default 10 000. */
  timeoutMs?: number
}

export const replicaClientDefaults = { timeoutMs: 10_000 } as const

export class ReplicaClient {
  readonly transport: Transport
  readonly #timeoutMs: number

  constructor(transport: Transport, options: ReplicaClientOptions = {}) {
    if (!transport || typeof transport.post !== 'function' || typeof transport.get !== 'function') {
      throw new InvalidArgumentError('ReplicaClient needs a Transport (an UndiciTransport, or an object with post, get and close)')
    }
    const timeoutMs = options.timeoutMs ?? replicaClientDefaults.timeoutMs
    if (!Number.isInteger(timeoutMs) || timeoutMs < 1) {
      throw new InvalidArgumentError(`ReplicaClient timeoutMs must be a positive integer (got ${String(timeoutMs)}); the default is ${replicaClientDefaults.timeoutMs}`)
    }
    this.transport = transport
    this.#timeoutMs = timeoutMs
  }

  /** The DVV sets a node holds for some keys (null where it holds nothing). */
  read(url: string, req: ReadRequest, options?: ReplicaRequestOptions): Promise<ReadResponse> {
    return this.#post(url, frames.read, req, options)
  }

  /** DVV-sync sets into a node's (idempotent); an item with `hintFor` is kept there as a hint. */
  store(url: string, req: StoreRequest, options?: ReplicaRequestOptions): Promise<StoreResponse> {
    return this.#post(url, frames.store, req, options)
  }

  /** Have a node mint a write's version. Not idempotent: never send it twice blindly. */
  coordinate(url: string, req: CoordinateRequest, options?: ReplicaRequestOptions): Promise<CoordinateResponse> {
    return this.#post(url, frames.coordinate, req, options)
  }

  /** One page of a partition's items, in key order (partition handoff). */
  range(url: string, req: RangeRequest, options?: ReplicaRequestOptions): Promise<RangeResponse> {
    return this.#post(url, frames.range, req, options)
  }

  /** Anti-entropy: the roots of some partitions' trees, in the order asked. */
  roots(url: string, req: RootsRequest, options?: ReplicaRequestOptions): Promise<RootsResponse> {
    return this.#post(url, frames.roots, req, options)
  }

  /** Anti-entropy: the hashes of some nodes of one level of a partition's tree. */
  tree(url: string, req: TreeRequest, options?: ReplicaRequestOptions): Promise<TreeResponse> {
    return this.#post(url, frames.tree, req, options)
  }

  /** Anti-entropy: the keys of some leaves, with the digest of their stored set. */
  keys(url: string, req: KeysRequest, options?: ReplicaRequestOptions): Promise<KeysResponse> {
    return this.#post(url, frames.keys, req, options)
  }

  /** Tombstone reaping: check, or delete, tombstones on a replica. */
  reap(url: string, req: ReapRequest, options?: ReplicaRequestOptions): Promise<ReapResponse> {
    return this.#post(url, frames.reap, req, options)
  }

  /** Push-pull of member entries: the node answers with everything it knows. */
  gossip(url: string, message: GossipMessage, options?: ReplicaRequestOptions): Promise<GossipMessage> {
    return this.#post(url, frames.gossip, message, options)
  }

  /** The node's ring (JSON); with `wait`, held until the node's epoch differs from it. */
  async ring(url: string, options: ReplicaRequestOptions & { wait?: string } = {}): Promise<RingResponse> {
    const path = options.wait === undefined ? Paths.ring : `${Paths.ring}?wait=${encodeURIComponent(options.wait)}`
    const reply = await this.transport.get(url, path, this.#send(options))
    return this.#answer(url, Paths.ring, reply, 0, options, ringAnswer)
  }

  async #post<Req, Res>(url: string, f: Frame<Req, Res>, req: Req, options: ReplicaRequestOptions = {}): Promise<Res> {
    const body = f.encode(req)
    const reply = await this.transport.post(url, f.path, body, this.#send(options))
    return this.#answer(url, f.path, reply, body.byteLength, options, (b) => f.decode(b, req))
  }

  #send(o: ReplicaRequestOptions): SendOptions {
    return { signal: o.signal, timeoutMs: o.timeoutMs ?? this.#timeoutMs, deadline: o.deadline, epoch: o.epoch }
  }

  #answer<Res>(url: string, path: string, reply: Reply, sent: number, o: ReplicaRequestOptions, decode: (body: Uint8Array) => Res | string): Res {
    o.onReply?.(reply, sent)
    if (reply.status !== 200) throw replyHttpError(url, path, reply)
    const res = decode(reply.body)
    if (typeof res === 'string') throw new InvalidResponseError(`${url} ${res}`)
    return res
  }
}
