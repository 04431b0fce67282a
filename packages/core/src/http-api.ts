// The public HTTP API (curl, scripts, other languages, the SDK in load-balancer mode): paths, headers,
// the percent-encoding of keys (any bytes) and the JSON shapes of siblings and explanations. Any node
// coordinates these requests with the same engine the SDK runs.
import { BadContextError, ForbiddenError, UnauthenticatedError, ErrorCodes, InvalidArgumentError, QuorumError, ZerohopError, type ErrorCode, type ReplicaFailure } from './errors.js'

export const ApiPaths = {
  /** GET, PUT, DELETE /v1/kv/{key}: the key percent-encoded. */
  kv: '/v1/kv/',
  /** GET /v1/explain/{key}: each replica's state, read directly with no repair (JSON). */
  explain: '/v1/explain/',
  /**
   * POST /v1/batch (MessagePack): several /v1/kv and /v1/explain requests in one exchange, each
   * answered exactly as it would be alone. The SDK's load-balancer routing sends concurrent calls so.
   */
  batch: '/v1/batch',
} as const

/**
 * Most requests in one batch: its reply holds every value read (up to --max-value-bytes each), so a
 * small request must not be able to make a node build a huge answer.
 */
export const MAX_API_BATCH = 64

/** One request of a batch: what it would be over HTTP. */
export interface BatchedRequest {
  method: 'GET' | 'PUT' | 'DELETE'
  /** Path and query, percent-encoded: /v1/kv/{key}?… or /v1/explain/{key}?… */
  path: string
  headers: Record<string, string>
  body: Uint8Array | null
}

/** Its answer: what it would have been over HTTP. */
export interface BatchedReply {
  status: number
  headers: Record<string, string>
  body: Uint8Array
}

export interface BatchRequest {
  requests: BatchedRequest[]
}

export interface BatchReply {
  replies: BatchedReply[]
}

/** The causal context of a read or write: pass it back with the write that follows. */
export const CONTEXT_HEADER = 'x-zerohop-context'
/** `true` on a write's answer when values concurrent with it remain (siblings). */
export const CONFLICT_HEADER = 'x-zerohop-conflict'

/** `Accept: application/json` on a read with siblings. */
export interface SiblingsBody {
  /** Each sibling's bytes, base64. */
  siblings: string[]
  context: string
}

/** GET /v1/explain/{key}: the SDK's Explanation, with every value in base64. */
export interface ExplainBody {
  epoch: string
  partition: number
  preferenceList: { id: string; url: string; role: 'primary' | 'spare'; up: boolean }[]
  replicas: {
    id: string
    url: string
    role: 'primary' | 'incoming'
    found: boolean
    tombstone: boolean
    /** Base64. */
    siblings: string[]
    digest: string | null
    error?: { id: string; url: string; cause: string; status?: number; code?: string; message: string }
  }[]
  agree: boolean
  hints: { holder: string; target: string; tombstone: boolean; /** Base64. */ siblings: string[]; digest: string }[]
  unasked: string[]
  moving: { from: string[]; to: string[]; ready: string[] } | null
}

// Unreserved characters (RFC 3986) travel as they are; every other byte as %XX.
const ESCAPED = Array.from({ length: 256 }, (_, b) => {
  const c = String.fromCharCode(b)
  return /^[A-Za-z0-9\-._~]$/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`
})

export function percentEncode(bytes: Uint8Array): string {
  let out = ''
  for (let i = 0; i < bytes.length; i++) out += ESCAPED[bytes[i]]
  return out
}

/**
 * The bytes of a percent-encoded path segment: `%XX` is one byte, anything else its UTF-8 bytes, so
 * a key need not be valid UTF-8. A `%` not followed by two hex digits is an error.
 */
export function percentDecode(s: string, what = 'key'): Uint8Array {
  // The common case: plain ASCII, nothing escaped.
  if (/^[\x21-\x24\x26-\x7e]*$/.test(s)) return Buffer.from(s, 'latin1')
  const out: number[] = []
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x25) {
      const hex = s.slice(i + 1, i + 3)
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw new InvalidArgumentError(`${what} has a bad percent-encoding at character ${i} (${JSON.stringify(s.slice(i, i + 3))}); encode each byte as %XX, e.g. with encodeURIComponent`)
      }
      out.push(parseInt(hex, 16))
      i += 2
    } else if (c < 0x80) out.push(c)
    else {
      const end = c >= 0xd800 && c <= 0xdbff ? i + 2 : i + 1
      out.push(...Buffer.from(s.slice(i, end), 'utf8'))
      i = end - 1
    }
  }
  return Uint8Array.from(out)
}

/** The JSON error body of the public API: QuorumError adds what each replica answered. */
export interface ApiErrorBody {
  error: {
    code: string
    message: string
    operation?: 'get' | 'put' | 'delete'
    required?: number
    succeeded?: number
    replicas?: ReplicaFailure[]
  }
}

/** The error of a Zerohop error body; undefined for any other body (a load balancer's own page, say). */
export function parseApiError(body: Buffer): ApiErrorBody['error'] | undefined {
  let e: ApiErrorBody['error'] | undefined
  try {
    e = (JSON.parse(body.toString('utf8')) as ApiErrorBody).error
  } catch {
    return undefined
  }
  return e && typeof e.code === 'string' && typeof e.message === 'string' ? e : undefined
}

/** The SDK's typed error for an error answer of the public API (the node's message kept). */
export function apiError(status: number, body: Buffer, operation: 'get' | 'put' | 'delete'): ZerohopError {
  const e = parseApiError(body)
  if (!e) {
    return new QuorumError(operation, 0, 0, [{ id: 'coordinator', url: '', cause: 'http', status, message: `HTTP ${status} without a Zerohop error body` }])
  }
  switch (e.code) {
    case ErrorCodes.QUORUM_NOT_MET:
      return new QuorumError(e.operation ?? operation, e.required ?? 0, e.succeeded ?? 0, Array.isArray(e.replicas) ? e.replicas : [])
    case ErrorCodes.INVALID_ARGUMENT:
      return new InvalidArgumentError(e.message)
    case ErrorCodes.BAD_CONTEXT:
      return new BadContextError(e.message)
    case ErrorCodes.UNAUTHENTICATED:
      return new UnauthenticatedError(e.message)
    case ErrorCodes.FORBIDDEN:
      return new ForbiddenError(e.message)
    default:
      return new ZerohopError(e.code as ErrorCode, e.message)
  }
}
