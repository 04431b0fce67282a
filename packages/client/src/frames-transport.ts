// The Transport over the nodes' framed protocol (server/src/frames.ts): one TCP connection per node
// (TLS for https:// nodes, verified as over HTTPS), requests multiplexed by id, the writes of one turn
// in one write. It keeps the Transport contract of transport.ts (TransportError kinds, `delivered`), so
// nothing above it changes. Nodes that answer the preface in HTTP (an older node) are reached over
// HTTP by `fallback`.
import net from 'node:net'
import tls from 'node:tls'
import { ClientClosedError, EPOCH_HEADER, FRAMES_PREFACE, FrameReader, MSGPACK, TransportError, encodeFrame, unpack } from '@zerohop/core'
import { UndiciTransport, checkTransportTls, transportError, type Reply, type SendOptions, type Transport, type TransportTls, type UndiciTransportOptions } from './transport.js'

/** The largest reply frame accepted: a node answers at most its body limit and a little more. */
const MAX_REPLY_BYTES = 512 * 1024 * 1024
/** "HTTP": a node that does not speak frames answered the preface as a malformed HTTP request. */
const HTTP_MAGIC = 0x48545450

interface Pending {
  resolve: (r: Reply) => void
  reject: (e: unknown) => void
  timer?: ReturnType<typeof setTimeout>
  cleanup?: () => void
  what: string
  /** Re-send over HTTP (the node does not speak frames; this request never reached it). */
  again: () => Promise<Reply>
}

class Connection {
  readonly socket: net.Socket
  readonly pending = new Map<number, Pending>()
  connected = false
  /** Failed or closed: takes no request and holds none. */
  dead = false
  /** Given up (see silentSince): takes no new request; closed once the ones it holds are settled. */
  retired = false
  /** Reply frames read so far: a request that times out with this unchanged heard nothing at all. */
  heard = 0
  #next = 1
  readonly #reader = new FrameReader(MAX_REPLY_BYTES)
  #out: Buffer[] = [FRAMES_PREFACE]
  #flushing = false

