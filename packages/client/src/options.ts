// Client options: the user-facing type (all optional but seeds, documented with defaults) apart from
// the resolved one; validated once, in connect(), with messages that name the fix.
import { InvalidArgumentError, isRandom, type Clock, type Random } from '@zerohop/core'
import { systemClock, systemRandom } from './clock.js'
import { checkTransportTls, type Transport } from './transport.js'

export type Key = string | Uint8Array

/** Resolves concurrent values (siblings) into one. Called only when a read sees two or more. */
export type MergeFunction<V> = (siblings: V[], key: Key) => V | Promise<V>

/** Options of the coordinator engine, wherever it runs (in the SDK, or in a node for load-balanced clients). */
export interface EngineOptions {
  /** Read quorum (default 2). */
  r?: number
  /** Write quorum (default 2). */
  w?: number
  /** Deadline of one operation, in ms (default 2000). */
  timeoutMs?: number
  /** Send the synced version to replicas that answered a read with an older one (default true). */
  readRepair?: boolean
  /** How long, after answering, a read waits for the slower replicas before repairing (default 100 ms). */
  readRepairWaitMs?: number
  /** Retries of a replica read or store on a network error (default 2; writes that mint a version are never retried blindly). */
  retries?: number
  /** Replace the clock (simulation). */
  clock?: Clock
  /** Replace the randomness: which node a refresh asks, and so on (simulation; default systemRandom). */
  random?: Random
  /**
   * The id of the node this engine runs in, if it runs in one: it coordinates the writes of keys it
   * replicates itself, one HTTP request fewer than sending the coordination elsewhere.
   */
  local?: string
}

/** How requests reach the cluster. */
export type Routing = 'zero-hop' | 'load-balancer'

export interface ClientOptions extends EngineOptions {
  /**
   * URLs of one or more nodes; the first that answers provides the ring. With routing
   * 'load-balancer', every request goes to these URLs (a load balancer, or any nodes).
   */
  seeds: string[]
  /**
   * 'zero-hop' (default): the SDK keeps the ring and runs the quorums itself, straight to each key's
   * replicas. 'load-balancer': every call goes to the seeds, whose node coordinates it.
   */
  routing?: Routing
  /** How long connect() keeps trying the seeds, in ms (default 10000). */
  connectTimeoutMs?: number
  /** 'bytes' (default): values are Uint8Array (strings are stored as UTF-8). 'json': any JSON value. */
  encoding?: 'bytes' | 'json'
  /** Resolves siblings on read; the result is written back so the conflict is resolved once. */
  merge?: MergeFunction<any>
  /** HTTP connections per node (default 16); the framed protocol uses one connection per node, many requests in flight. */
  connections?: number
  /** How often the SDK re-reads the ring from a node even when nothing suggests a change (default 10000 ms). */
  refreshIntervalMs?: number
  /** Shortest gap between ring refreshes triggered by a newer epoch in a response (default 200 ms). */
  refreshDebounceMs?: number
  /** Back-off of a node after a refused connection or timeout; doubles per consecutive failure up to 8x (default 1000 ms). */
  backoffMs?: number
  /**
   * A token from `zerohop user add`, for a cluster whose nodes run with --users-file: sent with every
   * request as `authorization: Bearer TOKEN`. (With `transport`, the transport sends credentials.)
   */
  token?: string
  /** Replace the HTTP transport (tests, simulation). */
  transport?: Transport
  /**
   * How the SDK talks to nodes: 'frames' (the nodes' framed protocol on the same port, over TLS for
   * https:// nodes: the default with zero-hop routing) or 'http' (HTTP/1.1: the default with
   * load-balancer routing, since a load balancer in front of the nodes speaks HTTP). Nodes that do not
   * speak frames are reached over HTTP.
   */
  protocol?: 'http' | 'frames'
  /**
   * For https:// nodes: `ca`, the PEM CA certificate (string or Buffer) that signed the nodes'
   * certificates (default: the system's CAs).
   */
  tls?: { ca?: string | Buffer }
}

