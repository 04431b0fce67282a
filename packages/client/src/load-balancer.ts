// Load-balancer routing: every call goes to the seed URLs (a load balancer, or any nodes), whose node
// coordinates it with the same engine the SDK runs in zero-hop mode, through the public HTTP API.
// Calls are spread over the seeds; a seed that refuses connections or is not ready is skipped for a
// while. A request that may have reached a node is not sent again unless it is a read. Calls travel
// as POST /v1/batch, each answered as it would be alone. While a call to a seed is in flight, the
// reads that follow with the same parameters (so the same quorum and deadline) travel together: one
// HTTP exchange for many reads, as zero-hop routing batches its replica requests. A write travels
// alone, so no other call can hold it back.
import {
  ApiPaths,
  CONFLICT_HEADER,
  CONTEXT_HEADER,
  ErrorCodes,
  MAX_API_BATCH,
  QuorumError,
  ValueTooLargeError,
  apiError,
  parseApiError,
  encodeContext,
  percentEncode,
  pack,
  unpack,
  type BatchedReply,
  type BatchedRequest,
  type BatchReply,
  type BatchRequest,
  type ExplainBody,
  type Limits,
  type Member,
  type ReplicaFailure,
  type SiblingsBody,
} from '@zerohop/core'
import { checkKey, type CallOptions, type Coordinator, type CoordinatedGet, type CoordinatedPut, type GetCall, type Explanation, type PutCall } from './coordinator.js'
import { checkQuorum, checkTimeout, type ResolvedClientOptions } from './options.js'
import type { Membership } from './membership.js'
import { Operation, notDelivered, type Outcome } from './operation.js'
import type { Transport } from './transport.js'
import { Coalescer, batchBytes, type BatchKind, type Send } from './batcher.js'

/**
 * The call's deadline is the caller's; the node's is a little earlier, so that a node that cannot get
 * its quorum answers (with each replica's cause) before the caller gives up on it.
 */
export function nodeDeadline(timeoutMs: number): number {
  return Math.max(1, Math.floor(timeoutMs - Math.min(250, timeoutMs / 10)))
}

export class LoadBalancerCoordinator implements Coordinator {
  readonly #o: ResolvedClientOptions
  readonly #membership: Membership
  /** Until when each seed is skipped (it refused a connection or was not ready). */
  readonly #skip = new Map<string, number>()
  #next = 0
  /** Reads and explanations to one seed, coalesced into batches while one is in flight. */
  readonly #reads: Coalescer<BatchedRequest, Answer>
  /** Writes: one per request. */
  readonly #writes: Coalescer<BatchedRequest, Answer>

  constructor(o: ResolvedClientOptions, transport: Transport, membership: Membership) {
    this.#o = o
    this.#membership = membership
    const send: Send = async (member, path, body, deadline) => {
      const reply = await transport.post(member.url, path, body, { signal: deadline.userSignal, timeoutMs: deadline.remaining, deadline: () => deadline.signal })
      if (reply.epoch !== undefined && reply.epoch !== membership.view.epoch) membership.observe(reply.epoch, member.url)
      return reply
    }
    const record = (member: Member, o: Outcome<Answer>) => {
      if (o.ok) this.#skip.delete(member.url)
    }
    const maxBytes = batchBytes(membership.limits)
    this.#reads = new Coalescer(o.clock, apiBatch, send, record, maxBytes)
    this.#writes = new Coalescer(o.clock, { ...apiBatch, maxItems: 1 }, send, record, maxBytes)
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
    const reply = await this.#send('get', r, { method: 'GET', path: this.#path(ApiPaths.kv, key, call, { r }), headers: { accept: 'application/json' } }, call)
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
    const reply = await this.#send('put', w, { method: 'PUT', path: this.#path(ApiPaths.kv, key, call, query), headers, body: value }, call)
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
    const reply = await this.#send('delete', w, { method: 'DELETE', path: this.#path(ApiPaths.kv, key, call, query), headers }, call)
    if (reply.status !== 204) throw apiError(reply.status, reply.body, 'delete')
    return { context: header(reply, CONTEXT_HEADER) ?? emptyContext(), conflict: header(reply, CONFLICT_HEADER) === 'true', siblings: [] }
  }

