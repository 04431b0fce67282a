// One request's deadline and cancellation, and the outcome of asking one replica. A single timer per
// operation aborts every replica request still in flight when the deadline passes.
import { AbortError, ErrorCodes, HttpError, InvalidResponseError, TransportError, type Clock, type ClockTimer, type Member, type ReplicaFailure, type TransportErrorKind } from '@zerohop/core'
import { replyError } from './replica-client.js'
import type { Reply } from './transport.js'
import { verdict, type Requirement, type Standing } from './quorum.js'

/** What a request needs to know of the operation(s) it serves. */
export interface Deadline {
  /** Milliseconds left (at least 1). */
  readonly remaining: number
  readonly over: boolean
  /** The caller's signal, if any. */
  readonly userSignal?: AbortSignal
  /** Fires when the deadline passes or the caller aborts; created on first use. */
  readonly signal: AbortSignal
}

export class Operation implements Deadline {
  reason: 'timeout' | 'aborted' | undefined
  readonly deadline: number
  /** The caller's signal, passed on to requests so they are cancelled with it. */
  readonly userSignal?: AbortSignal
  readonly #clock: Clock
  readonly #timer: ClockTimer
  #listeners: (() => void)[] = []
  #controller?: AbortController
  #finished = false
  readonly #onUser = () => this.abort('aborted')

