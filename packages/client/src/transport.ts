// How the SDK reaches nodes: one undici Pool per node with keep-alive (never the global fetch, which
// costs about 6x the CPU). The interface is a seam: a simulator or a test can pass its own, and
// speaks the same contract (TransportError) so that nothing above it knows undici's error codes.
import { Pool } from 'undici'
import { ClientClosedError, EPOCH_HEADER, InvalidArgumentError, MSGPACK, TransportError, type TransportErrorKind } from '@zerohop/core'

export interface Reply {
  status: number
  /** Ring epoch of the node that answered, if it has a ring. */
  epoch?: string
  body: Buffer
}

export interface SendOptions {
  /** Cancels the request (the caller's signal, when there is one). */
  signal?: AbortSignal
  /** Give up on the request after this long without an answer. */
  timeoutMs?: number
  /**
   * The operation's deadline as a signal, used when the request has to wait for a connection (undici
   * starts its timeouts only once a request is sent, so a queued request would outlive its deadline).
   */
  deadline?: () => AbortSignal
  /** The sender's ring epoch: nodes refuse replica requests made with a ring older than theirs. */
  epoch?: string
  /** More headers for this request (a node's request signature). */
  headers?: Record<string, string>
}

/**
 * How requests reach nodes. The contract every implementation keeps:
 *
 * - Any HTTP answer resolves, whatever its status: an error status is a reply, not a rejection.
 * - No answer rejects with a `TransportError` whose `kind` says why (`refused`, `timeout`, `network`,
 *   `aborted`) and whose `delivered` says whether the request may have reached the node: false only
 *   when it certainly was not written (connection refused, connect timeout, the name did not resolve),
 *   which is what lets a caller send even a request that is not idempotent somewhere else.
 *   The implementation's own error is the `cause`.
 * - Anything else (a closed transport: ClientClosedError; a bad argument) rejects with its own error.
 */
export interface Transport {
  /** POST a MessagePack body. */
  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply>
  get(url: string, path: string, options?: SendOptions): Promise<Reply>
  close(): Promise<void>
}

/** How an https:// node's certificate is verified, and the certificate this side shows (mutual TLS). */
export interface TransportTls {
  /** PEM CA certificate(s) that sign the nodes' certificates; default: the system's CAs. */
  ca?: string | Buffer
  /** PEM client certificate, presented when a node asks for one (node to node). */
  cert?: string | Buffer
  /** PEM private key of `cert`. */
  key?: string | Buffer
}

export interface UndiciTransportOptions {
  /** Connections per node. */
  connections?: number
  /** Time to establish a TCP connection. */
  connectTimeoutMs?: number
  /** Headers sent with every request (the SDK's `authorization: Bearer TOKEN`). */
  headers?: Record<string, string>
  /** For https:// nodes. */
  tls?: TransportTls
}

const isPem = (v: unknown) => typeof v === 'string' || Buffer.isBuffer(v)

/** Validated TLS options of a transport; `what` names the option in messages (tls, or the SDK's tls). */
export function checkTransportTls(tls: unknown, what = 'tls'): TransportTls | undefined {
  if (tls === undefined) return undefined
  if (tls === null || typeof tls !== 'object') throw new InvalidArgumentError(`${what} must be an object such as { ca: fs.readFileSync('ca.pem') }`)
  const t = tls as Record<string, unknown>
  for (const k of Object.keys(t)) if (k !== 'ca' && k !== 'cert' && k !== 'key') throw new InvalidArgumentError(`${what} takes ca, cert and key; got ${k}`)
  for (const k of ['ca', 'cert', 'key'] as const) {
    if (t[k] !== undefined && !isPem(t[k])) throw new InvalidArgumentError(`${what}.${k} must be a PEM string or a Buffer, got ${t[k] === null ? 'null' : typeof t[k]}`)
  }
  if ((t.cert === undefined) !== (t.key === undefined)) throw new InvalidArgumentError(`${what}.cert and ${what}.key go together: a client certificate needs its key`)
  return { ca: t.ca as TransportTls['ca'], cert: t.cert as TransportTls['cert'], key: t.key as TransportTls['key'] }
}

const MSGPACK_HEADERS = { 'content-type': MSGPACK }

export class UndiciTransport implements Transport {
  readonly #pools = new Map<string, Pool>()
  readonly #inFlight = new Map<string, number>()
  readonly #options: Required<Omit<UndiciTransportOptions, 'tls'>> & { tls: TransportTls | undefined }
  readonly #postHeaders: Record<string, string>
  readonly #getHeaders: Record<string, string> | undefined
  #closed = false

  constructor(options: UndiciTransportOptions = {}) {
    this.#options = { connections: options.connections ?? 16, connectTimeoutMs: options.connectTimeoutMs ?? 1000, headers: options.headers ?? {}, tls: checkTransportTls(options.tls) }
    this.#postHeaders = { ...MSGPACK_HEADERS, ...this.#options.headers }
    this.#getHeaders = options.headers && Object.keys(options.headers).length > 0 ? options.headers : undefined
  }

