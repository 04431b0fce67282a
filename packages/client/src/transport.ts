// How the SDK reaches nodes: one undici Pool per node with keep-alive (never the global fetch, which
// costs about 6x the CPU). The interface is a seam: a simulator or a test can pass its own.
import { Pool } from 'undici'
import { ClientClosedError, EPOCH_HEADER, MSGPACK } from '@zerohop/core'

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
}

/** A request of the public HTTP API (load-balancer routing). */
export interface ApiRequest {
  method: 'GET' | 'PUT' | 'DELETE'
  /** Path and query, percent-encoded. */
  path: string
  headers?: Record<string, string>
  body?: Uint8Array
}

export interface ApiReply extends Reply {
  headers: Record<string, string | string[] | undefined>
}

export interface Transport {
  /** POST a MessagePack body. Rejects only on network errors, timeouts and aborts; HTTP errors come back as replies. */
  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply>
  get(url: string, path: string, options?: SendOptions): Promise<Reply>
  /** Any request of the public HTTP API, with its headers; needed only for routing 'load-balancer'. */
  request?(url: string, req: ApiRequest, options?: SendOptions): Promise<ApiReply>
  close(): Promise<void>
}

export interface UndiciTransportOptions {
  /** Connections per node. */
  connections?: number
  /** Time to establish a TCP connection. */
  connectTimeoutMs?: number
}

export class UndiciTransport implements Transport {
  readonly #pools = new Map<string, Pool>()
  readonly #inFlight = new Map<string, number>()
  readonly #options: Required<UndiciTransportOptions>
  #closed = false

  constructor(options: UndiciTransportOptions = {}) {
    this.#options = { connections: options.connections ?? 16, connectTimeoutMs: options.connectTimeoutMs ?? 1000 }
  }

  #pool(url: string): Pool {
    let pool = this.#pools.get(url)
    if (!pool) {
      if (this.#closed) throw new ClientClosedError()
      pool = new Pool(url, {
        connections: this.#options.connections,
        pipelining: 1,
        keepAliveTimeout: 30_000,
        connect: { timeout: this.#options.connectTimeoutMs },
      })
      this.#pools.set(url, pool)
    }
    return pool
  }

  // Deadlines travel as undici's own timeouts, not as an AbortSignal per request: a signal costs tens
  // of microseconds per request in listener bookkeeping, a third of a quorum read's client CPU.
  async #send(url: string, path: string, method: 'GET' | 'POST', body: Uint8Array | undefined, options: SendOptions = {}): Promise<Reply> {
    const pool = this.#pool(url)
    const busy = this.#inFlight.get(url) ?? 0
    let signal = options.signal
    if (options.deadline && busy >= this.#options.connections) {
      const deadline = options.deadline()
      signal = signal ? AbortSignal.any([signal, deadline]) : deadline
    }
    this.#inFlight.set(url, busy + 1)
    try {
      const res = await pool.request({
        path,
        method,
        body,
        signal,
        headersTimeout: options.timeoutMs,
        bodyTimeout: options.timeoutMs,
        headers: body ? (options.epoch ? { 'content-type': MSGPACK, [EPOCH_HEADER]: options.epoch } : { 'content-type': MSGPACK }) : undefined,
      })
      const bytes = Buffer.from(await res.body.arrayBuffer())
      const epoch = res.headers[EPOCH_HEADER]
      return { status: res.statusCode, epoch: typeof epoch === 'string' ? epoch : undefined, body: bytes }
    } finally {
      this.#inFlight.set(url, (this.#inFlight.get(url) ?? 1) - 1)
    }
  }

  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply> {
    return this.#send(url, path, 'POST', body, options)
  }

  async request(url: string, req: ApiRequest, options: SendOptions = {}): Promise<ApiReply> {
    const res = await this.#pool(url).request({
      path: req.path,
      method: req.method,
      body: req.body,
      headers: req.headers,
      signal: options.signal,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
    })
    const body = Buffer.from(await res.body.arrayBuffer())
    const epoch = res.headers[EPOCH_HEADER]
    return { status: res.statusCode, epoch: typeof epoch === 'string' ? epoch : undefined, body, headers: res.headers }
  }

  get(url: string, path: string, options?: SendOptions): Promise<Reply> {
    return this.#send(url, path, 'GET', undefined, options)
  }

  async close(): Promise<void> {
    this.#closed = true
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((p) => p.destroy()))
  }
}
