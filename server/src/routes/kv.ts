// The public key-value API (curl and any language; Riak's HTTP API is the model). Any node takes a
// request for any key and coordinates it with the SDK's own engine: the same quorums, contexts,
// sloppy quorum with hints, read repair and deadlines as a zero-hop client.
import {
  ApiPaths,
  CONFLICT_HEADER,
  CONTEXT_HEADER,
  ErrorCodes,
  InvalidArgumentError,
  MAX_API_BATCH,
  pack,
  percentDecode,
  type BatchedReply,
  type BatchedRequest,
  type BatchReply,
  type BatchRequest,
  type ExplainBody,
  type Random,
  type SiblingsBody,
} from '@zerohop/core'
import type { Logger } from 'pino'
import type { Engine } from '@zerohop/client'
import { allow, bad, decodeBody, errorReply, header, json, msgpack, requireMsgpack, type NodeReply, type NodeRequest, type Route } from './request.js'

export interface KvRouteDeps {
  /** The engine, once the node serves. */
  engine: () => Engine | undefined
  stopping: () => boolean
  /** Random bytes (multipart boundaries). */
  random: Random
  log: Logger
  /** Refuses (401/403) one request of a batch its sender may not make. */
  admit: (req: NodeRequest) => void
  /** Counts and times one request of a batch (started: elapsed() when it began). */
  served: (req: NodeRequest, started: number) => void
  elapsed: () => number
}

const GET_PARAMS = ['r', 'timeout']
const PUT_PARAMS = ['w', 'strict', 'timeout', 'returnbody']

export function kvRoute(deps: KvRouteDeps): Route {
  const route = (req: NodeRequest): Promise<NodeReply> | undefined => {
    if (req.path.startsWith(ApiPaths.kv)) return kv(req)
    if (req.path.startsWith(ApiPaths.explain)) return explain(req)
    if (req.path === ApiPaths.batch) return batch(req)
    return undefined
  }
  return route

  /**
   * Several kv and explain requests in one exchange: each goes through this same route, as if it
   * had come alone, and its answer (or error) is its own. They run together, so the engine's replica
   * requests for them travel together too.
   */
  async function batch(req: NodeRequest): Promise<NodeReply> {
    allow(req, ['POST'])
    requireMsgpack(req)
    engineFor(req)
    const body = decodeBody(req.body) as Partial<BatchRequest>
    const requests = body.requests
    if (!Array.isArray(requests) || requests.length === 0 || requests.length > MAX_API_BATCH) {
      throw bad(400, ErrorCodes.BAD_BODY, `requests must be an array of 1 to ${MAX_API_BATCH} requests {method, path, headers, body}`)
    }
    const replies = await Promise.all(requests.map(async (r, i): Promise<BatchedReply> => {
      let reply: NodeReply
      const started = deps.elapsed()
      let one: NodeRequest | undefined
      try {
        one = batched(r, i, req)
        deps.admit(one)
        reply = await (route(one) ?? Promise.reject(bad(400, ErrorCodes.BAD_BODY, `requests[${i}]: path must be ${ApiPaths.kv}{key} or ${ApiPaths.explain}{key}`)))
      } catch (err) {
        reply = errorReply(err, deps.log)
      }
      if (one) deps.served(one, started)
      const out = reply.body === undefined ? EMPTY : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body
      return { status: reply.status, headers: reply.headers ?? {}, body: out }
    }))
    return msgpack(pack({ replies } satisfies BatchReply))
  }

  function engineFor(req: NodeRequest): Engine {
    const engine = deps.engine()
    if (req.arrivedStopping ?? deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
    if (!engine) throw bad(503, ErrorCodes.NOT_READY, 'this node is starting: it has not heard from enough seeds yet; retry shortly')
    return engine
  }

  async function kv(req: NodeRequest): Promise<NodeReply> {
    allow(req, ['GET', 'HEAD', 'PUT', 'DELETE'])
    const key = keyOf(req, ApiPaths.kv)
    const engine = engineFor(req)
    if (req.method === 'GET' || req.method === 'HEAD') {
      params(req, GET_PARAMS)
      const read = await engine.get(key, { r: int(req, 'r'), timeoutMs: int(req, 'timeout') })
      const context = { [CONTEXT_HEADER]: read.context }
      if (!read.found) {
        const body = { error: { code: ErrorCodes.KEY_NOT_FOUND, message: 'no live value for this key (never written, or deleted)' } }
        return json(404, body, read.vector.length > 0 ? context : {})
      }
      if (read.siblings.length === 1) return { status: 200, headers: { 'content-type': 'application/octet-stream', ...context }, body: read.siblings[0] }
      if (accepts(req, 'application/json')) {
        const body: SiblingsBody = { siblings: read.siblings.map(base64), context: read.context }
        return json(300, body, context)
      }
      return multipart(read.siblings, context)
    }
    params(req, PUT_PARAMS)
    const call = { context: header(req, CONTEXT_HEADER), w: int(req, 'w'), strict: bool(req, 'strict'), timeoutMs: int(req, 'timeout') }
    const written = req.method === 'PUT' ? await engine.put(key, req.body, call) : await engine.delete(key, call)
    const headers: Record<string, string> = { [CONTEXT_HEADER]: written.context }
    if (written.conflict) headers[CONFLICT_HEADER] = 'true'
    if (bool(req, 'returnbody')) return json(200, { context: written.context, conflict: written.conflict, siblings: written.siblings.map(base64) }, headers)
    return { status: 204, headers }
  }

  async function explain(req: NodeRequest): Promise<NodeReply> {
    allow(req, ['GET'])
    const key = keyOf(req, ApiPaths.explain)
    params(req, ['timeout'])
    const found = await engineFor(req).explain(key, { timeoutMs: int(req, 'timeout') })
    const body: ExplainBody = {
      ...found,
      replicas: found.replicas.map((r) => ({ ...r, siblings: r.siblings.map(base64) })),
      hints: found.hints.map((h) => ({ ...h, siblings: h.siblings.map(base64) })),
    }
    return json(200, body)
  }

  /** Siblings as multipart/mixed, one part per value (Riak's `Accept: multipart/mixed` answer). */
  function multipart(values: Uint8Array[], headers: Record<string, string>): NodeReply {
    const boundary = Buffer.from(deps.random.bytes(12)).toString('hex')
    const parts: Buffer[] = []
    for (const v of values) parts.push(Buffer.from(`--${boundary}\r\ncontent-type: application/octet-stream\r\n\r\n`), Buffer.from(v), Buffer.from('\r\n'))
    parts.push(Buffer.from(`--${boundary}--\r\n`))
    return { status: 300, headers: { 'content-type': `multipart/mixed; boundary=${boundary}`, ...headers }, body: Buffer.concat(parts) }
  }
}

const EMPTY = Buffer.alloc(0)

/** One request of a batch as a request of its own; a batch inside a batch is refused. */
function batched(r: unknown, i: number, outer: NodeRequest): NodeRequest {
  const x = r as Partial<BatchedRequest> | null
  const where = `requests[${i}]`
  if (x === null || typeof x !== 'object') throw bad(400, ErrorCodes.BAD_BODY, `${where} must be {method, path, headers, body}`)
  if (x.method !== 'GET' && x.method !== 'PUT' && x.method !== 'DELETE') throw bad(400, ErrorCodes.BAD_BODY, `${where}: method must be GET, PUT or DELETE`)
  if (typeof x.path !== 'string' || !(x.path.startsWith(ApiPaths.kv) || x.path.startsWith(ApiPaths.explain))) {
    throw bad(400, ErrorCodes.BAD_BODY, `${where}: path must be ${ApiPaths.kv}{key} or ${ApiPaths.explain}{key}`)
  }
  const headers = x.headers ?? {}
  if (typeof headers !== 'object' || Array.isArray(headers) || !Object.values(headers).every((v) => typeof v === 'string')) {
    throw bad(400, ErrorCodes.BAD_BODY, `${where}: headers must be a map of strings`)
  }
  if (x.body !== null && x.body !== undefined && !(x.body instanceof Uint8Array)) throw bad(400, ErrorCodes.BAD_BODY, `${where}: body must be bytes or null`)
  const q = x.path.indexOf('?')
  const lower: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) lower[k.toLowerCase()] = v as string
  return {
    method: x.method,
    path: q < 0 ? x.path : x.path.slice(0, q),
    query: new URLSearchParams(q < 0 ? '' : x.path.slice(q + 1)),
    headers: lower,
    body: x.body ? Buffer.from(x.body.buffer, x.body.byteOffset, x.body.byteLength) : EMPTY,
    local: outer.local,
    arrivedStopping: outer.arrivedStopping,
    principal: outer.principal,
  }
}

