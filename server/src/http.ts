// The node's listener: node:http, or node:https with --tls-cert, behind the limits that keep slow or
// stalled clients from holding the node (time to send headers and body, connections per client and in
// all, bytes of bodies in flight). It reads the body within the limit, hands the request to the node's
// request handler (see routes/), and writes the reply. Connections of a stopping node are closed.
import http from 'node:http'
import https from 'node:https'
import type net from 'node:net'
import type { TLSSocket } from 'node:tls'
import { ErrorCodes, FRAMES_PREFACE } from '@zerohop/core'
import type { Logger } from 'pino'
import { nodeDefaults, type NodeTls } from './config.js'
import { bad, errorReply, type RequestHandler } from './routes/request.js'
import { FramedConnections } from './frames.js'

/** The listener's limits; each is a node option (see config.ts and the README's configuration table). */
export interface ListenerLimits {
  headersTimeoutMs: number
  bodyTimeoutMs: number
  idleTimeoutMs: number
  maxConnections: number
  maxConnectionsPerClient: number
  maxInflightBytes: number
}

export interface HttpOptions {
  handler: RequestHandler
  maxBodyBytes: number
  log: Logger
  stopping: () => boolean
  /** Serve HTTPS with this certificate and key; with `ca`, ask for client certificates (never require them). */
  tls?: NodeTls
  /** Default: nodeDefaults (with maxInflightBytes at least maxBodyBytes). */
  limits?: Partial<ListenerLimits>
}

export type NodeServer = http.Server | https.Server

/** Each listener's framed connections (see frames.ts), which closing the listener must end too. */
const framed = new WeakMap<NodeServer, FramedConnections>()

export function framedConnectionsOf(server: NodeServer): FramedConnections | undefined {
  return framed.get(server)
}

/** Every TLS connection opens with a handshake record (content type 22). */
const TLS_HANDSHAKE = 0x16
/** How long a refused connection may take to read its answer before it is destroyed. */
const LINGER_MS = 1000

/** The node's bytes of request bodies in flight, shared by every request. */
class InflightBudget {
  #bytes = 0
  constructor(readonly limit: number) {}

  /** A request's share: `take` reserves more if the whole budget has room, `release` gives it all back. */
  share(): { take: (n: number) => boolean; release: () => void } {
    let held = 0
    return {
      take: (n) => {
        if (this.#bytes + n > this.limit) return false
        this.#bytes += n
        held += n
        return true
      },
      release: () => {
        this.#bytes -= held
        held = 0
      },
    }
  }
}

const overloaded = (limit: number) => bad(503, ErrorCodes.OVERLOADED, `the node holds too many bytes of request bodies in flight (limit ${limit}, --max-inflight-bytes); retry later`)

function readBody(req: http.IncomingMessage, limit: number, take: (n: number) => boolean, budget: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > limit) {
      reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body of ${declared} bytes is over the limit of ${limit} (--max-body-bytes)`))
      return
    }
    // A declared body is reserved whole before it is read, so that many slow bodies cannot together
    // promise more than the budget; a chunked one is counted as it arrives.
    let reserved = Number.isFinite(declared) && declared > 0 ? declared : 0
    if (reserved > 0 && !take(reserved)) {
      reject(overloaded(budget))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body is over the limit of ${limit} bytes (--max-body-bytes)`))
        req.pause()
        return
      }
      if (size > reserved) {
        if (!take(size - reserved)) {
          reject(overloaded(budget))
          req.pause()
          return
        }
        reserved = size
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)))
    req.on('error', reject)
    req.on('aborted', () => reject(bad(400, ErrorCodes.BAD_BODY, 'request body was cut off')))
  })
}

const EMPTY: Buffer = Buffer.alloc(0)

function rawReply(status: string, code: string, message: string): string {
  const body = JSON.stringify({ error: { code, message } })
  return `HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`
}

/** Answer a connection in plain HTTP without reading its request, then close it. */
function refuse(socket: net.Socket, reply: string | undefined): void {
  socket.on('error', () => socket.destroy())
  if (reply === undefined) return void socket.destroy()
  socket.end(reply)
  // Read what the client sends meanwhile: closing with unread data would reset the connection and
  // could lose the answer.
  socket.resume()
  socket.setTimeout(LINGER_MS, () => socket.destroy())
}

/**
 * Whether the client presented a certificate that --tls-ca verified. rejectUnauthorized is off, so
 * `authorized` alone would seem to say so, but Node reports `authorized` true on a resumed TLS session
 * whether or not the client ever presented a certificate: the certificate itself must be there too (a
 * resumed session keeps the one verified at its handshake).
 */
export function certified(socket: TLSSocket): boolean {
  if (socket.authorized !== true) return false
  const peer = socket.getPeerCertificate()
  return peer !== null && typeof peer === 'object' && Object.keys(peer).length > 0
}

