// How the SDK reaches nodes: one undici Pool per node with keep-alive (never the global fetch, which
// costs about 6x the CPU). The interface is a seam: a simulator or a test can pass its own.
import { Pool } from 'undici'
import { EPOCH_HEADER, MSGPACK } from '@zerohop/core'

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
}

export interface Transport {
  /** POST a MessagePack body. Rejects only on network errors, timeouts and aborts; HTTP errors come back as replies. */
  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply>
  get(url: string, path: string, options?: SendOptions): Promise<Reply>
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
  readonly #options: Required<UndiciTransportOptions>

  constructor(options: UndiciTransportOptions = {}) {
    this.#options = { connections: options.connections ?? 16, connectTimeoutMs: options.connectTimeoutMs ?? 1000 }
  }

  #pool(url: string): Pool {
    let pool = this.#pools.get(url)
    if (!pool) {
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
    const res = await this.#pool(url).request({
      path,
      method,
      body,
      signal: options.signal,
      headersTimeout: options.timeoutMs,
      bodyTimeout: options.timeoutMs,
      headers: body ? { 'content-type': MSGPACK } : undefined,
    })
    const bytes = Buffer.from(await res.body.arrayBuffer())
    const epoch = res.headers[EPOCH_HEADER]
    return { status: res.statusCode, epoch: typeof epoch === 'string' ? epoch : undefined, body: bytes }
  }

  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply> {
    return this.#send(url, path, 'POST', body, options)
  }

  get(url: string, path: string, options?: SendOptions): Promise<Reply> {
    return this.#send(url, path, 'GET', undefined, options)
  }

  async close(): Promise<void> {
    const pools = [...this.#pools.values()]
    this.#pools.clear()
    await Promise.all(pools.map((p) => p.destroy()))
  }
}