export type { CallOptions, GetCall as GetOptions, PutCall as PutOptions } from './coordinator.js'

export const clientDefaults = {
  routing: 'zero-hop',
  r: 2,
  w: 2,
  timeoutMs: 2000,
  connectTimeoutMs: 10_000,
  encoding: 'bytes',
  readRepair: true,
  readRepairWaitMs: 100,
  retries: 2,
  connections: 16,
  refreshIntervalMs: 10_000,
  refreshDebounceMs: 200,
  backoffMs: 1000,
} as const

export interface ResolvedEngineOptions {
  r: number
  w: number
  timeoutMs: number
  readRepair: boolean
  readRepairWaitMs: number
  retries: number
  clock: Clock
  random: Random
  local?: string
}

export interface ResolvedClientOptions extends ResolvedEngineOptions {
  seeds: string[]
  routing: Routing
  connectTimeoutMs: number
  encoding: 'bytes' | 'json'
  merge?: MergeFunction<any>
  connections: number
  refreshIntervalMs: number
  refreshDebounceMs: number
  backoffMs: number
  token?: string
  transport?: Transport
  protocol: 'http' | 'frames'
  tls?: { ca?: string | Buffer }
}

function positiveInt(name: string, v: unknown, max = Number.MAX_SAFE_INTEGER): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer from 0 to ${max}, got ${JSON.stringify(v)}`)
  }
  return v
}

export function checkTimeout(name: string, v: unknown): number {
  if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0 || v > 3_600_000) {
    throw new InvalidArgumentError(`${name} must be a number of milliseconds above 0 (at most one hour), got ${JSON.stringify(v)}`)
  }
  return v
}

export function checkQuorum(name: 'r' | 'w', v: unknown, n: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 1 || v > n) {
    throw new InvalidArgumentError(`${name} must be an integer from 1 to N=${n} (the cluster's replica count), got ${JSON.stringify(v)}`)
  }
  return v
}

export function checkEncoding(encoding: unknown): 'bytes' | 'json' {
  if (encoding !== 'bytes' && encoding !== 'json') throw new InvalidArgumentError(`encoding must be 'bytes' or 'json', got ${JSON.stringify(encoding)}`)
  return encoding
}

export function checkMerge(merge: unknown): void {
  if (merge !== undefined && typeof merge !== 'function') throw new InvalidArgumentError('merge must be a function (siblings, key) => value')
}

/** Validated engine options; r and w are checked against N again once the ring is known. */
export function resolveEngineOptions(o: EngineOptions): ResolvedEngineOptions {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('engine options must be an object')
  const r = o.r ?? clientDefaults.r
  const w = o.w ?? clientDefaults.w
  checkQuorum('r', r, 16)
  checkQuorum('w', w, 16)
  if (o.readRepair !== undefined && typeof o.readRepair !== 'boolean') throw new InvalidArgumentError('readRepair must be true or false')
  const clock = o.clock ?? systemClock
  const local = o.local
  if (local !== undefined && (typeof local !== 'string' || local.length === 0)) throw new InvalidArgumentError('local must be the id of the node the engine runs in')
  if (typeof clock?.now !== 'function' || typeof clock.setTimeout !== 'function') throw new InvalidArgumentError('clock must implement now(), setTimeout(), clearTimeout() and setImmediate() (see systemClock)')
  const random = o.random ?? systemRandom
  if (!isRandom(random)) throw new InvalidArgumentError('random must implement next() and bytes(n) (see systemRandom)')
  return {
    r,
    w,
    timeoutMs: checkTimeout('timeoutMs', o.timeoutMs ?? clientDefaults.timeoutMs),
    readRepair: o.readRepair ?? clientDefaults.readRepair,
    readRepairWaitMs: positiveInt('readRepairWaitMs', o.readRepairWaitMs ?? clientDefaults.readRepairWaitMs, 60_000),
    retries: positiveInt('retries', o.retries ?? clientDefaults.retries, 10),
    clock,
    random,
    local,
  }
}

