// The node's framed protocol: the same request handler as HTTP, on the same port, for the SDK (its
// default with zero-hop routing) and for the other nodes, at a fraction of HTTP/1.1's cost per
// exchange (on the 2-core machine of issue 13: 2.9 µs of server CPU per bare exchange against 42-50 µs
// for node:http; a single-flight get 0.73-0.78x HTTP's latency). A connection that opens with
// FRAMES_PREFACE speaks frames from then on, plain or over TLS (after the handshake, with the
// certificate the client showed counting for each request as over HTTPS); any other is HTTP (see
// sniff in http.ts).
//
//   request:  [u32 length][MessagePack [id, method, path, headers, body]]
//   reply:    [u32 length][MessagePack [id, status, headers, body]]
//
// `id` is the client's (an unsigned integer), replies come in any order, and the replies of one turn
// of the event loop go out in one write. `path` carries the query string, `headers` lower-case names
// (as node:http gives them), `body` bytes or nil. The limits are HTTP's: a frame over the body limit
// (plus FRAME_OVERHEAD) closes the connection, as does a frame that is not one; bytes in flight count
// toward the node's budget (a request over it is answered 503 ZH_OVERLOADED); a frame begun and not
// finished within the body timeout closes the connection, and so does a connection idle for the
// idle timeout.
import type net from 'node:net'
import type { Logger } from 'pino'
import { ErrorCodes, FrameReader, encodeFrame, unpack } from '@zerohop/core'
import { bad, errorReply, type NodeRequest, type RequestHandler } from './routes/request.js'

/** Bytes a frame may carry beyond the request body: id, method, path and headers. */
export const FRAME_OVERHEAD = 64 * 1024

export interface FramesOptions {
  handler: RequestHandler
  maxBodyBytes: number
  log: Logger
  stopping: () => boolean
  /** A share of the node's in-flight byte budget per request (see InflightBudget in http.ts). */
  share: () => { take: (n: number) => boolean; release: () => void }
  budgetBytes: number
  bodyTimeoutMs: number
  idleTimeoutMs: number
}

/** A request frame, checked: anything else closes the connection. */
function parseRequest(x: unknown): { id: number; method: string; path: string; headers: Record<string, string>; body: Buffer } | undefined {
  if (!Array.isArray(x) || x.length !== 5) return undefined
  const [id, method, path, headers, body] = x as unknown[]
  if (typeof id !== 'number' || !Number.isSafeInteger(id) || id < 0) return undefined
  if (typeof method !== 'string' || method.length === 0 || method.length > 16) return undefined
  if (typeof path !== 'string' || !path.startsWith('/')) return undefined
  if (headers === null || typeof headers !== 'object' || Array.isArray(headers)) return undefined
  const h: Record<string, string> = {}
  for (const [k, v] of Object.entries(headers)) {
    if (typeof v !== 'string') return undefined
    h[k.toLowerCase()] = v
  }
  if (body !== null && body !== undefined && !(body instanceof Uint8Array)) return undefined
  const b = body ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : Buffer.alloc(0)
  return { id, method, path, headers: h, body: b }
}

/** The framed connections of one listener, to close them when it stops. */
export class FramedConnections {
  readonly #open = new Set<FramedConnection>()
  /** Plain connections that have not yet said whether they speak frames or HTTP (see http.ts). */
  readonly undecided = new Set<net.Socket>()

  constructor(readonly options: FramesOptions) {}

  get size(): number {
    return this.#open.size
  }

