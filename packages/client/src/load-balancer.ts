// Load-balancer routing: every call goes to the seed URLs (a load balancer, or any nodes), whose node
// coordinates it with the same engine the SDK runs in zero-hop mode, through the public HTTP API.
// Calls are spread over the seeds; a seed that refuses connections or is not ready is skipped for a
// while. A request that may have reached a node is not sent again unless it is a read.
import {
  ApiPaths,
  CONFLICT_HEADER,
  CONTEXT_HEADER,
  ErrorCodes,
  QuorumError,
  ValueTooLargeError,
  apiError,
  parseApiError,
  encodeContext,
  percentEncode,
  type InspectBody,
  type Limits,
  type ReplicaFailure,
  type SiblingsBody,
} from '@zerohop/core'
import { checkKey, type CallOptions, type Coordinator, type CoordinatedGet, type CoordinatedPut, type GetCall, type Inspection, type PutCall } from './coordinator.js'
import { checkQuorum, checkTimeout, type ResolvedClientOptions } from './options.js'
import type { Membership } from './membership.js'
import { Operation, failureOf, isTransient, notDelivered } from './operation.js'
import type { ApiReply, ApiRequest, Transport } from './transport.js'

/**
 * The call's deadline is the caller's; the node's is a little earlier, so that a node that cannot get
 * its quorum answers (with each replica's cause) before the caller gives up on it.
 */
export function nodeDeadline(timeoutMs: number): number {
  return Math.max(1, Math.floor(timeoutMs - Math.min(250, timeoutMs / 10)))
}

export class LoadBalancerCoordinator implements Coordinator {
  readonly #o: ResolvedClientOptions
  readonly #transport: Transport & Required<Pick<Transport, 'request'>>
  readonly #membership: Membership
  /** Until when each seed is skipped (it refused a connection or was not ready). */
  readonly #skip = new Map<string, number>()
  #next = 0

  constructor(o: ResolvedClientOptions, transport: Transport, membership: Membership) {
    if (typeof transport.request !== 'function') throw new TypeError("routing 'load-balancer' needs a transport with request() (see UndiciTransport)")
    this.#o = o
    this.#transport = transport as Transport & Required<Pick<Transport, 'request'>>
    this.#membership = membership
  }

  get limits(): Limits {
    return this.#membership.limits
  }