export function createHttpServer(o: HttpOptions): NodeServer {
  const limits: ListenerLimits = {
    headersTimeoutMs: o.limits?.headersTimeoutMs ?? nodeDefaults.headersTimeoutMs,
    bodyTimeoutMs: o.limits?.bodyTimeoutMs ?? nodeDefaults.bodyTimeoutMs,
    idleTimeoutMs: o.limits?.idleTimeoutMs ?? nodeDefaults.idleTimeoutMs,
    maxConnections: o.limits?.maxConnections ?? nodeDefaults.maxConnections,
    maxConnectionsPerClient: o.limits?.maxConnectionsPerClient ?? nodeDefaults.maxConnectionsPerClient,
    maxInflightBytes: o.limits?.maxInflightBytes ?? Math.max(nodeDefaults.maxInflightBytes, o.maxBodyBytes),
  }
  const budget = new InflightBudget(limits.maxInflightBytes)
  const verifiesPeers = o.tls?.ca !== undefined

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const share = budget.share()
    // Answered or aborted, the request's bytes go back to the budget.
    res.once('close', share.release)
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const arrivedStopping = o.stopping()
    let received: Buffer = EMPTY
    let bodyError: unknown
    try {
      received = await readBody(req, o.maxBodyBytes, share.take, limits.maxInflightBytes)
    } catch (err) {
      bodyError = err
    }
    let reply
    try {
      reply = await o.handler({
        method: req.method ?? 'GET',
        path: q < 0 ? url : url.slice(0, q),
        query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)),
        headers: req.headers,
        body: received,
        arrivedStopping,
        bodyError,
        peerCertified: verifiesPeers && certified(req.socket as TLSSocket),
      })
    } catch (err) {
      reply = errorReply(err, o.log)
    }
    if (res.headersSent) return void res.destroy()
    const body = reply.body === undefined ? undefined : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body
    const headers: Record<string, string | number> = { ...reply.headers, 'content-length': body?.byteLength ?? 0 }
    // A request that started before shutdown still gets its answer, but its connection must not go
    // back to keep-alive: stop() waits for every connection to close (up to its grace period). A body
    // over the limit, or over the in-flight budget, was not read: the connection cannot be reused either.
    if (o.stopping() || reply.status === 413 || (!req.complete && reply.status === 503)) headers.connection = 'close'
    res.writeHead(reply.status, headers)
    res.end(body)
    // Drain what is left of a rejected body so the connection stays usable.
    if (!req.complete && headers.connection === undefined) req.resume()
  }

  const serverOptions = {
    keepAliveTimeout: limits.idleTimeoutMs,
    headersTimeout: limits.headersTimeoutMs,
    requestTimeout: limits.bodyTimeoutMs,
    // node:http checks both timeouts only this often (30 s by default).
    connectionsCheckingInterval: Math.max(50, Math.min(1000, Math.floor(Math.min(limits.headersTimeoutMs, limits.bodyTimeoutMs) / 2))),
  }
  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    handle(req, res).catch((err) => {
      o.log.error({ err }, 'could not answer a request')
      res.destroy()
    })
  }
  const server: NodeServer = o.tls
    ? https.createServer({
      ...serverOptions,
      cert: o.tls.cert,
      key: o.tls.key,
      ca: o.tls.ca,
      // Nodes present their certificate; SDK users and curl need none.
      requestCert: verifiesPeers,
      rejectUnauthorized: false,
      handshakeTimeout: limits.headersTimeoutMs,
    }, listener)
    : http.createServer(serverOptions, listener)
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy(err)
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    socket.end(timeout
      ? rawReply('408 Request Timeout', ErrorCodes.REQUEST_TIMEOUT, 'the request was not received in full before the request timeout (--headers-timeout-ms, --body-timeout-ms)')
      : rawReply('400 Bad Request', ErrorCodes.BAD_BODY, 'malformed HTTP request'))
  })
  // Frames are served on plain connections, and over TLS once the handshake is done: a connection
  // that opens with the preface speaks frames, any other HTTP (see sniff).
  const frames = new FramedConnections({
    handler: o.handler,
    maxBodyBytes: o.maxBodyBytes,
    log: o.log,
    stopping: o.stopping,
    share: () => budget.share(),
    budgetBytes: limits.maxInflightBytes,
    bodyTimeoutMs: limits.bodyTimeoutMs,
    idleTimeoutMs: limits.idleTimeoutMs,
  })
  framed.set(server, frames)
  if (o.tls) {
    // node:https's HTTP parser takes a connection at 'secureConnection': it gets the ones that speak HTTP.
    const parsers = server.listeners('secureConnection') as ((socket: TLSSocket) => void)[]
    server.removeAllListeners('secureConnection')
    server.on('secureConnection', (socket: TLSSocket) => sniff(socket, frames, limits, () => {
      for (const l of parsers) l.call(server, socket)
    }, verifiesPeers && certified(socket)))
  }
  gateConnections(server, limits, o.tls !== undefined, frames)
  return server
}

