// HTTP front of a storage node: routing, body limits, validation and the JSON error contract
// (`{"error":{"code","message"}}` with a stable code). Bad input never reaches storage.
import http from 'node:http'
import {
  EPOCH_HEADER,
  ErrorCodes,
  HttpError,
  MAX_BATCH,
  MAX_SET_COUNTER,
  MSGPACK,
  Paths,
  checkSet,
  checkVector,
  pack,
  show,
  unpack,
  type ClusterView,
  type CoordinateRequest,
  type ErrorCode,
  type MemberState,
  type Ring,
  type RingResponse,
  type VersionVector,
} from '@zerohop/core'
import type { Logger } from 'pino'
import type { Replica } from './replica.js'
import type { ResolvedNodeOptions } from './config.js'
import type { Gossip } from './gossip.js'
import type { HintStore } from './hints.js'
import { AntiEntropyPaths, type AntiEntropy } from './anti-entropy.js'
import { ReapPaths, parseReapRequest, type Reaper } from './reaper.js'

export interface HttpDeps {
  options: ResolvedNodeOptions
  log: Logger
  replica: () => Replica | undefined
  /** The membership view, once the node serves. */
  view: () => ClusterView | undefined
  gossip: () => Gossip | undefined
  hints: () => HintStore | undefined
  antiEntropy: () => AntiEntropy | undefined
  reaper: () => Reaper | undefined
  metrics: () => Promise<{ contentType: string; text: string }>
  health: () => object
  stopping: () => boolean
  leave: () => MemberState
  remove: (id: string) => MemberState
  /** Resolves at the next change of the membership, when the node stops, or after `ms`. */
  nextChange: (ms: number) => Promise<void>
}

/** Longest a `GET /v1/ring?wait=EPOCH` is held open. */
export const RING_WAIT_MS = 20_000

const bad = (status: number, code: ErrorCode, message: string) => new HttpError(status, code, message)

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > limit) {
      reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body of ${declared} bytes is over the limit of ${limit} (--max-body-bytes)`))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body is over the limit of ${limit} bytes (--max-body-bytes)`))
        req.pause()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)))
    req.on('error', reject)
    req.on('aborted', () => reject(bad(400, ErrorCodes.BAD_BODY, 'request body was cut off')))
  })
}

function decodeBody(body: Buffer): Record<string, unknown> {
  let x: unknown
  try {
    x = unpack(body)
  } catch {
    throw bad(400, ErrorCodes.BAD_BODY, 'request body is not valid MessagePack (malformed or truncated)')
  }
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(400, ErrorCodes.BAD_BODY, 'request body must be a MessagePack map')
  return x as Record<string, unknown>
}

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

interface Parts {
  hints: HintStore
  antiEntropy: AntiEntropy
  reaper: Reaper
}

type Handler = (body: Record<string, unknown>, v: Validator, replica: Replica, parts: Parts) => Promise<unknown>

