// Coalescing: requests of one kind to a node travel together (reads in one /v1/replica/read, replica
// stores in one /v1/replica/store, coordinations in one /v1/replica/coordinate). Those made in one
// burst of JavaScript (the operations a reply lets go on, or the callers of one turn) go as one
// request at the end of the burst (process.nextTick, when every promise it settled has run), and while
// a request to the node is in flight, the ones that follow wait for the end of the turn of the event
// loop (setImmediate) and go together. Every request costs both ends a frame, a write, a read and a
// pass through the node's request pipeline whatever it carries: sending the first operation of a
// burst alone, at once, made 37% of a loaded SDK's read requests carry one item. A lone operation
// waits for no other: its request goes out in the same turn. Each operation keeps its own deadline
// and signal.
import { MAX_BATCH, type Clock, type CoordinateRequest, type Limits, type Member, type ReadResponse } from '@zerohop/core'
import { failureOf, httpFailure, type Deadline, type Operation, type Outcome } from './operation.js'
import { frames, readAnswer, storeAnswer } from './replica-client.js'
import type { Reply } from './transport.js'

/** How one kind of batchable request is framed. */
export interface BatchKind<I, T> {
  path: string
  /** Bytes the item adds to a request body (roughly). */
  size(item: I): number
  encode(items: I[]): Uint8Array
  /** Most items in one request (default MAX_BATCH). */
  maxItems?: number
  /** One result per item, or why the answer is unusable. */
  decode(body: Buffer, count: number): T[] | string
}

/** A replica's stored set for a key, with what its node signed in a cluster with a secret. */
export interface Held {
  set: Uint8Array
  /** The MAC of the set's join as a context part (every answer in a cluster with a secret). */
  context?: Uint8Array
  /** The set's proof, which relaying it takes (a coordination's answer, or a read that asked `prove`). */
  proof?: Uint8Array
}

/** The sets of a read answer, each with what its node signed. */
export function heldOf(answer: ReadResponse): (Held | null)[] {
  const { sets, contexts, proofs } = answer
  return sets.map((set, i) => {
    if (set === null) return null
    const h: Held = { set }
    if (contexts) h.context = contexts[i]!
    if (proofs) h.proof = proofs[i]!
    return h
  })
}

// The framing is the replica client's (replica-client.ts): one encoder and one decoder per request.
export const readBatch: BatchKind<[partition: number, key: Uint8Array], Held | null> = {
  path: frames.read.path,
  size: ([, key]) => key.byteLength + 8,
  encode: (keys) => frames.read.encode({ keys }),
  decode(body, count) {
    const answer = readAnswer(body, count)
    return typeof answer === 'string' ? `the node ${answer}` : heldOf(answer)
  },
}

/**
 * A replica store; with `hintFor`, the node keeps it as a hint for that node (a sloppy quorum); with
 * `proof`, the set's proof from the node that handed it out (a cluster with a secret).
 */
export type StoreItem = [partition: number, key: Uint8Array, set: Uint8Array, hintFor?: string | null, proof?: Uint8Array]

export const storeBatch: BatchKind<StoreItem, null> = {
  path: frames.store.path,
  size: ([, key, set]) => key.byteLength + set.byteLength + 48,
  encode: (items) => frames.store.encode({ items }),
  decode(body, count) {
    const answer = storeAnswer(body)
    return typeof answer === 'string' ? `the node ${answer}` : new Array<null>(count).fill(null)
  },
}

/** One coordination's answer in a batch: the minted set (with what its node signed), or why the node refused that write. */
export type Minted = { ok: true; held: Held } | { ok: false; status: number; code: string; message: string }

/**
 * Coordinations, coalesced like reads and stores (a batch to one node while one is in flight). Each
 * item is minted on its own; a refused item fails alone. The engine never sends one twice.
 */
export const coordinateBatch: BatchKind<CoordinateRequest, Minted> = {
  path: frames.coordinateBatch.path,
  size: (req) => req.key.byteLength + (req.value?.byteLength ?? 0) + 24 * req.context.length + 48 * (req.parts?.length ?? 0) + 48,
  encode: (items) => frames.coordinateBatch.encode({ items }),
  decode(body, count) {
    const answer = frames.coordinateBatch.decode(body, { items: new Array<CoordinateRequest>(count) })
    if (typeof answer === 'string') return `the node ${answer}`
    return answer.results.map((r): Minted => {
      if ('error' in r) return { ok: false, ...r.error }
      const held: Held = { set: r.set }
      if (r.proof) held.proof = r.proof
      if (r.context) held.context = r.context
      return { ok: true, held }
    })
  },
}

interface Pending<I, T> {
  item: I
  op: Operation
  resolve: (o: Outcome<T>) => void
  settled: boolean
}

/** Sends one (retryable) request. */
/** The most bytes of items in one batch to a node with these limits: half its body limit leaves room for framing. */
export function batchBytes(limits: Limits): number {
  return Math.floor((limits.maxBodyBytes ?? 8 * 1024 * 1024) / 2)
}

/** Sends one (retryable) request; `group` is the one its items were submitted with. */
export type Send = (member: Member, path: string, body: Uint8Array, deadline: Deadline, group: string) => Promise<Reply>

export class Coalescer<I, T> {
  /**
   * Queued items by node and group: only items of one group travel together. The engine's group is
   * the ring epoch its operations planned with (the request carries it).
   */
  #queues = new Map<string, { member: Member; group: string; items: Pending<I, T>[] }>()
  /** Requests in flight per node id. */
  #inFlight = new Map<string, number>()
  /** A flush at the end of the current turn is scheduled (setImmediate). */
  #scheduled = false
  /** A flush at the end of the current burst is scheduled (process.nextTick). */
  #burst = false
  readonly #clock: Clock
  readonly #kind: BatchKind<I, T>
  readonly #send: Send
  readonly #onResult: (member: Member, o: Outcome<T>) => void
  readonly #maxBytes: number