  /** `secure`: TLS with these options (an https:// node); the preface follows the handshake. */
  constructor(readonly url: string, host: string, port: number, connectTimeoutMs: number, secure: TransportTls | undefined, readonly onHttpOnly: () => void, readonly onGone: () => void) {
    // An IP address is no server name (SNI); the certificate is checked against it all the same.
    const s = (this.socket = secure ? tls.connect({ host, port, ...secure, servername: net.isIP(host) ? undefined : host }) : net.connect({ host, port }))
    s.setNoDelay(true)
    const connectTimer = setTimeout(() => this.#fail(new TransportError('timeout', `connect to ${url}: timed out after ${connectTimeoutMs} ms`, { delivered: false }), false), connectTimeoutMs)
    s.once(secure ? 'secureConnect' : 'connect', () => {
      clearTimeout(connectTimer)
      this.connected = true
      this.#flush()
    })
    s.on('data', (d: Buffer) => this.#read(d))
    s.on('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(connectTimer)
      if (!this.connected) {
        // Refused, or a certificate not accepted: said as over HTTP (transportError); nothing was sent.
        const said = transportError(err, url)
        const { kind, message } = said instanceof TransportError ? said : { kind: 'network' as const, message: `${url}: ${err.message}` }
        return this.#fail(new TransportError(kind, message, { delivered: false, cause: err }), false)
      }
      this.#fail(new TransportError('network', `${url}: ${err.message}`, { delivered: true, cause: err }), true)
    })
    s.once('close', () => {
      clearTimeout(connectTimer)
      this.#fail(new TransportError('network', `${url}: the connection closed`, { delivered: this.connected }), this.connected)
    })
  }

  send(build: (id: number) => Buffer[], p: Pending): number {
    const id = this.#next++
    this.pending.set(id, p)
    this.#out.push(...build(id))
    if (this.connected && !this.#flushing) {
      this.#flushing = true
      process.nextTick(() => this.#flush())
    }
    return id
  }

  #flush(): void {
    this.#flushing = false
    if (this.dead || this.#out.length === 0) return
    const out = this.#out
    this.#out = []
    this.socket.write(out.length === 1 ? out[0] : Buffer.concat(out))
  }

  #read(d: Buffer): void {
    const { frames, over } = this.#reader.push(d)
    if (over === HTTP_MAGIC && frames.length === 0 && this.heard === 0 && this.pending.size > 0) {
      // The node answered in HTTP: it does not speak frames, and served none of these requests.
      this.onHttpOnly()
      const waiting = [...this.pending.values()]
      this.pending.clear()
      this.dead = true
      this.socket.destroy()
      for (const p of waiting) {
        p.cleanup?.()
        if (p.timer) clearTimeout(p.timer)
        p.again().then(p.resolve, p.reject)
      }
      return
    }
    for (const raw of frames) {
      this.heard++
      let x: unknown
      try {
        x = unpack(raw)
      } catch {
        x = undefined
      }
      if (!Array.isArray(x) || x.length !== 4 || typeof x[0] !== 'number' || typeof x[1] !== 'number') {
        return this.#fail(new TransportError('network', `${this.url}: a reply that is not a frame`, { delivered: true }), true)
      }
      const [id, status, headers, body] = x as [number, number, Record<string, unknown> | null, Uint8Array | null]
      const p = this.pending.get(id)
      if (!p) continue // answered after its caller gave up
      this.pending.delete(id)
      p.cleanup?.()
      if (p.timer) clearTimeout(p.timer)
      const epoch = headers?.[EPOCH_HEADER]
      p.resolve({ status, epoch: typeof epoch === 'string' ? epoch : undefined, body: body ? Buffer.from(body.buffer, body.byteOffset, body.byteLength) : Buffer.alloc(0) })
      if (this.retired) this.#closeIfSettled()
    }
    if (over !== undefined) this.#fail(new TransportError('network', `${this.url}: a reply frame of ${over} bytes`, { delivered: true }), true)
  }

  /** Everything waiting fails with `err`; the connection is not used again. */
  #fail(err: TransportError, delivered: boolean): void {
    if (!this.dead) {
      this.dead = true
      this.onGone()
      this.socket.destroy()
    }
    const waiting = [...this.pending.values()]
    this.pending.clear()
    for (const p of waiting) {
      p.cleanup?.()
      if (p.timer) clearTimeout(p.timer)
      p.reject(new TransportError(err.kind, `${p.what}: ${err.message}`, { delivered: delivered && err.delivered, cause: err.cause ?? err }))
    }
  }

  forget(id: number): void {
    this.pending.delete(id)
    if (this.retired) this.#closeIfSettled()
  }

  /**
   * A request timed out, and nothing came back on this connection since it was sent (`heardAtSend`):
   * the connection is given up, as undici gives up an HTTP connection whose request timed out. A node
   * that is cut off, or whose host died without a word, leaves a TCP connection that may stay silent
   * for minutes (retransmissions back off up to two minutes apart), also after the network heals; the
   * next request connects again instead. The requests it still holds keep their own deadlines (an
   * answer may yet come), and it closes once they are settled. A node that answered anything meanwhile
   * is alive: only the one request failed, and the connection stays.
   */
  silentSince(heardAtSend: number): void {
    if (this.dead || this.retired || this.heard !== heardAtSend) return
    this.retired = true
    this.onGone()
    this.#closeIfSettled()
  }

  #closeIfSettled(): void {
    if (this.pending.size > 0 || this.dead) return
    this.dead = true
    this.socket.destroy()
  }
}

export interface FramesTransportOptions extends UndiciTransportOptions {}

export class FramesTransport implements Transport {
  /** The connection new requests to a node go on. */
  readonly #connections = new Map<string, Connection>()
  /** Every connection with an open socket, retired ones too: close() ends them all. */
  readonly #open = new Set<Connection>()
  /** Nodes reached over HTTP: those that do not speak frames. */
  readonly #http = new Set<string>()
  readonly #tls: TransportTls
  readonly #fallback: UndiciTransport
  readonly #headers: Record<string, string>
  readonly #connectTimeoutMs: number
  #closed = false

