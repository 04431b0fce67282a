// Error classes shared by the SDK and the storage node. Codes are a stable contract (tabled in the
// README); messages may change between versions. Every error carries its code on `.code`.

export const ErrorCodes = {
  INVALID_ARGUMENT: 'ZH_INVALID_ARGUMENT',
  BAD_CONTEXT: 'ZH_BAD_CONTEXT',
  KEY_TOO_LARGE: 'ZH_KEY_TOO_LARGE',
  VALUE_TOO_LARGE: 'ZH_VALUE_TOO_LARGE',
  QUORUM_NOT_MET: 'ZH_QUORUM_NOT_MET',
  ABORTED: 'ZH_ABORTED',
  NO_SEED_REACHABLE: 'ZH_NO_SEED_REACHABLE',
  CLIENT_CLOSED: 'ZH_CLIENT_CLOSED',
  MERGE_FAILED: 'ZH_MERGE_FAILED',
  BAD_BODY: 'ZH_BAD_BODY',
  BODY_TOO_LARGE: 'ZH_BODY_TOO_LARGE',
  REQUEST_TIMEOUT: 'ZH_REQUEST_TIMEOUT',
  UNKNOWN_PARTITION: 'ZH_UNKNOWN_PARTITION',
  WRONG_PARTITION: 'ZH_WRONG_PARTITION',
  METHOD_NOT_ALLOWED: 'ZH_METHOD_NOT_ALLOWED',
  UNSUPPORTED_MEDIA_TYPE: 'ZH_UNSUPPORTED_MEDIA_TYPE',
  NOT_FOUND: 'ZH_NOT_FOUND',
  /** GET /v1/kv/{key}: no live value (never written, or deleted). */
  KEY_NOT_FOUND: 'ZH_KEY_NOT_FOUND',
  NOT_READY: 'ZH_NOT_READY',
  SHUTTING_DOWN: 'ZH_SHUTTING_DOWN',
  INTERNAL: 'ZH_INTERNAL',
  /** The request was made with an older ring than the node's: refresh the ring and retry. */
  STALE_RING: 'ZH_STALE_RING',
  /** The node does not hold replicas of that partition (any more): refresh the ring and retry. */
  NOT_REPLICA: 'ZH_NOT_REPLICA',
  /** A peer runs with other --n or --partitions. */
  CLUSTER_MISMATCH: 'ZH_CLUSTER_MISMATCH',
  /** An operator request that the cluster's state does not allow (remove a live node, leave twice). */
  CONFLICT: 'ZH_CONFLICT',
  /** A request to a node got no HTTP answer: refused, timed out, cut off or aborted (TransportError). */
  TRANSPORT: 'ZH_TRANSPORT',
  /** A node answered 200 with a body that is not the protocol's answer to the request. */
  INVALID_RESPONSE: 'ZH_INVALID_RESPONSE',
  /** No credential, or a wrong one: a bearer token (clients) or a request signature (nodes). */
  UNAUTHENTICATED: 'ZH_UNAUTHENTICATED',
  /** The credential is right but its user lacks the role the request needs. */
  FORBIDDEN: 'ZH_FORBIDDEN',
  /** A plain-HTTP request to a node that serves HTTPS (426). */
  TLS_REQUIRED: 'ZH_TLS_REQUIRED',
  /** The node is at one of its connection or in-flight limits (429/503): retry later. */
  OVERLOADED: 'ZH_OVERLOADED',
} as const

export type ErrorCode = (typeof ErrorCodes)[keyof typeof ErrorCodes]

export class ZerohopError extends Error {
  readonly code: ErrorCode

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
  }

  override get name(): string {
    return this.constructor.name
  }
}

/** An option or argument is out of range or of the wrong type; the message names the fix. */
export class InvalidArgumentError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_ARGUMENT, message, options)
  }
}

/** A context string that was not produced by `get`/`put`, or was damaged in transit. */
export class BadContextError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.BAD_CONTEXT, message, options)
  }
}

export class KeyTooLargeError extends ZerohopError {
  constructor(readonly size: number, readonly limit: number) {
    super(ErrorCodes.KEY_TOO_LARGE, `key is ${size} bytes; the cluster accepts at most ${limit} (node option --max-key-bytes)`)
  }
}