  /** `maxBytes`: a batch is cut before it grows past this (an item larger than it travels alone). */
  constructor(clock: Clock, kind: BatchKind<I, T>, send: Send, onResult: (member: Member, o: Outcome<T>) => void, maxBytes: number) {
    this.#clock = clock
    this.#maxBytes = maxBytes
    this.#kind = kind
    this.#send = send
    this.#onResult = onResult
  }

  submit(member: Member, item: I, op: Operation, group: string): Promise<Outcome<T>> {
    return new Promise((resolve) => {
      const key = `${member.id}\n${group}`
      let q = this.#queues.get(key)
      if (!q) {
        q = { member, group, items: [] }
        this.#queues.set(key, q)
      }
      q.items.push({ item, op, resolve, settled: false })
      if (!this.#inFlight.get(member.id)) {
        if (!this.#burst) {
          this.#burst = true
          process.nextTick(this.#flushIdle)
        }
      } else if (!this.#scheduled) {
        this.#scheduled = true
        this.#clock.setImmediate(this.#flushAll)
      }
    })
  }

  /** The end of a burst: send what waits for nodes with no request in flight. */
  readonly #flushIdle = (): void => {
    this.#burst = false
    this.#flush(true)
  }

  /** The end of a turn: send everything that waits. */
  readonly #flushAll = (): void => {
    this.#scheduled = false
    this.#flush(false)
  }

  #flush(idleOnly: boolean): void {
    for (const [key, { member, group, items }] of this.#queues) {
      if (idleOnly && this.#inFlight.get(member.id)) {
        // Its node got a request in flight since (a queue of another group): wait for the turn's end.
        if (!this.#scheduled) {
          this.#scheduled = true
          this.#clock.setImmediate(this.#flushAll)
        }
        continue
      }
      this.#queues.delete(key)
      let batch: Pending<I, T>[] = []
      let bytes = 0
      for (const p of items) {
        // An operation aborted or timed out before its request left is not sent: it fails alone. (One
        // that has finished still is: a put answers at W, and its other stores still go.)
        if (p.op.reason !== undefined) {
          this.#settle(member, p, { ok: false, member, failure: failureOf(member, undefined, p.op) })
          continue
        }
        const size = this.#kind.size(p.item)
        if (batch.length > 0 && (batch.length === (this.#kind.maxItems ?? MAX_BATCH) || bytes + size > this.#maxBytes)) {
          void this.#sendBatch(member, group, batch)
          batch = []
          bytes = 0
        }
        batch.push(p)
        bytes += size
      }
      if (batch.length > 0) void this.#sendBatch(member, group, batch)
    }
  }

  #settle(member: Member, p: Pending<I, T>, o: Outcome<T>): void {
    if (p.settled) return
    p.settled = true
    this.#onResult(member, o)
    p.resolve(o)
  }

  async #sendBatch(member: Member, group: string, items: Pending<I, T>[]): Promise<void> {
    this.#inFlight.set(member.id, (this.#inFlight.get(member.id) ?? 0) + 1)
    try {
      await this.#exchange(member, group, items)
    } finally {
      const left = this.#inFlight.get(member.id)! - 1
      if (left === 0) this.#inFlight.delete(member.id)
      else this.#inFlight.set(member.id, left)
    }
  }

  async #exchange(member: Member, group: string, items: Pending<I, T>[]): Promise<void> {
    const body = this.#kind.encode(items.map((p) => p.item))
    // Every operation settles on its own deadline or abort; a shared request lives until the last of
    // them is over, and carries the caller's signal only when it serves one operation.
    for (const p of items) p.op.onAbort(() => this.#settle(member, p, { ok: false, member, failure: failureOf(member, undefined, p.op) }))
    const deadline: Deadline = items.length === 1 ? items[0].op : new SharedDeadline(items.map((p) => p.op))
    try {
      const reply = await this.#send(member, this.#kind.path, body, deadline, group)
      if (reply.status !== 200) {
        const failure = httpFailure(member, reply)
        for (const p of items) this.#settle(member, p, { ok: false, member, failure })
        return
      }
      const results = this.#kind.decode(reply.body, items.length)
      if (typeof results === 'string') {
        const failure = { id: member.id, url: member.url, cause: 'invalid-response', message: results }
        for (const p of items) this.#settle(member, p, { ok: false, member, failure })
        return
      }
      items.forEach((p, i) => this.#settle(member, p, { ok: true, member, value: results[i] }))
    } catch (err) {
      for (const p of items) this.#settle(member, p, { ok: false, member, failure: failureOf(member, err, p.op) })
    }
  }
}

/** The deadline of a request that serves several operations: it is over when the last of them is. */
class SharedDeadline implements Deadline {
  readonly #ops: Operation[]
  #controller?: AbortController

  constructor(ops: Operation[]) {
    this.#ops = ops
  }

  get remaining(): number {
    return Math.max(...this.#ops.map((o) => o.remaining))
  }

  get over(): boolean {
    return this.#ops.every((o) => o.over)
  }

  get signal(): AbortSignal {
    if (!this.#controller) {
      const controller = new AbortController()
      this.#controller = controller
      let live = this.#ops.length
      for (const op of this.#ops) op.onAbort(() => --live === 0 && controller.abort())
    }
    return this.#controller.signal
  }
}
