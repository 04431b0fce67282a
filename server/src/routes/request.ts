// The node's requests as plain data: every route is a function of a request to a reply, so the same
// code runs behind node:http, behind the node's own in-process path, and behind a simulated network.
import {
  ErrorCodes,
  HttpError,
  MSGPACK,
  QuorumError,
  ZerohopError,
  unpack,
  type ApiErrorBody,
  type ErrorCode,
} from '@zerohop/core'
import type { Logger } from 'pino'
import type { Principal } from '../auth.js'

export interface NodeRequest {
  method: string
  /** The path, still percent-encoded (the kv API decodes keys byte by byte). */
  path: string
  query: URLSearchParams
  /** Lower-case names, as node:http gives them. */
  headers: Readonly<Record<string, string | string[] | undefined>>
  body: Buffer
  /** Sent by this node to itself (the local path of its transport), not over HTTP. */
  local?: boolean
  /** Came in over the framed protocol (frames.ts), not HTTP: counted apart in the request metrics. */
  framed?: boolean
  /**
   * Whether the node was already stopping when the request arrived (before its body was read): one
   * that arrived earlier still gets its answer. Undefined: whether the node is stopping now.
   */
  arrivedStopping?: boolean
  /** Why the body could not be read (over the limit, cut off): the request is answered with it. */
  bodyError?: unknown
  /** Who sent it, once the request handler has admitted it (see auth.ts). */
  principal?: Principal
  /**
   * Over HTTPS with --tls-ca: whether the client presented a certificate that the CA verified (the
   * cluster's nodes do; SDK users need not). False over plain HTTP or without --tls-ca; undefined on
   * the local path.
   */
  peerCertified?: boolean
}

export interface NodeReply {
  status: number
  headers?: Record<string, string>
  body?: Uint8Array | string
}

export type RequestHandler = (req: NodeRequest) => Promise<NodeReply>

/** A route answers the requests it owns, or undefined for a path it does not know. */
export type Route = (req: NodeRequest) => Promise<NodeReply> | undefined

export const bad = (status: number, code: ErrorCode, message: string) => new HttpError(status, code, message)

export function header(req: NodeRequest, name: string): string | undefined {
  const v = req.headers[name]
  return Array.isArray(v) ? v[0] : v
}

export function json(status: number, body: unknown, headers: Record<string, string> = {}): NodeReply {
  return { status, headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(body) }
}

export function msgpack(body: Uint8Array): NodeReply {
  return { status: 200, headers: { 'content-type': MSGPACK }, body }
}

export function allow(req: NodeRequest, methods: readonly string[]): void {
  if (methods.includes(req.method)) return
  const e = bad(405, ErrorCodes.METHOD_NOT_ALLOWED, `${req.path} takes ${methods.filter((m) => m !== 'HEAD').join(', ')}`)
  throw Object.assign(e, { allow: methods.join(', ') })
}

/** Replica, gossip and batch requests are MessagePack. */
export function requireMsgpack(req: NodeRequest): void {
  const type = (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase()
  if (type !== MSGPACK) throw bad(415, ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `${req.path} takes content-type ${MSGPACK}, got ${type || 'none'}`)
}

export function decodeBody(body: Buffer): Record<string, unknown> {
  let x: unknown
  try {
    x = unpack(body)
  } catch {
    throw bad(400, ErrorCodes.BAD_BODY, 'request body is not valid MessagePack (malformed or truncated)')
  }
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(400, ErrorCodes.BAD_BODY, 'request body must be a MessagePack map')
  return x as Record<string, unknown>
}

/** The HTTP status of each error the SDK's engine raises when a node coordinates. */
const STATUS: Partial<Record<ErrorCode, number>> = {
  [ErrorCodes.INVALID_ARGUMENT]: 400,
  [ErrorCodes.BAD_CONTEXT]: 400,
  [ErrorCodes.KEY_TOO_LARGE]: 400,
  [ErrorCodes.VALUE_TOO_LARGE]: 413,
  [ErrorCodes.QUORUM_NOT_MET]: 503,
  [ErrorCodes.ABORTED]: 503,
  [ErrorCodes.UNAUTHENTICATED]: 401,
  [ErrorCodes.FORBIDDEN]: 403,
}

/** What anything a route threw says to the requester: a status and `{code, message}` (and a quorum error's details). */
export function errorOf(err: unknown, log: Logger): { status: number; error: ApiErrorBody['error']; allow?: string } {
  if (err instanceof HttpError) return { status: err.status, error: err.toJSON().error, allow: (err as { allow?: string }).allow }
  if (err instanceof ZerohopError && STATUS[err.code] !== undefined) {
    const error: ApiErrorBody['error'] = { code: err.code, message: err.message }
    if (err instanceof QuorumError) Object.assign(error, { operation: err.operation, required: err.required, succeeded: err.succeeded, replicas: err.replicas })
    return { status: STATUS[err.code]!, error }
  }
  log.error({ err }, 'request failed')
  return { status: 500, error: { code: ErrorCodes.INTERNAL, message: 'internal error; see the node log' } }
}

/** The JSON error reply `{"error":{"code","message"}}` for anything a route threw. */
export function errorReply(err: unknown, log: Logger): NodeReply {
  const { status, error, allow } = errorOf(err, log)
  return json(status, { error }, allow ? { allow } : {})
}