/**
 * Counts the server's open connections (per remote address and in all) and refuses one over a limit
 * before node:http or node:tls spends anything on it. With TLS, a connection whose first byte is not
 * a TLS handshake is plain HTTP: it is answered 426 in plain text, rather than failing the handshake
 * (a reset the client cannot explain).
 */
function gateConnections(server: NodeServer, limits: ListenerLimits, tls: boolean, frames: FramedConnections): void {
  // The server's own 'connection' listeners (node:http's parser, or node:tls's handshake) run only
  // once a connection is admitted.
  const serve = server.listeners('connection') as ((socket: net.Socket) => void)[]
  server.removeAllListeners('connection')
  const deliver = (socket: net.Socket) => {
    for (const l of serve) l.call(server, socket)
  }
  const perClient = new Map<string, number>()
  let open = 0
  server.on('connection', (socket: net.Socket) => {
    const address = socket.remoteAddress ?? ''
    const mine = perClient.get(address) ?? 0
    if (open >= limits.maxConnections || mine >= limits.maxConnectionsPerClient) {
      const what = open >= limits.maxConnections ? `open connections (limit ${limits.maxConnections}, --max-connections)` : `open connections from ${address} (limit ${limits.maxConnectionsPerClient}, --max-connections-per-client)`
      // Over TLS there is no way to answer before a handshake: the connection is closed.
      refuse(socket, tls ? undefined : rawReply('503 Service Unavailable', ErrorCodes.OVERLOADED, `the node has too many ${what}; retry later`))
      return
    }
    open++
    perClient.set(address, mine + 1)
    socket.once('close', () => {
      open--
      const left = perClient.get(address)! - 1
      if (left > 0) perClient.set(address, left)
      else perClient.delete(address)
    })
    if (!tls) return sniff(socket, frames, limits, () => deliver(socket), false)
    const onError = () => socket.destroy()
    socket.on('error', onError)
    const stalled = setTimeout(() => socket.destroy(), limits.headersTimeoutMs)
    socket.once('close', () => clearTimeout(stalled))
    socket.once('data', (first: Buffer) => {
      clearTimeout(stalled)
      socket.pause()
      if (first[0] !== TLS_HANDSHAKE) {
        refuse(socket, rawReply('426 Upgrade Required', ErrorCodes.TLS_REQUIRED, 'this node serves HTTPS; use https:// instead of http://'))
        return
      }
      socket.removeListener('error', onError)
      // node:tls reads what the socket already buffered before it reads on.
      socket.unshift(first)
      deliver(socket)
    })
  })
}

/**
 * A connection (plain, or TLS after its handshake) that opens with the frames preface speaks frames;
 * any other is HTTP, which `toHttp` hands to node:http. `peerCertified`: a TLS client showed a
 * certificate of --tls-ca (see certified).
 */
function sniff(socket: net.Socket, frames: FramedConnections, limits: ListenerLimits, toHttp: () => void, peerCertified: boolean): void {
  let seen: Buffer = Buffer.alloc(0)
  frames.undecided.add(socket)
  const onError = () => socket.destroy()
  // node:http keeps half-open connections (allowHalfOpen); one that ends before a word is over.
  const onEnd = () => socket.destroy()
  const stalled = setTimeout(() => socket.destroy(), limits.headersTimeoutMs)
  const decided = () => {
    clearTimeout(stalled)
    frames.undecided.delete(socket)
    socket.removeListener('data', onData)
    socket.removeListener('error', onError)
    socket.removeListener('end', onEnd)
  }
  const onData = (d: Buffer) => {
    seen = seen.length > 0 ? Buffer.concat([seen, d]) : d
    const n = Math.min(seen.length, FRAMES_PREFACE.length)
    const preface = seen.subarray(0, n).equals(FRAMES_PREFACE.subarray(0, n))
    // Still a prefix of the preface: wait for the rest (a client writes it at once, so rarely).
    if (preface && seen.length < FRAMES_PREFACE.length) return
    decided()
    socket.pause()
    if (preface) return frames.serve(socket, seen.subarray(FRAMES_PREFACE.length), peerCertified)
    // node:http takes the bytes read so far through the socket's 'data' (from then on it reads
    // the socket's handle itself): put them back, and let them flow once it listens.
    socket.unshift(seen)
    toHttp()
    socket.resume()
  }
  socket.on('error', onError)
  socket.on('end', onEnd)
  socket.once('close', () => {
    clearTimeout(stalled)
    frames.undecided.delete(socket)
  })
  socket.on('data', onData)
}
