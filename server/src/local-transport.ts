// A node's own requests to itself go straight to its request handler, with no HTTP exchange: when it
// coordinates a key it replicates, its own replica is one function call away. Everything else goes
// out through the transport it wraps, signed with the cluster secret when there is one.
import { EPOCH_HEADER, ErrorCodes, HttpError, MSGPACK, SIGNATURE_HEADER, type ClusterKeys } from '@zerohop/core'
import type { Reply, SendOptions, Transport } from '@zerohop/client'
import type { RequestHandler } from './routes/request.js'

/** A request as a transport sends it: `path` with its query string. */
export interface Outgoing {
  method: string
  path: string
  headers: Record<string, string>
  body?: Uint8Array
  /** From the node itself (not timed as HTTP, not checked for a signature). */
  local: boolean
}

/**
 * One request answered by a node's handler with no HTTP exchange, as the transport contract says:
 * the node's own requests to itself, and a simulator's network. The body limit is the node's.
 */
export async function invoke(handler: RequestHandler, maxBodyBytes: number, r: Outgoing): Promise<Reply> {
  const { method, path, headers, body } = r
  const [p, q] = path.split('?', 2)
  const bodyError = body && body.byteLength > maxBodyBytes ? new HttpError(413, ErrorCodes.BODY_TOO_LARGE, `request body of ${body.byteLength} bytes is over the limit of ${maxBodyBytes} (--max-body-bytes)`) : undefined
  const reply = await handler({
    bodyError, method, path: p, query: new URLSearchParams(q ?? ''), headers, body: body ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : Buffer.alloc(0), local: r.local })
  const epoch = reply.headers?.[EPOCH_HEADER]
  const out = reply.body === undefined ? Buffer.alloc(0) : typeof reply.body === 'string' ? Buffer.from(reply.body) : Buffer.from(reply.body.buffer, reply.body.byteOffset, reply.body.byteLength)
  return { status: reply.status, epoch, body: out }
}

export class LocalTransport implements Transport {
  readonly #self: string
  readonly #inner: Transport
  #handler?: RequestHandler

  readonly #maxBodyBytes: number
  readonly #signing?: { keys: ClusterKeys; now: () => number }

  /**
   * `maxBodyBytes`: the node's body limit, which its own requests must keep like anyone's. `signing`:
   * the cluster's keys, with which every request to another node is signed.
   */
  constructor(self: string, inner: Transport, maxBodyBytes: number, signing?: { keys: ClusterKeys; now: () => number }) {
    this.#self = new URL(self).origin
    this.#inner = inner
    this.#maxBodyBytes = maxBodyBytes
    this.#signing = signing
  }

  #signed(url: string, method: string, path: string, body: Uint8Array | undefined, options: SendOptions | undefined): SendOptions | undefined {
    if (!this.#signing) return options
    const signature = this.#signing.keys.signRequest(url, method, path, body, this.#signing.now())
    return { ...options, headers: { ...options?.headers, [SIGNATURE_HEADER]: signature } }
  }

  /** The node's handler, once it is built (it needs this transport first). */
  serve(handler: RequestHandler): void {
    this.#handler = handler
  }

  #local(method: string, path: string, headers: Record<string, string>, body: Uint8Array | undefined): Promise<Reply> {
    return invoke(this.#handler!, this.#maxBodyBytes, { method, path, headers, body, local: true })
  }

  #isSelf(url: string): boolean {
    return this.#handler !== undefined && url === this.#self
  }

  post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply> {
    if (!this.#isSelf(url)) return this.#inner.post(url, path, body, this.#signed(url, 'POST', path, body, options))
    const headers: Record<string, string> = { 'content-type': MSGPACK }
    if (options?.epoch) headers[EPOCH_HEADER] = options.epoch
    return this.#local('POST', path, headers, body)
  }

  get(url: string, path: string, options?: SendOptions): Promise<Reply> {
    if (!this.#isSelf(url)) return this.#inner.get(url, path, this.#signed(url, 'GET', path, undefined, options))
    return this.#local('GET', path, {}, undefined)
  }

  close(): Promise<void> {
    return this.#inner.close()
  }
}