  /**
   * Serve `socket` as frames; `rest` is what it sent after the preface. `peerCertified`: a TLS
   * connection whose client showed a certificate of --tls-ca (every request on it is, as over HTTPS).
   */
  serve(socket: net.Socket, rest: Buffer, peerCertified: boolean): void {
    const c = new FramedConnection(socket, this.options, peerCertified, () => this.#open.delete(c))
    this.#open.add(c)
    c.start(rest)
  }

  /**
   * Each connection ends once its requests in flight are answered (at once when it has none); one
   * that has sent nothing yet has nothing in flight either.
   */
  close(): void {
    for (const s of this.undecided) s.destroy()
    for (const c of this.#open) c.close()
  }

  /** Cut every connection now. */
  destroy(): void {
    for (const s of this.undecided) s.destroy()
    for (const c of this.#open) c.destroy()
  }
}

class FramedConnection {
  readonly #reader: FrameReader
  #inFlight = 0
  #closing = false
  #partial?: ReturnType<typeof setTimeout>
  #out: Buffer[] = []
  #flushing = false

  constructor(readonly socket: net.Socket, readonly o: FramesOptions, readonly peerCertified: boolean, readonly onGone: () => void) {
    this.#reader = new FrameReader(o.maxBodyBytes + FRAME_OVERHEAD)
  }

  start(rest: Buffer): void {
    const s = this.socket
    s.setNoDelay(true)
    s.on('error', () => s.destroy())
    s.once('close', () => {
      if (this.#partial) clearTimeout(this.#partial)
      this.onGone()
    })
    s.setTimeout(this.o.idleTimeoutMs, () => {
      if (this.#inFlight === 0) s.destroy()
    })
    s.on('data', (d: Buffer) => this.#read(d))
    if (rest.length > 0) this.#read(rest)
    s.resume()
  }

  close(): void {
    this.#closing = true
    if (this.#inFlight === 0) this.socket.end()
  }

  destroy(): void {
    this.socket.destroy()
  }

  #read(d: Buffer): void {
    const { frames, over } = this.#reader.push(d)
    for (const raw of frames) {
      let req
      try {
        req = parseRequest(unpack(raw))
      } catch {
        req = undefined
      }
      if (!req) {
        this.o.log.debug('a frame that is not a request: connection closed')
        return void this.socket.destroy()
      }
      void this.#serve(req, raw.length)
    }
    if (over !== undefined) {
      this.o.log.debug({ bytes: over, limit: this.#reader.maxBytes }, 'a framed request over the body limit: connection closed')
      return void this.socket.destroy()
    }
    if (this.#partial) clearTimeout(this.#partial)
    this.#partial = this.#reader.buffered > 0 ? setTimeout(() => this.socket.destroy(), this.o.bodyTimeoutMs) : undefined
  }

  async #serve(r: NonNullable<ReturnType<typeof parseRequest>>, bytes: number): Promise<void> {
    this.#inFlight++
    const share = this.o.share()
    const q = r.path.indexOf('?')
    const req: NodeRequest = {
      method: r.method,
      path: q < 0 ? r.path : r.path.slice(0, q),
      query: new URLSearchParams(q < 0 ? '' : r.path.slice(q + 1)),
      headers: r.headers,
      body: r.body,
      arrivedStopping: this.o.stopping(),
      peerCertified: this.peerCertified,
      framed: true,
    }
    if (!share.take(bytes)) req.bodyError = bad(503, ErrorCodes.OVERLOADED, `the node holds too many bytes of request bodies in flight (limit ${this.o.budgetBytes}, --max-inflight-bytes); retry later`)
    let reply
    try {
      reply = await this.o.handler(req)
    } catch (err) {
      reply = errorReply(err, this.o.log)
    } finally {
      share.release()
    }
    const body = reply.body === undefined ? null : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body
    this.#send(encodeFrame([r.id, reply.status, reply.headers ?? {}, body]))
    this.#inFlight--
    if (this.#closing && this.#inFlight === 0) this.#flush(true)
  }

  /** Replies of one turn go out together. */
  #send(parts: Buffer[]): void {
    this.#out.push(...parts)
    if (this.#flushing) return
    this.#flushing = true
    setImmediate(() => this.#flush(false))
  }

  #flush(end: boolean): void {
    this.#flushing = false
    const s = this.socket
    if (s.destroyed || s.writableEnded) return
    if (this.#out.length > 0) {
      const out = this.#out
      this.#out = []
      s.write(out.length === 1 ? out[0] : Buffer.concat(out))
    }
    if (end) s.end()
  }
}
