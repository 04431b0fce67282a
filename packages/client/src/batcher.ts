// Read coalescing: while a read to a node is in flight, further reads to that node wait for the end of
// the current turn of the event loop (setImmediate) and travel together in one /v1/replica/read
// request. Each HTTP exchange costs tens of microseconds of CPU on both ends, so under load this is
// what lets reads per second go past one request per replica per read; a read to an idle node goes
// out at once, so a lone get pays nothing. Each get keeps its own deadline and signal.
import { MAX_BATCH, Paths, pack, unpack, type Clock, type Member } from '@zerohop/core'
import { failureOf, httpFailure, type Deadline, type Operation, type Outcome } from './operation.js'
import type { Reply } from './transport.js'

type ReadOutcome = Outcome<Uint8Array | null>

interface PendingRead {
  partition: number
  key: Uint8Array
  op: Operation
  resolve: (o: ReadOutcome) => void
  settled: boolean
}

/** Sends one (retryable) read request. */
export type Send = (member: Member, path: string, body: Uint8Array, deadline: Deadline) => Promise<Reply>

export class ReadBatcher {
  #queues = new Map<string, { member: Member; items: PendingRead[] }>()
  /** Requests in flight per node id. */
  #inFlight = new Map<string, number>()
  #scheduled = false
  readonly #send: Send
  readonly #onResult: (member: Member, o: ReadOutcome) => void

  readonly #clock: Clock

  constructor(clock: Clock, send: Send, onResult: (member: Member, o: ReadOutcome) => void) {
    this.#clock = clock
    this.#send = send
    this.#onResult = onResult
  }

  read(member: Member, partition: number, key: Uint8Array, op: Operation): Promise<ReadOutcome> {
    return new Promise((resolve) => {
      const item: PendingRead = { partition, key, op, resolve, settled: false }
      if (!this.#inFlight.get(member.id)) {
        void this.#sendBatch(member, [item])
        return
      }
      let q = this.#queues.get(member.id)
      if (!q) {
        q = { member, items: [] }
        this.#queues.set(member.id, q)
      }
      q.items.push(item)
      if (!this.#scheduled) {
        this.#scheduled = true
        this.#clock.setImmediate(this.#flush)
      }
    })
  }

  readonly #flush = (): void => {
    this.#scheduled = false
    const queues = this.#queues
    this.#queues = new Map()
    for (const { member, items } of queues.values()) {
      for (let i = 0; i < items.length; i += MAX_BATCH) void this.#sendBatch(member, items.slice(i, i + MAX_BATCH))
    }
  }

  #settle(member: Member, item: PendingRead, o: ReadOutcome): void {
    if (item.settled) return
    item.settled = true
    this.#onResult(member, o)
    item.resolve(o)
  }

  async #sendBatch(member: Member, items: PendingRead[]): Promise<void> {
    this.#inFlight.set(member.id, (this.#inFlight.get(member.id) ?? 0) + 1)
    try {
      await this.#exchange(member, items)
    } finally {
      const left = this.#inFlight.get(member.id)! - 1
      if (left === 0) this.#inFlight.delete(member.id)
      else this.#inFlight.set(member.id, left)
    }
  }

  async #exchange(member: Member, items: PendingRead[]): Promise<void> {
    const body = pack({ keys: items.map((i) => [i.partition, i.key]) })
    // Every get settles on its own deadline or abort; the shared request lives until the last of
    // them is over (its timeout), and carries the caller's signal only when it serves one get.
    for (const item of items) item.op.onAbort(() => this.#settle(member, item, { ok: false, member, failure: failureOf(member, undefined, item.op) }))
    const deadline: Deadline = items.length === 1 ? items[0].op : new SharedDeadline(items.map((i) => i.op))
    try {
      const reply = await this.#send(member, Paths.read, body, deadline)
      if (reply.status !== 200) {
        const failure = httpFailure(member, reply)
        for (const item of items) this.#settle(member, item, { ok: false, member, failure })
        return
      }
      let sets: unknown
      try {
        sets = (unpack(reply.body) as { sets?: unknown })?.sets
      } catch {
        sets = undefined
      }
      if (!Array.isArray(sets) || sets.length !== items.length) {
        const failure = { id: member.id, url: member.url, cause: 'invalid-response', message: 'the node answered a read with a malformed body' }
        for (const item of items) this.#settle(member, item, { ok: false, member, failure })
        return
      }
      items.forEach((item, i) => {
        const s = sets[i]
        if (s === null || s instanceof Uint8Array) this.#settle(member, item, { ok: true, member, value: s })
        else this.#settle(member, item, { ok: false, member, failure: { id: member.id, url: member.url, cause: 'invalid-response', message: 'a read answer is not a set' } })
      })
    } catch (err) {
      for (const item of items) this.#settle(member, item, { ok: false, member, failure: failureOf(member, err, item.op) })
    }
  }
}

/** The deadline of a request that serves several gets: it is over when the last of them is. */
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