  get #n(): number {
    return this.#membership.view.current.n
  }

  checkKey(key: Uint8Array): void {
    checkKey(key, this.limits)
  }

  async get(key: Uint8Array, call: GetCall = {}): Promise<CoordinatedGet> {
    this.checkKey(key)
    const r = checkQuorum('r', call.r ?? this.#o.r, this.#n)
    const reply = await this.#send('get', { method: 'GET', path: this.#path(ApiPaths.kv, key, call, { r }), headers: { accept: 'application/json' } }, call)
    const context = header(reply, CONTEXT_HEADER)
    if (reply.status === 200) return { found: true, siblings: [reply.body], context: context ?? emptyContext() }
    if (reply.status === 404) return { found: false, siblings: [], context: context ?? emptyContext() }
    if (reply.status === 300) {
      const body = JSON.parse(reply.body.toString('utf8')) as SiblingsBody
      return { found: true, siblings: body.siblings.map((b) => Buffer.from(b, 'base64')), context: body.context }
    }
    throw apiError(reply.status, reply.body, 'get')
  }

  async put(key: Uint8Array, value: Uint8Array | null, call: PutCall = {}): Promise<CoordinatedPut> {
    if (value === null) return this.delete(key, call)
    this.checkKey(key)
    if (!(value instanceof Uint8Array)) throw new TypeError('value must be bytes')
    if (value.byteLength > this.limits.maxValueBytes) throw new ValueTooLargeError(value.byteLength, this.limits.maxValueBytes)
    const w = checkQuorum('w', call.w ?? this.#o.w, this.#n)
    const query: Record<string, string | number> = { w, returnbody: 'true' }
    if (call.strict !== undefined) query.strict = String(call.strict)
    const headers: Record<string, string> = { 'content-type': 'application/octet-stream' }
    if (call.context !== undefined) headers[CONTEXT_HEADER] = call.context
    const reply = await this.#send('put', { method: 'PUT', path: this.#path(ApiPaths.kv, key, call, query), headers, body: value }, call)
    if (reply.status !== 200) throw apiError(reply.status, reply.body, 'put')
    const body = JSON.parse(reply.body.toString('utf8')) as { context: string; conflict: boolean; siblings: string[] }
    return { context: body.context, conflict: body.conflict, siblings: body.siblings.map((b) => Buffer.from(b, 'base64')) }
  }

  async delete(key: Uint8Array, call: PutCall = {}): Promise<CoordinatedPut> {
    this.checkKey(key)
    const w = checkQuorum('w', call.w ?? this.#o.w, this.#n)
    const query: Record<string, string | number> = { w }
    if (call.strict !== undefined) query.strict = String(call.strict)
    const headers: Record<string, string> = {}
    if (call.context !== undefined) headers[CONTEXT_HEADER] = call.context
    const reply = await this.#send('delete', { method: 'DELETE', path: this.#path(ApiPaths.kv, key, call, query), headers }, call)
    if (reply.status !== 204) throw apiError(reply.status, reply.body, 'delete')
    return { context: header(reply, CONTEXT_HEADER) ?? emptyContext(), conflict: header(reply, CONFLICT_HEADER) === 'true', siblings: [] }
  }

  async inspect(key: Uint8Array, call: CallOptions = {}): Promise<Inspection> {
    this.checkKey(key)
    const reply = await this.#send('get', { method: 'GET', path: this.#path(ApiPaths.inspect, key, call, {}) }, call)
    if (reply.status !== 200) throw apiError(reply.status, reply.body, 'get')
    const body = JSON.parse(reply.body.toString('utf8')) as InspectBody
    return {
      partition: body.partition,
      preferenceList: body.preferenceList,
      replicas: body.replicas.map((r) => ({ ...r, siblings: r.siblings.map((b) => Buffer.from(b, 'base64')) })),
    }
  }

  #path(base: string, key: Uint8Array, call: CallOptions, query: Record<string, string | number>): string {
    const timeout = call.timeoutMs === undefined ? this.#o.timeoutMs : checkTimeout('timeoutMs', call.timeoutMs)
    // Every parameter is a number or a plain word: nothing to escape.
    let q = `?timeout=${nodeDeadline(timeout)}`
    for (const k in query) q += `&${k}=${query[k]}`
    return `${base}${percentEncode(key)}${q}`
  }

  /**
   * Send to the next seed that is not being skipped. Moves on to another seed when the request
   * certainly did nothing (refused, never connected, the node not ready); a read also after other
   * network errors. Gives up at the deadline, with each seed's cause.
   */
  async #send(operation: 'get' | 'put' | 'delete', req: ApiRequest, call: CallOptions): Promise<ApiReply> {
    const timeoutMs = call.timeoutMs ?? this.#o.timeoutMs
    const op = new Operation(this.#o.clock, timeoutMs, call.signal)
    const failures: ReplicaFailure[] = []
    const seeds = this.#o.seeds
    try {
      for (let attempt = 0; attempt < seeds.length + this.#o.retries && !op.over; attempt++) {
        const url = this.#pick()
        const member = { id: url, url, weight: 1 }
        try {
          // The deadline travels as the request's timeout (and as a signal only while it waits for a
          // connection): a signal per request costs tens of microseconds.
          const reply = await this.#transport.request(url, req, { signal: call.signal, timeoutMs: op.remaining, deadline: () => op.signal })
          if (reply.epoch !== undefined && reply.epoch !== this.#membership.view.epoch) this.#membership.observe(reply.epoch, url)
          if (reply.status === 503 && notReady(reply)) {
            this.#skip.set(url, this.#o.clock.now() + this.#o.backoffMs)
            failures.push({ id: url, url, cause: 'http', status: 503, message: 'no node took the request (not ready, shutting down, or none available behind the load balancer)' })
            continue
          }
          this.#skip.delete(url)
          return reply
        } catch (err) {
          const f = failureOf(member, err, op)
          failures.push(f)
          op.checkAborted()
          if (notDelivered(f)) this.#skip.set(url, this.#o.clock.now() + this.#o.backoffMs)
          else if (!(operation === 'get' && isTransient(err))) break
        }
      }
      op.checkAborted()
      throw new QuorumError(operation, operation === 'get' ? this.#o.r : this.#o.w, 0, failures.length > 0 ? failures : [{ id: 'coordinator', url: '', cause: 'timeout', message: 'no answer before the deadline' }])
    } finally {
      op.done()
    }
  }

  #pick(): string {
    const seeds = this.#o.seeds
    const now = this.#o.clock.now()
    for (let i = 0; i < seeds.length; i++) {
      const url = seeds[(this.#next + i) % seeds.length]
      if ((this.#skip.get(url) ?? 0) <= now) {
        this.#next = (this.#next + i + 1) % seeds.length
        return url
      }
    }
    // Every seed is being skipped: try the next anyway, it may be back.
    return seeds[this.#next++ % seeds.length]
  }
}

function header(reply: ApiReply, name: string): string | undefined {
  const v = reply.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * A 503 that did nothing: the node is starting or stopping, or the load balancer had no server for it
 * (its own 503 page, not a Zerohop error body).
 */
function notReady(reply: ApiReply): boolean {
  const e = parseApiError(reply.body)
  return e === undefined || e.code === ErrorCodes.NOT_READY || e.code === ErrorCodes.SHUTTING_DOWN
}

function emptyContext(): string {
  return encodeContext({ vector: [] })
}