export class ValueTooLargeError extends ZerohopError {
  constructor(readonly size: number, readonly limit: number) {
    super(ErrorCodes.VALUE_TOO_LARGE, `value is ${size} bytes; the cluster accepts at most ${limit} (node option --max-value-bytes)`)
  }
}

/** Why one replica did not count toward a quorum. */
export interface ReplicaFailure {
  id: string
  url: string
  /** 'timeout' | 'refused' | 'http' | 'network' | 'aborted' | 'invalid-response' */
  cause: string
  status?: number
  code?: string
  message: string
  /** False when the request certainly never reached the replica (the transport said so): it applied nothing. */
  delivered?: boolean
}

/** Fewer than R (or W) replicas answered before the deadline; `replicas` names each one's cause. */
export class QuorumError extends ZerohopError {
  constructor(
    readonly operation: 'get' | 'put' | 'delete',
    readonly required: number,
    readonly succeeded: number,
    readonly replicas: ReplicaFailure[],
  ) {
    const causes = replicas.map((r) => `${r.id}: ${r.cause}${r.status ? ` ${r.status}` : ''}`).join(', ')
    super(
      ErrorCodes.QUORUM_NOT_MET,
      `${operation} needed ${required} replica(s) but only ${succeeded} answered` + (causes ? ` (${causes})` : ''),
    )
  }
}

export class AbortError extends ZerohopError {
  constructor(options?: { cause?: unknown }) {
    super(ErrorCodes.ABORTED, 'the operation was aborted by its signal', options)
  }
}

export class NoSeedReachableError extends ZerohopError {
  constructor(readonly seeds: { url: string; message: string }[]) {
    super(
      ErrorCodes.NO_SEED_REACHABLE,
      `no seed node served a ring: ${seeds.map((s) => `${s.url} (${s.message})`).join(', ')}; check that the nodes are running and the seed URLs are right`,
    )
  }
}

export class ClientClosedError extends ZerohopError {
  constructor() {
    super(ErrorCodes.CLIENT_CLOSED, 'the client is closed; call connect() again')
  }
}

/** The application's merge function threw or returned something that is not a value. */
export class MergeError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.MERGE_FAILED, message, options)
  }
}

/** The node refused the credential (none, or a wrong token): 401. Never retried. */
export class UnauthenticatedError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.UNAUTHENTICATED, message, options)
  }
}

/** The token is valid but its user lacks the role the request needs: 403. Never retried. */
export class ForbiddenError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.FORBIDDEN, message, options)
  }
}

/** An error a node reports over HTTP: `{"error":{"code","message"}}` with a 4xx/5xx status. */
export class HttpError extends ZerohopError {
  constructor(readonly status: number, code: ErrorCode, message: string) {
    super(code, message)
  }

  toJSON(): { error: { code: string; message: string } } {
    return { error: { code: this.code, message: this.message } }
  }
}

/** How a request failed in transit. */
export type TransportErrorKind = 'refused' | 'timeout' | 'network' | 'aborted'

/**
 * A request to a node got no HTTP answer (an HTTP error status is an answer, not this). `delivered`
 * is false only when the request certainly was not written to the node — the connection was refused
 * or never established — so even a request that is not idempotent may go to another node; true means
 * the node may have received it, and applied it. The transport's own error is the `cause`.
 */
export class TransportError extends ZerohopError {
  readonly kind: TransportErrorKind
  readonly delivered: boolean

  constructor(kind: TransportErrorKind, message: string, options: { delivered: boolean; cause?: unknown }) {
    super(ErrorCodes.TRANSPORT, message, { cause: options.cause })
    this.kind = kind
    this.delivered = options.delivered
  }
}

/** A node answered 200 with a body that is not the protocol's answer to the request. */
export class InvalidResponseError extends ZerohopError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(ErrorCodes.INVALID_RESPONSE, message, options)
  }
}

/**
 * A value received over the network, printed for an error message. MessagePack may decode a 64-bit
 * integer as a BigInt, which JSON.stringify cannot print.
 */
export function show(x: unknown): string {
  try {
    return String(JSON.stringify(x))
  } catch {
    return String(x)
  }
}