  #pool(url: string): Pool {
    let pool = this.#pools.get(url)
    if (!pool) {
      if (this.#closed) throw new ClientClosedError()
      pool = new Pool(url, {
        connections: this.#options.connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        // The TLS options matter only to https:// URLs (undici ignores them over plain HTTP).
        connect: { timeout: this.#options.connectTimeoutMs, ...this.#options.tls },
      })
      this.#pools.set(url, pool)
    }
    return pool
  }

  // Deadlines travel as undici's own timeouts, not as an AbortSignal per request: a signal costs tens
  // of microseconds per request in listener bookkeeping, a third of a quorum read's client CPU.
  async #send(url: string, method: 'GET' | 'POST', path: string, headers: Record<string, string> | undefined, body: Uint8Array | undefined, options: SendOptions = {}): Promise<Reply> {
    const pool = this.#pool(url)
    const busy = this.#inFlight.get(url) ?? 0
    let signal = options.signal
    if (options.deadline && busy >= this.#options.connections) {
      const deadline = options.deadline()
      signal = signal ? AbortSignal.any([signal, deadline]) : deadline
    }
    this.#inFlight.set(url, busy + 1)
    try {
      const res = await pool.request({ path, method, body, signal, headersTimeout: options.timeoutMs, bodyTimeout: options.timeoutMs, headers })
      const bytes = Buffer.from(await res.body.arrayBuffer())
      const epoch = res.headers[EPOCH_HEADER]
      return { status: res.statusCode, epoch: typeof epoch === 'string' ? epoch : undefined, body: bytes }
    } catch (err) {
      throw transportError(err, `${method} ${url}${path}`, signal)
    } finally {
      this.#inFlight.set(url, (this.#inFlight.get(url) ?? 1) - 1)
    }
  }

  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply> {
    let headers = this.#postHeaders
    if (options?.epoch || options?.headers) headers = { ...headers, ...options.headers, ...(options.epoch ? { [EPOCH_HEADER]: options.epoch } : {}) }
    return this.#send(url, 'POST', path, headers, body, options)
  }

  get(url: string, path: string, options?: SendOptions): Promise<Reply> {
    const headers = options?.headers ? { ...this.#getHeaders, ...options.headers } : this.#getHeaders
    return this.#send(url, 'GET', path, headers, undefined, options)
  }

  async close(): Promise<void> {
    this.#closed = true
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((p) => p.destroy()))
  }
}

/** Socket and undici codes of errors raised before the request was written: it never reached the node. */
const NOT_WRITTEN: Record<string, TransportErrorKind> = {
  ECONNREFUSED: 'refused',
  UND_ERR_CONNECT_TIMEOUT: 'timeout',
  // The name did not resolve: no connection was attempted.
  ENOTFOUND: 'network',
  EAI_AGAIN: 'network',
}

/** The node's certificate was not accepted: the handshake failed before the request was written. */
const CERTIFICATE = new Set([
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
])

const TIMEOUTS = new Set(['UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT'])

/** undici's errors that say the request itself was wrong (a bug here), not that the network failed. */
const MISUSE = new Set(['UND_ERR_INVALID_ARG', 'UND_ERR_INVALID_RETURN_VALUE', 'UND_ERR_NOT_SUPPORTED'])

/**
 * undici's rejection as the Transport contract's TransportError (see Transport). An abort rejects
 * with the signal's reason, whatever it is, so an abort is known by the signal, not by the error.
 */
export function transportError(err: unknown, what: string, signal?: AbortSignal): unknown {
  if (err instanceof TransportError) return err
  const e = err as { code?: unknown; name?: unknown; message?: unknown } | undefined
  const code = typeof e?.code === 'string' ? e.code : undefined
  if ((signal?.aborted && err === signal.reason) || code === 'UND_ERR_ABORTED' || code === 'UND_ERR_ABORT' || e?.name === 'AbortError') {
    const timeout = e?.name === 'TimeoutError'
    return new TransportError(timeout ? 'timeout' : 'aborted', `${what}: ${timeout ? 'deadline passed' : 'aborted'}`, { delivered: true, cause: err })
  }
  if (code === undefined || MISUSE.has(code)) return err
  const notWritten = NOT_WRITTEN[code]
  if (notWritten) return new TransportError(notWritten, `${what}: ${describe(code, e)}`, { delivered: false, cause: err })
  if (CERTIFICATE.has(code)) return new TransportError('network', `${what}: the node's TLS certificate was not accepted: ${describe(code, e)}; give the CA that signed it (the SDK's tls: { ca }, the CLI's --ca)`, { delivered: false, cause: err })
  return new TransportError(TIMEOUTS.has(code) ? 'timeout' : 'network', `${what}: ${describe(code, e)}`, { delivered: true, cause: err })
}

function describe(code: string, e: { message?: unknown } | undefined): string {
  const message = typeof e?.message === 'string' && e.message ? e.message : 'failed'
  return message.includes(code) ? message : `${message} (${code})`
}