function keyOf(req: NodeRequest, base: string): Uint8Array {
  const raw = req.path.slice(base.length)
  if (raw.length === 0) throw new InvalidArgumentError(`the key is missing: ${base}{key}, with the key percent-encoded`)
  return percentDecode(raw)
}

/** Unknown parameters are refused, so a misspelt one (`?wait=` for `?w=`) is not silently ignored. */
function params(req: NodeRequest, known: string[]): void {
  for (const name of req.query.keys()) {
    if (!known.includes(name)) throw new InvalidArgumentError(`unknown query parameter ${JSON.stringify(name)}; ${req.method} ${req.path.split('/').slice(0, 3).join('/')}/{key} takes ${known.join(', ')}`)
  }
}

function int(req: NodeRequest, name: string): number | undefined {
  const v = req.query.get(name)
  if (v === null) return undefined
  if (!/^[0-9]{1,9}$/.test(v)) throw new InvalidArgumentError(`${name} must be a whole number${name === 'timeout' ? ' of milliseconds' : ''}, got ${JSON.stringify(v)}`)
  return Number(v)
}

function bool(req: NodeRequest, name: string): boolean | undefined {
  const v = req.query.get(name)
  if (v === null) return undefined
  if (v !== 'true' && v !== 'false') throw new InvalidArgumentError(`${name} must be true or false, got ${JSON.stringify(v)}`)
  return v === 'true'
}

function accepts(req: NodeRequest, type: string): boolean {
  return (header(req, 'accept') ?? '').split(',').some((t) => t.split(';')[0].trim().toLowerCase() === type)
}

function base64(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('base64')
}