  constructor(clock: Clock, timeoutMs: number, user?: AbortSignal) {
    if (user?.aborted) throw new AbortError({ cause: user.reason })
    this.#clock = clock
    this.deadline = clock.now() + timeoutMs
    this.userSignal = user
    this.#timer = clock.setTimeout(() => this.abort('timeout'), timeoutMs)
    user?.addEventListener('abort', this.#onUser, { once: true })
  }

  /** Milliseconds left before the deadline (at least 1). */
  get remaining(): number {
    return Math.max(1, this.deadline - this.#clock.now())
  }

  get over(): boolean {
    return this.reason !== undefined || this.#finished
  }

  // Created only when a request must be cancellable at the deadline (one waiting for a connection):
  // passing a signal with every request costs tens of microseconds in listener bookkeeping.
  get signal(): AbortSignal {
    if (!this.#controller) {
      this.#controller = new AbortController()
      if (this.reason) this.#controller.abort()
    }
    return this.#controller.signal
  }

  /** Run `fn` when the operation times out or is aborted (at once if it already was). */
  onAbort(fn: () => void): void {
    if (this.reason) fn()
    else this.#listeners.push(fn)
  }

  abort(reason: 'timeout' | 'aborted'): void {
    if (this.reason) return
    this.reason = reason
    this.#controller?.abort()
    const listeners = this.#listeners
    this.#listeners = []
    for (const fn of listeners) fn()
  }

  /** `p`, or `fallback()` as soon as the operation is over, whichever comes first. */
  race<T>(p: Promise<T>, fallback: () => T): Promise<T> {
    if (this.reason) return Promise.resolve(fallback())
    return new Promise<T>((resolve) => {
      let done = false
      const finish = (v: T) => {
        if (done) return
        done = true
        resolve(v)
      }
      p.then(finish, () => finish(fallback()))
      this.onAbort(() => finish(fallback()))
    })
  }

  /** Throws the caller's AbortError if the caller's signal fired. */
  checkAborted(): void {
    if (this.reason === 'aborted') throw new AbortError({ cause: this.userSignal?.reason })
  }

  done(): void {
    this.#finished = true
    this.#clock.clearTimeout(this.#timer)
    this.userSignal?.removeEventListener('abort', this.#onUser)
  }
}

export type Outcome<T> = { ok: true; member: Member; value: T } | { ok: false; member: Member; failure: ReplicaFailure }

export function errorCode(err: unknown): string | undefined {
  const e = err as { code?: string; cause?: { code?: string } }
  return e?.code ?? e?.cause?.code
}

/** A network error after which the same request may be sent again (reads and idempotent stores). */
export function isTransient(err: unknown): boolean {
  return err instanceof TransportError && err.kind === 'network'
}

/**
 * True when the request certainly was not applied (so even a non-idempotent one can go elsewhere): the
 * transport says it never wrote it (connection refused or never established), or the node said it did nothing.
 */
export function notDelivered(f: ReplicaFailure): boolean {
  return f.delivered === false || unavailable(f)
}

/** The node answered that it is starting or stopping: it did nothing with the request. */
export function unavailable(f: ReplicaFailure): boolean {
  return f.cause === 'http' && f.status === 503 && (f.code === ErrorCodes.SHUTTING_DOWN || f.code === ErrorCodes.NOT_READY)
}

/**
 * The node answered that it is starting (it refuses every replica request before doing anything): it
 * will serve soon, so the same request may go to it again. A node shutting down will not come back.
 */
export function notReady(f: ReplicaFailure): boolean {
  return f.cause === 'http' && f.status === 503 && f.code === ErrorCodes.NOT_READY
}

/** A reply saying the node is starting (see notReady); the body is read only for a 503. */
export function notReadyReply(reply: Reply): boolean {
  return reply.status === 503 && replyError(reply).code === ErrorCodes.NOT_READY
}

const TRANSPORT_MESSAGES: Record<TransportErrorKind, string | undefined> = {
  refused: 'connection refused',
  timeout: 'no answer before the deadline',
  aborted: 'aborted by the caller',
  network: undefined,
}

export function failureOf(member: Member, err: unknown, op: Operation): ReplicaFailure {
  const base = { id: member.id, url: member.url }
  if (op.reason === 'timeout') return { ...base, cause: 'timeout', message: 'no answer before the deadline' }
  if (op.reason === 'aborted') return { ...base, cause: 'aborted', message: 'aborted by the caller' }
  if (err instanceof TransportError) {
    // The underlying code (ECONNREFUSED, UND_ERR_SOCKET, ...) is kept for messages only.
    const code = errorCode(err.cause)
    return { ...base, cause: err.kind, code, message: TRANSPORT_MESSAGES[err.kind] ?? err.message, ...(err.delivered ? {} : { delivered: false }) }
  }
  if (err instanceof HttpError) return { ...base, cause: 'http', status: err.status, code: err.code, message: err.message }
  if (err instanceof InvalidResponseError) return { ...base, cause: 'invalid-response', message: err.message }
  return { ...base, cause: 'network', code: errorCode(err), message: (err as Error)?.message ?? String(err) }
}

/** A replica's answer with an error status, as that replica's failure (the body parsed by replyError). */
export function httpFailure(member: Member, reply: Reply): ReplicaFailure {
  return { id: member.id, url: member.url, cause: 'http', ...replyError(reply) }
}

export interface Gathered<T> {
  /** Resolves with the successes once every requirement is met, or rejects with every failure once one is out of reach. */
  quorum: Promise<Outcome<T>[]>
  /** Resolves when every replica asked so far has answered or failed. */
  all: Promise<void>
  outcomes: Outcome<T>[]
  /** Ask every member of the requirements not asked yet; resolves once every one asked has answered or failed. */
  widen(): Promise<void>
}

/** When a read that has not reached its quorum asks the members it spared: after `ms`, if `allow()`. */
export interface Hedge {
  ms: number
  allow: () => boolean
}

/**
 * Ask every target; settle the quorum as soon as every requirement has its successes, or as soon as
 * one of them can no longer get them. Members of a requirement that are not targets (believed down,
 * or spared by a read) are asked only when the quorum cannot be met without them, or, with `hedge`,
 * once the quorum has waited that long (on `clock`).
 */
export function gather<T>(targets: readonly Member[], requirements: readonly Requirement[], ask: (m: Member) => Promise<Outcome<T>>, hedge?: Hedge, clock?: Clock): Gathered<T> {
  const outcomes: Outcome<T>[] = []
  const state = new Map<string, 'pending' | 'ok' | 'failed'>()
  let pending = 0
  let settled = false
  let resolveAll!: () => void
  const all = new Promise<void>((r) => (resolveAll = r))
  let resolveQuorum!: (v: Outcome<T>[]) => void
  let rejectQuorum!: (v: Outcome<T>[]) => void
  const quorum = new Promise<Outcome<T>[]>((resolve, reject) => {
    resolveQuorum = resolve
    rejectQuorum = reject
  })
  quorum.catch(() => undefined)
  const idle: (() => void)[] = []
  const send = (m: Member) => {
    state.set(m.id, 'pending')
    pending++
    ask(m).then((o) => {
      outcomes.push(o)
      pending--
      state.set(m.id, o.ok ? 'ok' : 'failed')
      check()
      if (pending === 0) {
        resolveAll()
        for (const w of idle.splice(0)) w()
      }
    })
  }
  const unasked = () => requirements.flatMap((r) => r.members.filter((m) => !state.has(m.id)))
  const widen = (): Promise<void> => {
    for (const m of unasked()) if (!state.has(m.id)) send(m)
    return pending === 0 ? Promise.resolve() : new Promise<void>((r) => idle.push(r))
  }
  const standing = (id: string): Standing => {
    const st = state.get(id)
    return st === 'ok' ? 'counted' : st === 'pending' ? 'open' : 'lost'
  }
  const check = () => {
    if (settled) return
    // A requirement out of reach with the members asked so far asks its reserves (believed down).
    for (const r of requirements) {
      if (verdict([r], standing) !== 'failed') continue
      const reserves = r.members.filter((m) => !state.has(m.id))
      if (reserves.length === 0) {
        settled = true
        rejectQuorum(outcomes.filter((o) => !o.ok))
        return
      }
      for (const m of reserves) send(m)
    }
    if (verdict(requirements, standing) === 'met') {
      settled = true
      resolveQuorum(outcomes.filter((o) => o.ok))
    }
  }
  for (const m of targets) send(m)
  check()
  if (pending === 0) resolveAll()
  if (hedge && clock && !settled && unasked().length > 0) {
    const timer = clock.setTimeout(() => {
      if (!settled && hedge.allow()) void widen()
    }, hedge.ms)
    void quorum.then(() => clock.clearTimeout(timer), () => clock.clearTimeout(timer))
  }
  return { quorum, all, outcomes, widen }
}