  constructor(options: FramesTransportOptions = {}) {
    this.#fallback = new UndiciTransport(options)
    this.#headers = options.headers ?? {}
    this.#connectTimeoutMs = options.connectTimeoutMs ?? 1000
    this.#tls = checkTransportTls(options.tls) ?? {}
  }

  #connection(url: string): Connection {
    let c = this.#connections.get(url)
    if (c && !c.dead && !c.retired) return c
    const u = new URL(url)
    const secure = u.protocol === 'https:'
    // An IPv6 host is bracketed in a URL, not in a socket address.
    c = new Connection(url, u.hostname.replace(/^\[(.*)\]$/, '$1'), Number(u.port || (secure ? 443 : 80)), this.#connectTimeoutMs, secure ? this.#tls : undefined, () => this.#http.add(url), () => {
      if (this.#connections.get(url) === c) this.#connections.delete(url)
    })
    this.#connections.set(url, c)
    this.#open.add(c)
    const opened = c
    c.socket.once('close', () => this.#open.delete(opened))
    return c
  }

  #send(url: string, method: 'GET' | 'POST', path: string, headers: Record<string, string>, body: Uint8Array | undefined, options: SendOptions, again: () => Promise<Reply>): Promise<Reply> {
    if (this.#closed) return Promise.reject(new ClientClosedError())
    if (this.#http.has(url)) return again()
    const what = `${method} ${url}${path}`
    const signal = options.signal
    if (signal?.aborted) return Promise.reject(abortError(what, signal))
    const c = this.#connection(url)
    return new Promise<Reply>((resolve, reject) => {
      let id = 0
      const giveUp = (err: TransportError) => {
        c.forget(id)
        cleanup()
        clearTimeout(timer)
        reject(err)
      }
      const onAbort = () => giveUp(abortError(what, signal!))
      const cleanup = () => signal?.removeEventListener('abort', onAbort)
      const heardAtSend = c.heard
      const timer = options.timeoutMs === undefined ? undefined : setTimeout(() => {
        giveUp(new TransportError('timeout', `${what}: no answer within ${options.timeoutMs} ms`, { delivered: true }))
        c.silentSince(heardAtSend)
      }, options.timeoutMs)
      signal?.addEventListener('abort', onAbort, { once: true })
      id = c.send((n) => encodeFrame([n, method, path, headers, body ?? null]), { resolve, reject, timer, cleanup, what, again })
    })
  }

  post(url: string, path: string, body: Uint8Array, options: SendOptions = {}): Promise<Reply> {
    const headers: Record<string, string> = { 'content-type': MSGPACK, ...this.#headers, ...options.headers }
    if (options.epoch) headers[EPOCH_HEADER] = options.epoch
    return this.#send(url, 'POST', path, headers, body, options, () => this.#fallback.post(url, path, body, options))
  }

  get(url: string, path: string, options: SendOptions = {}): Promise<Reply> {
    return this.#send(url, 'GET', path, { ...this.#headers, ...options.headers }, undefined, options, () => this.#fallback.get(url, path, options))
  }

  async close(): Promise<void> {
    this.#closed = true
    for (const c of this.#open) c.socket.destroy()
    this.#connections.clear()
    await this.#fallback.close()
  }
}

/** An abort as the contract says: kind aborted (timeout for a timeout signal), maybe delivered, the reason as cause. */
function abortError(what: string, signal: AbortSignal): TransportError {
  const reason: unknown = signal.reason
  const timeout = (reason as { name?: unknown } | undefined)?.name === 'TimeoutError'
  return new TransportError(timeout ? 'timeout' : 'aborted', `${what}: ${timeout ? 'deadline passed' : 'aborted'}`, { delivered: true, cause: reason })
}