  async explain(key: Uint8Array, call: CallOptions = {}): Promise<Explanation> {
    this.checkKey(key)
    const reply = await this.#send('get', 1, { method: 'GET', path: this.#path(ApiPaths.explain, key, call, {}) }, call)
    if (reply.status !== 200) throw apiError(reply.status, reply.body, 'get')
    const body = JSON.parse(reply.body.toString('utf8')) as ExplainBody
    const bytes = (b: string) => Buffer.from(b, 'base64')
    return {
      ...body,
      replicas: body.replicas.map((r) => ({ ...r, siblings: r.siblings.map(bytes) })),
      hints: body.hints.map((h) => ({ ...h, siblings: h.siblings.map(bytes) })),
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
   * certainly did nothing (refused, never connected, the node not ready, the load balancer's own
   * 503); a read also after other network errors. Gives up at the deadline, with each seed's cause.
   */
  async #send(operation: 'get' | 'put' | 'delete', need: number, req: { method: BatchedRequest['method']; path: string; headers?: Record<string, string>; body?: Uint8Array }, call: CallOptions): Promise<Answer> {
    const timeoutMs = call.timeoutMs ?? this.#o.timeoutMs
    const op = new Operation(this.#o.clock, timeoutMs, call.signal)
    const failures: ReplicaFailure[] = []
    const seeds = this.#o.seeds
    const read = operation === 'get'
    const item: BatchedRequest = { method: req.method, path: req.path, headers: req.headers ?? {}, body: req.body ?? null }
    // Reads with the same parameters (so the same quorum and deadline) travel together; a write
    // travels alone, so it is never held back by another call, nor reported failed after it was applied.
    const group = read ? `${req.method} ${req.path.slice(req.path.indexOf('?'))}` : ''
    const calls = read ? this.#reads : this.#writes
    try {
      for (let attempt = 0; attempt < seeds.length + this.#o.retries && !op.over; attempt++) {
        const url = this.#pick()
        const o = await calls.submit({ id: url, url, weight: 1 }, item, op, group)
        if (o.ok) {
          const reply = o.value
          if (reply.status === 503 && didNothing(reply, read)) {
            this.#skip.set(url, this.#o.clock.now() + this.#o.backoffMs)
            failures.push({ id: url, url, cause: 'http', status: 503, message: 'no node took the request (not ready, shutting down, or none available behind the load balancer)' })
            continue
          }
          return reply
        }
        const f = o.failure
        failures.push(f)
        op.checkAborted()
        if (notDelivered(f)) this.#skip.set(url, this.#o.clock.now() + this.#o.backoffMs)
        // A read may go again after any failure of the exchange: a broken connection, or a load
        // balancer's own 502, 503 or 504 (no Zerohop error body). A write only when it did nothing.
        else if (!(read && (f.cause === 'network' || (f.cause === 'timeout' && !op.over) || (f.cause === 'http' && f.code === undefined && f.status !== undefined && f.status >= 502 && f.status <= 504)))) break
        else if (f.cause === 'http') this.#skip.set(url, this.#o.clock.now() + this.#o.backoffMs)
      }
      op.checkAborted()
      throw new QuorumError(operation, need, 0, failures.length > 0 ? failures : [{ id: 'coordinator', url: '', cause: 'timeout', message: 'no answer before the deadline' }])
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

/** A call's answer, as it would have come over HTTP. */
type Answer = Omit<BatchedReply, 'body'> & { body: Buffer }

/** Calls of the public API, framed as one POST /v1/batch. */
const apiBatch: BatchKind<BatchedRequest, Answer> = {
  path: ApiPaths.batch,
  maxItems: MAX_API_BATCH,
  size: (r) => r.path.length + (r.body?.byteLength ?? 0) + 64,
  encode: (requests) => pack({ requests } satisfies BatchRequest),
  decode(body, count) {
    let replies: unknown
    try {
      replies = (unpack(body) as Partial<BatchReply>)?.replies
    } catch {
      return 'the node answered a batch with a malformed body'
    }
    if (!Array.isArray(replies) || replies.length !== count) return 'the node answered a batch with the wrong number of replies'
    for (const r of replies as Partial<BatchedReply>[]) {
      if (typeof r?.status !== 'number' || !(r.body instanceof Uint8Array) || typeof r.headers !== 'object' || r.headers === null) return 'a batch reply is not {status, headers, body}'
    }
    // Copied: a small value must not keep the whole batch's reply alive.
    return (replies as BatchedReply[]).map((r) => ({ ...r, body: Buffer.from(r.body) }))
  },
}

function header(reply: Answer, name: string): string | undefined {
  const v = reply.headers[name]
  return Array.isArray(v) ? v[0] : v
}

/**
 * A 503 that did nothing: the node said it is starting or stopping. For a read also a load
 * balancer's own 503 (not a Zerohop error body), which may or may not have reached a node: a read can
 * go again either way, a write cannot.
 */
function didNothing(reply: Answer, read: boolean): boolean {
  const e = parseApiError(reply.body)
  return e === undefined ? read : e.code === ErrorCodes.NOT_READY || e.code === ErrorCodes.SHUTTING_DOWN
}

function emptyContext(): string {
  return encodeContext({ vector: [] })
}