const replicaRoutes: Record<string, Handler> = {
  // Gossip is answered before the replica checks (a node gossips before it serves); listed here so
  // the method and content-type checks apply to it too.
  [Paths.gossip]: async () => undefined,
  [Paths.read]: async (body, v, replica) => {
    const keys = v.batch(body.keys, 'keys').map((item, i) => {
      if (!Array.isArray(item) || item.length !== 2) throw bad(400, ErrorCodes.BAD_BODY, `keys[${i}] must be [partition, key]`)
      const pk = v.partitionKey(item[0], item[1], `keys[${i}]`)
      v.replicated(pk[0], `keys[${i}]`)
      return pk
    })
    return { sets: await replica.read(keys) }
  },
  [Paths.coordinate]: async (body, v, replica) => {
    const req = body as Partial<CoordinateRequest>
    const [p, k] = v.partitionKey(req.partition, req.key, 'request')
    v.replicated(p, 'request')
    const context = req.context ?? []
    if (!checkVector(context)) throw bad(400, ErrorCodes.BAD_BODY, 'context must be a version vector [[actor, counter], ...]')
    const value = v.value(req.value)
    return { set: await replica.coordinate(p, k, context as VersionVector, value) }
  },
  [AntiEntropyPaths.roots]: async (body, v, _replica, { antiEntropy }) => {
    // The handler validates the body (and reads nothing); then every partition must be one of this
    // ring's that this node replicates, so the asker never compares a partition the two do not share.
    const answer = antiEntropy.handleRoots(body)
    for (const p of body.partitions as number[]) v.replicated(v.partition(p, 'request'), 'request')
    return answer
  },
  [AntiEntropyPaths.tree]: async (body, v, _replica, { antiEntropy }) => {
    if (typeof body.partition === 'number') v.replicated(body.partition, 'request')
    return antiEntropy.handleTree(body)
  },
  [AntiEntropyPaths.keys]: async (body, v, _replica, { antiEntropy }) => {
    if (typeof body.partition === 'number') v.replicated(body.partition, 'request')
    return antiEntropy.handleKeys(body)
  },
  [Paths.store]: async (body, v, replica, { hints }) => {
    const items = v.batch(body.items, 'items').map((item, i) => {
      if (!Array.isArray(item) || item.length < 3 || item.length > 4) throw bad(400, ErrorCodes.BAD_BODY, `items[${i}] must be [partition, key, set] or [partition, key, set, hintFor]`)
      const [p, k] = v.partitionKey(item[0], item[1], `items[${i}]`)
      const hint = item.length === 4 && item[3] !== v.self ? v.hintTarget(item[3], `items[${i}]`) : undefined
      // A hint is kept apart from this node's data, for any partition: this node is a fallback.
      if (!hint) v.replicated(p, `items[${i}]`)
      return [p, k, v.set(item[2], `items[${i}]`), hint] as const
    })
    // Items of one batch come from different writes: store them concurrently (per-key locks order
    // any that share a key).
    const results = await Promise.all(items.map(([p, k, s, hint]) => (hint ? hints.put(hint, p, k, s).then(() => true) : replica.store(p, k, s))))
    return { changed: results.filter(Boolean).length }
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

/** Replica requests made with a ring older than this node's are refused, so the sender refreshes. */
const epochChecked = new Set<string>([Paths.read, Paths.coordinate, Paths.store, ReapPaths.reap])

export function createHttpServer(deps: HttpDeps): http.Server {
  const { options, log } = deps
  let validator: Validator | undefined

  // A request that started before shutdown still gets its answer, but its connection must not go back
  // to keep-alive: stop() waits for every connection to close (up to its 10 s grace period).
  function closeIfStopping(res: http.ServerResponse): void {
    if (deps.stopping()) res.setHeader('connection', 'close')
  }

  function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
    const s = JSON.stringify(body)
    closeIfStopping(res)
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) })
    res.end(s)
  }

  function sendError(res: http.ServerResponse, err: unknown): void {
    if (res.headersSent) {
      res.destroy()
      return
    }
    if (err instanceof HttpError) {
      if (err.status === 413) res.setHeader('connection', 'close')
      sendJson(res, err.status, err.toJSON())
      return
    }
    log.error({ err }, 'request failed')
    sendJson(res, 500, { error: { code: ErrorCodes.INTERNAL, message: 'internal error; see the node log' } })
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const view = deps.view()
    if (view) res.setHeader(EPOCH_HEADER, view.epoch)
    const path = (req.url ?? '/').split('?')[0]

    if (path === Paths.health || path === Paths.ring) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD')
        throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes GET`)
      }
      if (path === Paths.health) return sendJson(res, deps.stopping() ? 503 : 200, deps.health())
      const gossip = deps.gossip()
      if (!view || !gossip) throw bad(503, ErrorCodes.NOT_READY, 'this node has not heard from every seed yet; retry shortly')
      // A watch: `?wait=EPOCH` is answered once this node's epoch differs from EPOCH (or after a while),
      // so an idle SDK hears of a ring change at once.
      const wait = new URL(req.url ?? '/', 'http://x').searchParams.get('wait')
      if (wait !== null && wait === view.epoch && !deps.stopping()) {
        await deps.nextChange(RING_WAIT_MS)
        return handle(Object.assign(req, { url: Paths.ring }), res)
      }
      const ring: RingResponse = {
        epoch: view.epoch,
        partitions: view.current.partitions,
        n: view.current.n,
        spares: view.current.spares,
        members: [...view.members.values()],
        down: gossip.down(),
        limits: { maxKeyBytes: options.maxKeyBytes, maxValueBytes: options.maxValueBytes, maxBodyBytes: options.maxBodyBytes },
      }
      return sendJson(res, 200, ring)
    }

    if (path === Paths.metrics) {
      if (req.method !== 'GET') {
        res.setHeader('allow', 'GET')
        throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes GET`)
      }
      const { contentType, text } = await deps.metrics()
      closeIfStopping(res)
      res.writeHead(200, { 'content-type': contentType, 'content-length': Buffer.byteLength(text) })
      res.end(text)
      return
    }

    if (path === Paths.leave || path === Paths.remove) {
      if (req.method !== 'POST') {
        res.setHeader('allow', 'POST')
        throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes POST`)
      }
      const raw = await readBody(req, 64 * 1024)
      if (deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
      if (path === Paths.leave) return sendJson(res, 202, { member: deps.leave() })
      let body: { id?: unknown }
      try {
        body = JSON.parse(raw.toString('utf8')) as { id?: unknown }
      } catch {
        throw bad(400, ErrorCodes.BAD_BODY, 'body must be JSON: {"id":"<node id>"}')
      }
      if (typeof body?.id !== 'string' || body.id.length === 0) throw bad(400, ErrorCodes.BAD_BODY, 'body must be JSON: {"id":"<node id>"}')
      return sendJson(res, 202, { member: deps.remove(body.id) })
    }

    const handler = replicaRoutes[path]
    if (!handler) throw bad(404, ErrorCodes.NOT_FOUND, `no endpoint ${path}; see the README for the node's HTTP API`)
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST')
      throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes POST`)
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type !== MSGPACK) throw bad(415, ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `${path} takes content-type ${MSGPACK}, got ${type || 'none'}`)
    if (path === Paths.gossip) {
      const gossip = deps.gossip()
      if (!gossip || deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is not gossiping')
      const out = pack(gossip.receive(decodeBody(await readBody(req, options.maxBodyBytes))))
      res.writeHead(200, { 'content-type': MSGPACK, 'content-length': out.length })
      res.end(out)
      return
    }
    const replica = deps.replica()
    if (deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
    if (!view || !replica) throw bad(503, ErrorCodes.NOT_READY, 'this node has not heard from every seed yet; retry shortly')
    if (epochChecked.has(path) && view.differs(req.headers[EPOCH_HEADER] as string | undefined)) {
      throw bad(409, ErrorCodes.STALE_RING, `the request was made with ring ${req.headers[EPOCH_HEADER]}, older than this node's ${view.epoch}; refresh the ring and retry`)
    }
    if (!validator || validator.view !== view) validator = new Validator(options, view, options.id)
    const body = decodeBody(await readBody(req, options.maxBodyBytes))
    const answer = await handler(body, validator, replica, { hints: deps.hints()!, antiEntropy: deps.antiEntropy()!, reaper: deps.reaper()! })
    // The rings may have changed while the body arrived or the write waited for its lock: a read or
    // store made with the old rings is then refused, so its sender does not count it (a stored set
    // stays: a sync is harmless). A coordination is not re-checked: its version is minted and the
    // sender's stores that follow are.
    const now = deps.view()
    if (path !== Paths.coordinate && now && now !== view && epochChecked.has(path) && now.differs(req.headers[EPOCH_HEADER] as string | undefined)) {
      throw bad(409, ErrorCodes.STALE_RING, `the rings changed while the request was served (now ${now.epoch}); refresh the ring and retry`)
    }
    const out = pack(answer)
    closeIfStopping(res)
    res.writeHead(200, { 'content-type': MSGPACK, 'content-length': out.length })
    res.end(out)
  }

  const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, (req, res) => {
    handle(req, res).catch((err) => {
      sendError(res, err)
      // Drain what is left of a rejected body so the connection stays usable.
      if (!req.complete && !res.getHeader('connection')) req.resume()
    })
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy(err)
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    const body = JSON.stringify({ error: timeout
      ? { code: ErrorCodes.REQUEST_TIMEOUT, message: 'the request was not received in full before the request timeout' }
      : { code: ErrorCodes.BAD_BODY, message: 'malformed HTTP request' } })
    const status = timeout ? '408 Request Timeout' : '400 Bad Request'
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  })
  return server
}
