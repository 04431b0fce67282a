// The public key-value API (curl and any language; Riak's HTTP API is the model). Any node takes a
// request for any key and coordinates it with the SDK's own engine: the same quorums, contexts,
// sloppy quorum with hints, read repair and deadlines as a zero-hop client.
import {
  ApiPaths,
  CONFLICT_HEADER,
  CONTEXT_HEADER,
  ErrorCodes,
  InvalidArgumentError,
  percentDecode,
  type InspectBody,
  type SiblingsBody,
} from '@zerohop/core'
import type { Engine } from '@zerohop/client'
import { allow, bad, header, json, type NodeReply, type NodeRequest, type Route } from './request.js'

export interface KvRouteDeps {
  /** The engine, once the node serves. */
  engine: () => Engine | undefined
  stopping: () => boolean
  /** Random bytes (multipart boundaries). */
  random: (bytes: number) => Uint8Array
}

const GET_PARAMS = ['r', 'timeout']
const PUT_PARAMS = ['w', 'strict', 'timeout', 'returnbody']

export function kvRoute(deps: KvRouteDeps): Route {
  return (req) => {
    if (req.path.startsWith(ApiPaths.kv)) return kv(req)
    if (req.path.startsWith(ApiPaths.inspect)) return inspect(req)
    return undefined
  }

  function engineFor(req: NodeRequest): Engine {
    const engine = deps.engine()
    if (req.arrivedStopping ?? deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
    if (!engine) throw bad(503, ErrorCodes.NOT_READY, 'this node has not heard from every seed yet; retry shortly')
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

  async function inspect(req: NodeRequest): Promise<NodeReply> {
    allow(req, ['GET'])
    const key = keyOf(req, ApiPaths.inspect)
    params(req, ['timeout'])
    const found = await engineFor(req).inspect(key, { timeoutMs: int(req, 'timeout') })
    const body: InspectBody = { ...found, replicas: found.replicas.map((r) => ({ ...r, siblings: r.siblings.map(base64) })) }
    return json(200, body)
  }

  /** Siblings as multipart/mixed, one part per value (Riak's `Accept: multipart/mixed` answer). */
  function multipart(values: Uint8Array[], headers: Record<string, string>): NodeReply {
    const boundary = Buffer.from(deps.random(12)).toString('hex')
    const parts: Buffer[] = []
    for (const v of values) parts.push(Buffer.from(`--${boundary}\r\ncontent-type: application/octet-stream\r\n\r\n`), Buffer.from(v), Buffer.from('\r\n'))
    parts.push(Buffer.from(`--${boundary}--\r\n`))
    return { status: 300, headers: { 'content-type': `multipart/mixed; boundary=${boundary}`, ...headers }, body: Buffer.concat(parts) }
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