function checkToken(t: unknown): string | undefined {
  if (t === undefined) return undefined
  // Printable ASCII without spaces: it travels in a header.
  if (typeof t !== 'string' || !/^[\x21-\x7e]{1,512}$/.test(t)) {
    throw new InvalidArgumentError('token must be the token zerohop user add printed (one line, no spaces)')
  }
  return t
}

export function resolveClientOptions(o: ClientOptions): ResolvedClientOptions {
  if (o === null || typeof o !== 'object') throw new InvalidArgumentError('connect() takes an options object: connect({ seeds: ["http://127.0.0.1:7001"] })')
  if (!Array.isArray(o.seeds) || o.seeds.length === 0) {
    throw new InvalidArgumentError('seeds must be a non-empty array of node URLs, e.g. seeds: ["http://127.0.0.1:7001"]')
  }
  const seeds = o.seeds.map((s) => {
    let u: URL
    try {
      u = new URL(s)
    } catch {
      throw new InvalidArgumentError(`seed ${JSON.stringify(s)} is not a URL; write it as http://host:port (https:// for nodes that serve TLS)`)
    }
    if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new InvalidArgumentError(`seed ${s} must use http:// or https://`)
    return u.origin
  })
  const routing = o.routing ?? clientDefaults.routing
  if (routing !== 'zero-hop' && routing !== 'load-balancer') throw new InvalidArgumentError(`routing must be 'zero-hop' or 'load-balancer', got ${JSON.stringify(routing)}`)
  const encoding = checkEncoding(o.encoding ?? clientDefaults.encoding)
  checkMerge(o.merge)
  if (o.transport !== undefined && (typeof o.transport?.post !== 'function' || typeof o.transport.get !== 'function' || typeof o.transport.close !== 'function')) {
    throw new InvalidArgumentError('transport must implement post(), get() and close() (see UndiciTransport)')
  }
  if (o.tls !== undefined && (o.tls === null || typeof o.tls !== 'object' || Object.keys(o.tls).some((k) => k !== 'ca'))) {
    throw new InvalidArgumentError('tls takes { ca }, the PEM CA certificate that signed the nodes\' certificates, e.g. tls: { ca: fs.readFileSync("ca.pem") }')
  }
  const protocol = o.protocol ?? (routing === 'load-balancer' ? 'http' : 'frames')
  if (protocol !== 'http' && protocol !== 'frames') throw new InvalidArgumentError(`protocol must be 'http' or 'frames', got ${JSON.stringify(o.protocol)}`)
  if (o.protocol !== undefined && o.transport) throw new InvalidArgumentError('protocol is an option of the built-in transport; a transport of your own speaks its own')
  const tls = checkTransportTls(o.tls)
  if (tls && o.transport) throw new InvalidArgumentError('tls is an option of the built-in transport; a transport of your own sets up its own TLS')
  return {
    ...resolveEngineOptions(o),
    seeds,
    routing,
    connectTimeoutMs: checkTimeout('connectTimeoutMs', o.connectTimeoutMs ?? clientDefaults.connectTimeoutMs),
    encoding,
    merge: o.merge,
    connections: Math.max(1, positiveInt('connections', o.connections ?? clientDefaults.connections, 1024)),
    refreshIntervalMs: checkTimeout('refreshIntervalMs', o.refreshIntervalMs ?? clientDefaults.refreshIntervalMs),
    refreshDebounceMs: positiveInt('refreshDebounceMs', o.refreshDebounceMs ?? clientDefaults.refreshDebounceMs, 60_000),
    backoffMs: checkTimeout('backoffMs', o.backoffMs ?? clientDefaults.backoffMs),
    token: checkToken(o.token),
    transport: o.transport,
    protocol,
    tls: tls && { ca: tls.ca },
  }
}
