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
  unpack,
  type CoordinateRequest,
  type ErrorCode,
  type Ring,
  type VersionVector,
} from '@zerohop/core'
import type { Logger } from 'pino'
import type { Replica } from './replica.js'
import type { ResolvedNodeOptions } from './config.js'

export interface HttpDeps {
  options: ResolvedNodeOptions
  log: Logger
  replica: () => Replica | undefined
  ring: () => Ring | undefined
  health: () => object
  stopping: () => boolean
}

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
  constructor(readonly options: ResolvedNodeOptions, readonly ring: Ring) {}

  partitionKey(p: unknown, k: unknown, where: string): [number, Uint8Array] {
    if (!(k instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, `${where}: key must be bytes`)
    if (k.byteLength === 0) throw bad(400, ErrorCodes.BAD_BODY, `${where}: key must not be empty`)
    if (k.byteLength > this.options.maxKeyBytes) {
      throw bad(400, ErrorCodes.KEY_TOO_LARGE, `${where}: key is ${k.byteLength} bytes; the limit is ${this.options.maxKeyBytes} (--max-key-bytes)`)
    }
    if (typeof p !== 'number' || !Number.isInteger(p) || p < 0 || p >= this.ring.partitions) {
      throw bad(400, ErrorCodes.UNKNOWN_PARTITION, `${where}: partition ${JSON.stringify(p)} does not exist; this ring has partitions 0..${this.ring.partitions - 1}`)
    }
    const expected = this.ring.partitionOf(k)
    if (p !== expected) throw bad(400, ErrorCodes.WRONG_PARTITION, `${where}: key belongs to partition ${expected}, not ${p}`)
    return [p, k]
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

type Handler = (body: Record<string, unknown>, v: Validator, replica: Replica) => Promise<unknown>

const replicaRoutes: Record<string, Handler> = {
  [Paths.read]: async (body, v, replica) => {
    const keys = v.batch(body.keys, 'keys').map((item, i) => {
      if (!Array.isArray(item) || item.length !== 2) throw bad(400, ErrorCodes.BAD_BODY, `keys[${i}] must be [partition, key]`)
      return v.partitionKey(item[0], item[1], `keys[${i}]`)
    })
    return { sets: await replica.read(keys) }
  },
  [Paths.coordinate]: async (body, v, replica) => {
    const req = body as Partial<CoordinateRequest>
    const [p, k] = v.partitionKey(req.partition, req.key, 'request')
    const context = req.context ?? []
    if (!checkVector(context)) throw bad(400, ErrorCodes.BAD_BODY, 'context must be a version vector [[actor, counter], ...]')
    const value = v.value(req.value)
    return { set: await replica.coordinate(p, k, context as VersionVector, value) }
  },
  [Paths.store]: async (body, v, replica) => {
    const items = v.batch(body.items, 'items').map((item, i) => {
      if (!Array.isArray(item) || item.length !== 3) throw bad(400, ErrorCodes.BAD_BODY, `items[${i}] must be [partition, key, set]`)
      const [p, k] = v.partitionKey(item[0], item[1], `items[${i}]`)
      return [p, k, v.set(item[2], `items[${i}]`)] as const
    })
    // Items of one batch come from different writes: store them concurrently (per-key locks order
    // any that share a key).
    const results = await Promise.all(items.map(([p, k, s]) => replica.store(p, k, s)))
    return { changed: results.filter(Boolean).length }
  },
}

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
    const ring = deps.ring()
    if (ring) res.setHeader(EPOCH_HEADER, ring.epoch)
    const path = (req.url ?? '/').split('?')[0]

    if (path === Paths.health || path === Paths.ring) {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD')
        throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes GET`)
      }
      if (path === Paths.health) return sendJson(res, deps.stopping() ? 503 : 200, deps.health())
      if (!ring) throw bad(503, ErrorCodes.NOT_READY, 'this node has not heard from every seed yet; retry shortly')
      return sendJson(res, 200, { ...ring.toJSON(), limits: { maxKeyBytes: options.maxKeyBytes, maxValueBytes: options.maxValueBytes, maxBodyBytes: options.maxBodyBytes } })
    }

    const handler = replicaRoutes[path]
    if (!handler) throw bad(404, ErrorCodes.NOT_FOUND, `no endpoint ${path}; see the README for the node's HTTP API`)
    if (req.method !== 'POST') {
      res.setHeader('allow', 'POST')
      throw bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${path} takes POST`)
    }
    const type = (req.headers['content-type'] ?? '').split(';')[0].trim().toLowerCase()
    if (type !== MSGPACK) throw bad(415, ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `${path} takes content-type ${MSGPACK}, got ${type || 'none'}`)
    const replica = deps.replica()
    if (deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
    if (!ring || !replica) throw bad(503, ErrorCodes.NOT_READY, 'this node has not heard from every seed yet; retry shortly')
    if (!validator || validator.ring !== ring) validator = new Validator(options, ring)
    const body = decodeBody(await readBody(req, options.maxBodyBytes))
    const out = pack(await handler(body, validator, replica))
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
