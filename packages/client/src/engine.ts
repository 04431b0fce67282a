// The coordinator engine: one state machine per request. It fans out to the replicas of a key's
// preference list, waits for R (or W), syncs the DVV sets they answer with, and repairs stale replicas
// after answering. The same engine runs in two placements: in the SDK (zero-hop routing) and in every
// node (for clients behind a load balancer); each gives it a Membership and a Transport. Everything
// here works on bytes; collections add encodings and merge functions.
import diagnostics from 'node:diagnostics_channel'
import pRetry from 'p-retry'
import {
  ErrorCodes,
  Paths,
  QuorumError,
  bytesEqual,
  decodeContext,
  decodeSet,
  encodeContext,
  encodeSet,
  join,
  md5,
  siblings,
  syncAll,
  InvalidArgumentError,
  KeyTooLargeError,
  ValueTooLargeError,
  type Clock,
  type ClockTimer,
  type DvvSet,
  type Limits,
  type Member,
  type ReplicaFailure,
  type VersionVector,
  type Context,
  type ContextPart,
  type CoordinateRequest,
  vectorBytes,
  sleep,
  BadContextError,
  ForbiddenError,
  UnauthenticatedError,
  ZerohopError,
} from '@zerohop/core'
import { checkQuorum, checkTimeout, type ResolvedEngineOptions } from './options.js'
import { Operation, failureOf, gather, httpFailure, isTransient, notDelivered, notReady, notReadyReply, type Deadline, type Outcome } from './operation.js'
import type { Membership } from './membership.js'
import { WriteQuorum, type Requirement, type StoreAction } from './quorum.js'
import { checkKey, type CallOptions, type Coordinator, type CoordinatedGet, type CoordinatedPut, type GetCall, type Explanation, type PutCall, type ReplicaExplanation } from './coordinator.js'
import type { Reply, SendOptions, Transport } from './transport.js'
import { Coalescer, batchBytes, coordinateBatch, heldOf, readBatch, storeBatch, type Held, type Minted, type StoreItem } from './batcher.js'
import { frames, readAnswer } from './replica-client.js'

export const channels = {
  readRepair: diagnostics.channel('zerohop:client:read-repair'),
  merge: diagnostics.channel('zerohop:client:merge'),
  replicaError: diagnostics.channel('zerohop:client:replica-error'),
}

export interface RawGetResult extends CoordinatedGet {
  /** Synced set of the replicas that answered. */
  set: DvvSet
  vector: VersionVector
  /** Replica that answered first: the preferred coordinator of the next write. */
  first: string
}

export interface RawPutResult extends CoordinatedPut {
  vector: VersionVector
  coordinator: string
}

/** Where one key's requests go: its replicas in the current ring, and in the next while they differ. */
export interface Plan {
  partition: number
  current: readonly Member[]
  next: readonly Member[]
  /** Every replica to ask: the union of both lists, without those known to be down unless a quorum needs them. */
  targets: Member[]
  requirements: Requirement[]
  /** The ring epoch the plan was made with: its requests carry it, so nodes with other rings refuse them. */
  epoch: string
}

/** The outcome of coordinating a write: the minted set and where, or every replica's failure. */
type Coordinated =
  | { ok: true; plan: Plan; coordinator: Member; held: Held; set: DvvSet; failures: ReplicaFailure[] }
  | { ok: false; failures: ReplicaFailure[] }

/**
 * Back-off between attempts within one operation's deadline: 5, 10, 20 … ms, at most 100. A starting
 * node serves within a discovery interval or two of its seeds answering, so a wait of more than
 * 100 ms between two looks would only add latency.
 */
const BACKOFF = { factor: 2, minTimeout: 5, maxTimeout: 100 }

/** Most attempts after the first, whatever the deadline would allow (a bound on the count, not only the time). */
const MAX_RETRIES = 1000

/** An attempt whose result asks for another: carried through p-retry as an error. */
class Again<T> extends Error {
  constructor(readonly result: T) {
    super('attempt again')
  }
}

/**
 * Run `attempt` again with back-off while its result asks for it (`again`) or it throws an error
 * `retryable` accepts, and the deadline leaves time. Retrying ends a little before the deadline, so
 * that what the caller is told is the last answer (say, the node still not ready), not a bare timeout.
 * Returns the last result, or throws the last error.
 */
async function retryWithin<T>(clock: Clock, deadline: Deadline, attempt: () => Promise<T>, again: (r: T) => boolean, retryable: (err: unknown) => boolean): Promise<T> {
  const left = deadline.remaining
  const end = clock.now() + left - Math.min(BACKOFF.maxTimeout, left / 10)
  if (end <= clock.now()) return attempt()
  try {
    return await pRetry(async () => {
      const r = await attempt()
      if (again(r) && !deadline.over) throw new Again(r)
      return r
    }, {
      retries: MAX_RETRIES,
      // p-retry counts the attempts and decides; the back-off sleeps on the engine's clock (p-retry's
      // own delay is 0, so it never starts a timer), which a simulation drives on virtual time.
      minTimeout: 0,
      signal: deadline.userSignal,
      shouldRetry: async ({ error, retriesConsumed }) => {
        if (deadline.over || !(error instanceof Again || retryable(error))) return false
        const wait = Math.min(BACKOFF.minTimeout * BACKOFF.factor ** retriesConsumed, BACKOFF.maxTimeout, end - clock.now())
        if (wait <= 0) return false
        await sleep(clock, wait, deadline.signal)
        return !deadline.over
      },
    })
  } catch (err) {
    if (err instanceof Again) return err.result as T
    throw err
  }
}

/**
 * A read asks R replicas (Cassandra's way: the third one's work is spared), and the others once one of
 * those fails or is slow: a replica stalled for a moment (a pause, a full disk queue) does not hold the
 * read up to its deadline. Slow means slower than 95% of this engine's recent reads took to reach
 * their quorum, and at least READ_HEDGE_MS (or a quarter of the time left, if less). At most one read
 * in ten asks more than R this way (The Tail at Scale's hedged requests): when every read is slow, the
 * machine is overloaded, and asking more replicas would only add to the load.
 */
const READ_HEDGE_MS = 50
/** Recent reads whose times make the hedge delay; it is worked out again every READ_TIMES / 4 reads. */
const READ_TIMES = 256
const HEDGE_SHARE = 0.1

/**
 * Attempts of an operation refused for the ring it was made with, each right after a refresh from the
 * refusing node. Beyond them (the nodes still converging on a change: in a cluster with a secret only
 * gossip between nodes carries member entries, so the refusing node may lack some the SDK has) each
 * attempt first waits, with back-off, up to MAX_RING_ATTEMPTS within the deadline.
 */
const RING_RETRIES = 3
const MAX_RING_ATTEMPTS = 20
const RING_BACKOFF_MS = { min: 25, max: 200 }

const RING_CODES = new Set<string>([ErrorCodes.STALE_RING, ErrorCodes.NOT_REPLICA])

/** A failure that a fresher ring may cure: the node refused the request because of the ring it was made with. */
function ringFailure(failures: readonly ReplicaFailure[]): ReplicaFailure | undefined {
  return failures.find((f) => f.cause === 'http' && f.code !== undefined && RING_CODES.has(f.code))
}

export class Engine implements Coordinator {
  readonly options: ResolvedEngineOptions
  readonly transport: Transport
  readonly clock: Clock
  readonly membership: Membership
  readonly #reads: Coalescer<[number, Uint8Array], Held | null>
  readonly #stores: Coalescer<StoreItem, null>
  readonly #coordinations: Coalescer<CoordinateRequest, Minted>
  /** Times (ms) recent reads took to their quorum, a ring of READ_TIMES; the hedge delay they make. */
  readonly #readTimes = new Float64Array(READ_TIMES)
  #readsTimed = 0
  #hedgeMs = READ_HEDGE_MS
  /** Reads that may still hedge: HEDGE_SHARE more each read, at most 10. */
  #hedges = 10

  constructor(options: ResolvedEngineOptions, transport: Transport, membership: Membership) {
    this.options = options
    this.transport = transport
    this.membership = membership
    this.clock = options.clock
    const limits = membership.limits
    const send = (m: Member, path: string, body: Uint8Array, deadline: Deadline, epoch: string) => this.#send(m, path, body, deadline, true, epoch)
    const record = (m: Member, o: Outcome<unknown>) => this.#record(m, o)
    const maxBatchBytes = batchBytes(limits)
    this.#reads = new Coalescer(this.clock, readBatch, send, record, maxBatchBytes)
    this.#stores = new Coalescer(this.clock, storeBatch, send, record, maxBatchBytes)
    // Minting a version is not idempotent: a coordination is never sent twice (see #coordinate).
    const sendOnce = (m: Member, path: string, body: Uint8Array, deadline: Deadline, epoch: string) => this.#send(m, path, body, deadline, false, epoch)
    this.#coordinations = new Coalescer(this.clock, coordinateBatch, sendOnce, record, maxBatchBytes)
  }

  get limits(): Limits {
    return this.membership.limits
  }

  get n(): number {
    return this.membership.view.current.n
  }

  /**
   * Where a request for `key` goes: the top N of its preference list (fewer if the cluster has fewer
   * nodes), in both rings while they differ, without the nodes believed down unless a quorum needs them.
   * A read (`only`) asks just `need` of each list's live replicas, in preference order: the others are
   * its reserves (gather asks them when one fails, or is slow, see READ_HEDGE_MS).
   */
  plan(key: Uint8Array, need: number, only = false): Plan {
    const view = this.membership.view
    const partition = view.current.partitionOf(key)
    const { current, next } = view.replicas(partition)
    const chosen = new Map<string, Member>()
    for (const list of current === next ? [current] : [current, next]) {
      const live = list.filter((m) => this.membership.up(m.id))
      // Too few believed up for a quorum: ask them all, in case some are back.
      const enough = live.length >= Math.min(need, list.length)
      for (const m of !enough ? list : only ? live.slice(0, need) : live) chosen.set(m.id, m)
    }
    const requirements = current === next ? [{ members: current, need }] : [{ members: current, need }, { members: next, need }]
    return { partition, current, next, targets: [...chosen.values()], requirements, epoch: view.epoch }
  }

  checkKey(key: Uint8Array): void {
    checkKey(key, this.limits)
  }

  /**
   * Send one request. Reads and stores (idempotent) are retried on transient network errors (at most
   * `retries` times), and while the node answers that it is starting (503 ZH_NOT_READY: it did
   * nothing), until shortly before the deadline. The first attempt goes out directly; p-retry takes
   * over only once it has failed. A coordination (`retry` false) is never sent twice here: its round is
   * retried as a whole (see #coordinate).
   */
  #send = async (member: Member, path: string, body: Uint8Array, deadline: Deadline, retry: boolean, epoch: string): Promise<Reply> => {
    const options = (): SendOptions => ({ signal: deadline.userSignal, timeoutMs: deadline.remaining, deadline: () => deadline.signal, epoch })
    const post = () => this.transport.post(member.url, path, body, options())
    let networkRetries = this.options.retries
    const transient = (err: unknown) => isTransient(err) && networkRetries-- > 0
    let reply: Reply | undefined
    let error: unknown
    try {
      reply = await post()
    } catch (err) {
      error = err
    }
    const again = reply === undefined ? transient(error) : notReadyReply(reply)
    if (retry && again && !deadline.over) reply = await retryWithin(this.clock, deadline, post, notReadyReply, transient)
    else if (reply === undefined) throw error
    // Every answer carries the node's ring epoch: a newer one triggers a (debounced) refresh.
    if (reply.epoch !== this.membership.view.epoch) this.membership.observe(reply.epoch, member.url)
    return reply
  }

  #record(member: Member, o: Outcome<unknown>): void {
    if (o.ok) this.membership.ok(member)
    else {
      this.membership.failed(member, o.failure)
      if (channels.replicaError.hasSubscribers) channels.replicaError.publish({ failure: o.failure })
    }
  }

  /**
   * An operation's quorum error. Refused credentials are the caller's in the SDK; in a node (load
   * balancer placement) they are the node's own signature, refused by a peer (another secret, clock
   * skew): not the client's fault, so the client gets the quorum error (503) with each cause.
   */
  #quorumError(operation: 'get' | 'put' | 'delete', need: number, succeeded: number, failures: ReplicaFailure[]): ZerohopError {
    return quorumError(operation, need, succeeded, failures, this.options.local === undefined)
  }

  /**
   * After attempt `attempt` was refused for its ring by `stale`'s node: refresh from that node (and,
   * past RING_RETRIES, wait a little first for the nodes to converge). False when no attempt is left
   * within the deadline.
   */
  async #ringRefused(stale: ReplicaFailure, attempt: number, op: Operation): Promise<boolean> {
    if (op.over || attempt >= MAX_RING_ATTEMPTS) return false
    if (attempt >= RING_RETRIES) {
      const wait = Math.min(RING_BACKOFF_MS.min * 2 ** (attempt - RING_RETRIES), RING_BACKOFF_MS.max)
      // Leave the attempt that follows time to be answered.
      if (wait * 2 > op.remaining) return false
      await sleep(this.clock, wait, op.userSignal).catch(() => undefined)
      if (op.over) return false
    }
    await op.race(this.membership.refresh(stale.url), () => undefined)
    return !op.over
  }

  /** One request that is never retried blindly (coordinate: minting a version is not idempotent). */
  async #ask<T>(member: Member, path: string, body: Uint8Array, op: Operation, epoch: string, decode: (b: Buffer) => T): Promise<Outcome<T>> {
    const sent = this.#send(member, path, body, op, false, epoch).then(
      (reply): Outcome<T> => {
        if (reply.status !== 200) return { ok: false, member, failure: httpFailure(member, reply) }
        try {
          return { ok: true, member, value: decode(reply.body) }
        } catch (err) {
          return { ok: false, member, failure: { id: member.id, url: member.url, cause: 'invalid-response', message: (err as Error).message } }
        }
      },
      (err): Outcome<T> => ({ ok: false, member, failure: failureOf(member, err, op) }),
    )
    // The deadline settles the outcome even if the request has not given up yet.
    const o = await op.race(sent, (): Outcome<T> => ({ ok: false, member, failure: failureOf(member, undefined, op) }))
    this.#record(member, o)
    return o
  }

  /** One replica's set of `key` with its proof (a read that asks `prove`), for relaying it; undefined if it has none or failed. */
  async #proven(member: Member, partition: number, key: Uint8Array, op: Operation, epoch: string): Promise<Held | undefined> {
    const o = await this.#ask(member, Paths.read, frames.read.encode({ keys: [[partition, key]], prove: true }), op, epoch, (body) => {
      const answer = readAnswer(body, 1)
      if (typeof answer === 'string') throw new TypeError(answer)
      return heldOf(answer)[0]
    })
    return o.ok ? (o.value ?? undefined) : undefined
  }

  #store(member: Member, partition: number, key: Uint8Array, held: Held, op: Operation, epoch: string, hintFor?: string): Promise<Outcome<null>> {
    const item: StoreItem = held.proof ? [partition, key, held.set, hintFor ?? null, held.proof] : hintFor === undefined ? [partition, key, held.set] : [partition, key, held.set, hintFor]
    return this.#stores.submit(member, item, op, epoch)
  }


  #operation(call: CallOptions): Operation {
    return new Operation(this.clock, call.timeoutMs === undefined ? this.options.timeoutMs : checkTimeout('timeoutMs', call.timeoutMs), call.signal)
  }

  async get(key: Uint8Array, call: GetCall = {}): Promise<RawGetResult> {
    this.checkKey(key)
    const need = checkQuorum('r', call.r ?? this.options.r, this.n)
    const op = this.#operation(call)
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.#get(key, need, op)
      } catch (err) {
        // A node refused because our ring is out of date: refresh from it and try again (while nodes
        // are still converging on a change this can take a second round).
        const stale = err instanceof QuorumError ? ringFailure(err.replicas) : undefined
        if (!stale || !(await this.#ringRefused(stale, attempt, op))) {
          op.done()
          throw err
        }
      }
    }
  }

  async #get(key: Uint8Array, need: number, op: Operation): Promise<RawGetResult> {
    const plan = this.plan(key, need, true)
    const { partition } = plan
    const started = this.clock.now()
    this.#hedges = Math.min(10, this.#hedges + HEDGE_SHARE)
    const hedge = { ms: Math.min(this.#hedgeMs, op.remaining / 4), allow: this.#mayHedge }
    const g = gather(plan.targets, plan.requirements, (m) => this.#reads.submit(m, [partition, key], op, plan.epoch), hedge, this.clock)
    let answered: Outcome<Held | null>[]
    try {
      answered = await g.quorum
      this.#readTook(this.clock.now() - started)
    } catch (failed) {
      op.checkAborted()
      throw this.#quorumError('get', need, g.outcomes.filter((o) => o.ok).length, failuresOf(failed as Outcome<unknown>[]))
    }
    let set: DvvSet
    try {
      set = syncAnswers(answered.map((o) => (o.ok ? o.value?.set ?? null : null)))
    } catch {
      // A replica answered with bytes that are not a DVV set. Rare, so off the fast path: ask the
      // replicas a read spares too and wait for every one, count the undecodable answers as that
      // replica's failure, and go on if R remain.
      await g.widen()
      const sound: Outcome<Held | null>[] = []
      const failures: ReplicaFailure[] = []
      for (const o of g.outcomes) {
        if (!o.ok) failures.push(o.failure)
        else if (o.value === null || decodable(o.value.set)) sound.push(o)
        else failures.push({ id: o.member.id, url: o.member.url, cause: 'invalid-response', message: 'the replica answered with bytes that are not a version set' })
      }
      const soundIds = new Set(sound.map((o) => o.member.id))
      if (plan.requirements.some((req) => req.members.filter((m) => soundIds.has(m.id)).length < req.need)) {
        op.checkAborted()
        throw this.#quorumError('get', need, sound.length, failures)
      }
      answered = sound
      set = syncAnswers(sound.map((o) => (o.ok ? o.value?.set ?? null : null)))
    }
    const vector = join(set)
    const live = siblings(set)
    const first = answered[0].member.id
    const result: RawGetResult = { found: live.length > 0, siblings: live, set, vector, first, context: contextOf(vector, first, partsOf(answered, vector)) }
    if (this.options.readRepair && plan.targets.length > 1) {
      this.#repairAfter(g.all, g.outcomes, partition, key, op).catch((err) => {
        if (channels.readRepair.hasSubscribers) channels.readRepair.publish({ key, partition, error: err })
      })
    } else void g.all.then(() => op.done())
    return result
  }

  /** Whether a slow read may ask the replicas it spared (it takes one of the budget's reads). */
  readonly #mayHedge = (): boolean => {
    if (this.#hedges < 1) return false
    this.#hedges -= 1
    return true
  }

  /** A read reached its quorum in `ms`: every READ_TIMES / 4 reads, the hedge delay follows their 95th percentile. */
  #readTook(ms: number): void {
    this.#readTimes[this.#readsTimed++ % READ_TIMES] = ms
    if (this.#readsTimed % (READ_TIMES / 4) !== 0) return
    const sorted = this.#readTimes.slice(0, Math.min(this.#readsTimed, READ_TIMES)).sort()
    this.#hedgeMs = Math.max(READ_HEDGE_MS, sorted[Math.floor(sorted.length * 0.95)])
  }

  /** After answering: wait briefly for the slower replicas, then send the synced set to any that are behind. */
  async #repairAfter(all: Promise<void>, outcomes: Outcome<Held | null>[], partition: number, key: Uint8Array, op: Operation): Promise<void> {
    let timer: ClockTimer | undefined
    try {
      await Promise.race([all, new Promise<void>((r) => (timer = this.clock.setTimeout(r, this.options.readRepairWaitMs)))])
    } finally {
      this.clock.clearTimeout(timer)
      op.done()
    }
    const ok = outcomes.filter((o): o is Extract<Outcome<Held | null>, { ok: true }> => o.ok)
    // Only replicas that answered can be compared, and repaired.
    if (ok.length < 2) return
    const first = ok[0].value?.set ?? null
    if (ok.every((o) => bytesEqual(o.value?.set ?? null, first))) return
    // An answer that does not decode is left alone: repair only what is understood.
    const sound = ok.filter((o) => o.value === null || decodable(o.value.set))
    if (sound.length < 2) return
    const target = encodeSet(syncAnswers(sound.map((o) => o.value?.set ?? null)))
    const stale = sound.filter((o) => !bytesEqual(o.value?.set ?? null, target))
    if (stale.length === 0) return
    // Each stale replica gets the sets it lacks as the replicas answered them (it syncs them into its
    // own), not a merged set: those carry their nodes' proofs, which a replica requires of sets a
    // client relays in a cluster with a secret.
    let held = distinct(sound.flatMap((o) => (o.value ? [o.value] : [])))
    const repairOp = new Operation(this.clock, this.options.timeoutMs)
    const epoch = this.membership.view.epoch
    // In a cluster with a secret a relayed set needs its proof, which a read carries only when asked
    // (it costs an HMAC over the set): ask the replicas that answered those sets for them.
    if (held.some((h) => h.context !== undefined && h.proof === undefined)) {
      const sources = held.map((h) => sound.find((o) => o.value !== null && bytesEqual(o.value.set, h.set))!.member)
      held = distinct((await Promise.all(sources.map((m) => this.#proven(m, partition, key, repairOp, epoch)))).flatMap((h) => (h?.proof ? [h] : [])))
    }
    const results = await Promise.all(stale.map(async (o) => {
      const own = o.value?.set ?? null
      const sent = await Promise.all(held.filter((h) => !bytesEqual(h.set, own)).map((h) => this.#store(o.member, partition, key, h, repairOp, epoch)))
      return { member: o.member, ok: sent.every((r) => r.ok) }
    }))
    repairOp.done()
    channels.readRepair.hasSubscribers && channels.readRepair.publish({ key, partition, repaired: results.filter((r) => r.ok).map((r) => r.member.id) })
  }

  /**
   * Write a tombstone. With the context of a read, it supersedes what that read saw; without one, it
   * reads first (at R) and deletes what it finds.
   */
  async delete(key: Uint8Array, call: PutCall = {}): Promise<RawPutResult> {
    this.checkKey(key)
    // Checked before the read, which may find nothing and so never reach put().
    checkQuorum('w', call.w ?? this.options.w, this.n)
    if (call.strict !== undefined && typeof call.strict !== 'boolean') throw new InvalidArgumentError('strict must be true or false')
    if (call.context !== undefined) decodeContext(call.context)
    let context = call.context
    if (context === undefined) {
      // One deadline for the read and the write together.
      const timeoutMs = call.timeoutMs === undefined ? this.options.timeoutMs : checkTimeout('timeoutMs', call.timeoutMs)
      const started = this.clock.now()
      const read = await this.get(key, { timeoutMs, signal: call.signal })
      if (read.vector.length === 0) return { vector: [], coordinator: read.first, context: read.context, siblings: [], conflict: false }
      return this.put(key, null, { ...call, context: read.context, timeoutMs: Math.max(1, timeoutMs - (this.clock.now() - started)) })
    }
    return this.put(key, null, { ...call, context })
  }

  async put(key: Uint8Array, value: Uint8Array | null, call: PutCall = {}): Promise<RawPutResult> {
    this.checkKey(key)
    const need = checkQuorum('w', call.w ?? this.options.w, this.n)
    if (call.strict !== undefined && typeof call.strict !== 'boolean') throw new InvalidArgumentError('strict must be true or false')
    const strict = call.strict === true
    if (value !== null && !(value instanceof Uint8Array)) throw new InvalidArgumentError('value must be bytes, or null for a tombstone')
    if (value && value.byteLength > this.limits.maxValueBytes) throw new ValueTooLargeError(value.byteLength, this.limits.maxValueBytes)
    const ctx: Context = call.context === undefined ? { vector: [] } : decodeContext(call.context)
    const op = this.#operation(call)
    const operation = value === null ? 'delete' : 'put'
    try {
      let coordinated = await this.#coordinate(key, value, ctx, need, op)
      // The coordinator refused because of our ring (so it minted nothing): refresh and try again.
      for (let attempt = 1; !coordinated.ok; attempt++) {
        const stale = ringFailure(coordinated.failures)
        if (!stale || !(await this.#ringRefused(stale, attempt, op))) break
        coordinated = await this.#coordinate(key, value, ctx, need, op)
      }
      if (!coordinated.ok) {
        op.checkAborted()
        throw this.#quorumError(operation, need, 0, coordinated.failures)
      }
      const { plan, coordinator, held, set, failures } = coordinated
      const live = siblings(set)
      // The context handed back must cover only what the caller has seen. When the coordinator holds
      // nothing live but this write, the set's join is exactly that; when it also holds concurrent
      // values, the caller keeps its own context, so a follow-up write can never silently supersede
      // a value it never saw (it becomes a sibling instead).
      const alone = value === null ? live.length === 0 : live.length === 1 && bytesEqual(live[0], value)
      const vector = alone ? join(set) : ctx.vector
      const parts = alone ? held.context && [[vectorBytes(vector), held.context] satisfies ContextPart] : ctx.parts
      const result: RawPutResult = { vector, coordinator: coordinator.id, context: contextOf(vector, coordinator.id, parts), siblings: live, conflict: !alone }
      let rep = this.#replicate(plan, key, held, coordinator, op, strict)
      for (let attempt = 1; ; attempt++) {
        try {
          await rep.quorum
          break
        } catch {
          op.checkAborted()
          const all = attempt === 1 ? [...failures, ...rep.failures] : rep.failures
          // Some replicas refused our ring: store the same (idempotent) set where a fresh ring says,
          // as often as the coordination may ask again (during a join the ring can move twice).
          const stale = ringFailure(all)
          if (!stale || !(await this.#ringRefused(stale, attempt, op))) throw this.#quorumError(operation, need, rep.acked(), perReplica(all))
          rep = this.#replicate(this.plan(key, need), key, held, coordinator, op, strict)
        }
      }
      void rep.all.then(() => op.done())
      return result
    } catch (err) {
      op.done()
      throw err
    }
  }

  /**
   * Send the coordinated set to the key's other replicas and settle at W (in both rings during a
   * change), with hints for replicas that are down or fail (see WriteQuorum). Resolves when every
   * requirement is met; rejects once one can no longer be.
   */
  #replicate(plan: Plan, key: Uint8Array, held: Held, coordinator: Member, op: Operation, strict: boolean): {
    quorum: Promise<void>
    all: Promise<void>
    failures: ReplicaFailure[]
    acked: () => number
  } {
    const slots = new Set(plan.requirements.flatMap((r) => r.members.map((m) => m.id)))
    const q = new WriteQuorum({
      requirements: plan.requirements,
      coordinator,
      spares: this.membership.view.current.preferenceList(plan.partition).filter((m) => !slots.has(m.id) && m.id !== coordinator.id),
      strict,
      up: (id) => this.membership.up(id),
      over: () => op.over,
    })
    let inFlight = 0
    let settled = false
    let resolveQuorum!: () => void
    let rejectQuorum!: (e: unknown) => void
    let resolveAll!: () => void
    const quorum = new Promise<void>((res, rej) => ((resolveQuorum = res), (rejectQuorum = rej)))
    quorum.catch(() => undefined)
    const all = new Promise<void>((res) => (resolveAll = res))
    const check = () => {
      if (!settled) {
        const v = q.verdict()
        if (v !== 'waiting') {
          settled = true
          if (v === 'met') resolveQuorum()
          else rejectQuorum(q.failures)
        }
      }
      if (inFlight === 0) resolveAll()
    }
    const run = (actions: StoreAction[]) => {
      for (const a of actions) {
        inFlight++
        // A primary silent for half the time left may be cut off (its store would only fail at the
        // deadline, too late to hint): its copy also goes to a fallback then.
        const hedge = a.hintFor === undefined ? this.clock.setTimeout(() => run(q.hedge(a.to.id)), op.remaining / 2) : undefined
        void this.#store(a.to, plan.partition, key, held, op, plan.epoch, a.hintFor).then((o) => {
          inFlight--
          this.clock.clearTimeout(hedge)
          run(o.ok ? q.result(a, true) : q.result(a, false, o.failure, !!ringFailure([o.failure])))
          check()
        })
      }
    }
    run(q.start())
    check()
    return { quorum, all, failures: q.failures, acked: () => q.acked() }
  }

  /**
   * Mint the write's version on one replica: the one that answered the read first, if it is up. When
   * no replica did anything and one of them is starting (503 ZH_NOT_READY), the round goes again with
   * back-off until shortly before the deadline: nothing was minted, so asking again is safe.
   */
  async #coordinate(key: Uint8Array, value: Uint8Array | null, ctx: Context, need: number, op: Operation): Promise<Coordinated> {
    const round = () => this.#coordinateOnce(key, value, ctx, need, op)
    const starting = (c: Coordinated) => !c.ok && c.failures.some(notReady) && c.failures.every(notDelivered)
    const first = await round()
    return starting(first) && !op.over ? retryWithin(this.clock, op, round, starting, () => false) : first
  }

  /** One round of #coordinate: the candidates in turn, moving on only while a request certainly did nothing. */
  async #coordinateOnce(key: Uint8Array, value: Uint8Array | null, ctx: Context, need: number, op: Operation): Promise<Coordinated> {
    const plan = this.plan(key, need)
    // Prefer a replica in both rings while they differ, then the node this engine runs in (it mints
    // with no HTTP request), then the reader's, then any that is up.
    const inNext = new Set(plan.next.map((m) => m.id))
    const local = this.options.local
    const rank = (m: Member) => (m.id === local ? 3 : m.id === ctx.coordinator ? 2 : 0) + (this.membership.up(m.id) ? 8 : 0) + (inNext.has(m.id) ? 4 : 0)
    const candidates = [...plan.current].sort((a, b) => rank(b) - rank(a))
    const req: CoordinateRequest = ctx.parts ? { partition: plan.partition, key, context: ctx.vector, value, parts: ctx.parts } : { partition: plan.partition, key, context: ctx.vector, value }
    const failures: ReplicaFailure[] = []
    for (const m of candidates) {
      const sent = await this.#coordinations.submit(m, req, op, plan.epoch)
      // A node that refused this write alone (in a batch of several) refused it as a request of its own.
      const o: Outcome<Held> = !sent.ok ? sent : sent.value.ok ? { ok: true, member: m, value: sent.value.held } : { ok: false, member: m, failure: { id: m.id, url: m.url, cause: 'http', status: sent.value.status, code: sent.value.code, message: sent.value.message } }
      if (sent.ok && !o.ok) this.#record(m, o)
      if (!o.ok) {
        failures.push(o.failure)
        // Minting a version is not idempotent: move on only if the request never reached the node.
        if (!notDelivered(o.failure)) return { ok: false, failures }
        continue
      }
      try {
        return { ok: true, plan, coordinator: m, held: o.value, set: decodeSet(o.value.set), failures }
      } catch (err) {
        failures.push({ id: m.id, url: m.url, cause: 'invalid-response', message: (err as Error).message })
        return { ok: false, failures }
      }
    }
    return { ok: false, failures }
  }

  /**
   * Where a key lives and what its replicas hold: its preference list, each replica (of the current
   * ring, and of the next during a join or leave) read directly without repair, the hints any member
   * holds for it, and whether the partition is moving. For operators and tests.
   */
  async explain(key: Uint8Array, call: CallOptions = {}): Promise<Explanation> {
    this.checkKey(key)
    const view = this.membership.view
    const partition = view.current.partitionOf(key)
    const op = this.#operation(call)
    const { current, next } = view.replicas(partition)
    const incoming = next.filter((m) => !current.some((c) => c.id === m.id))
    const replicas = [...current, ...incoming]
    // Hints can be held by any member that took a write for a replica that was down: every live one is asked.
    const holders = [...view.members.values()].filter((m) => m.status !== 'left' && !m.removed)
    const askable = holders.filter((m) => this.membership.up(m.id))
    const hintsBody = frames.hints.encode({ partition, key })
    const [outcomes, hintOutcomes] = await Promise.all([
      Promise.all(replicas.map((m) => this.#reads.submit(m, [partition, key], op, view.epoch))),
      Promise.all(askable.map((m) => this.#ask(m, Paths.hints, hintsBody, op, view.epoch, (b) => {
        const answer = frames.hints.decode(b, { partition, key })
        if (typeof answer === 'string') throw new TypeError(answer)
        return answer.hints
      }))),
    ])
    op.done()
    const primaries = new Set(current.map((m) => m.id))
    const states = outcomes.map((o): ReplicaExplanation => {
      const base = { id: o.member.id, url: o.member.url, role: primaries.has(o.member.id) ? ('primary' as const) : ('incoming' as const), found: false, tombstone: false, siblings: [] as Uint8Array[], digest: null }
      if (!o.ok) return { ...base, error: o.failure }
      if (o.value === null) return base
      const live = liveOf(o.value.set)
      if (live instanceof Error) return { ...base, error: { id: o.member.id, url: o.member.url, cause: 'invalid-response' as const, message: live.message } }
      return { ...base, found: live.length > 0, tombstone: live.length === 0, siblings: live, digest: md5(o.value.set).toString('hex') }
    })
    const hints = hintOutcomes.flatMap((o) => (o.ok ? o.value.map(([target, set]) => ({ holder: o.member.id, target, set })) : [])).flatMap(({ holder, target, set }) => {
      const live = liveOf(set)
      return live instanceof Error ? [] : [{ holder, target, tombstone: live.length === 0, siblings: live, digest: md5(set).toString('hex') }]
    })
    const asked = new Set(hintOutcomes.filter((o) => o.ok).map((o) => o.member.id))
    const ready = incoming.filter((m) => view.members.get(m.id)?.ready === view.next.epoch).map((m) => m.id)
    const list = view.current.preferenceList(partition)
    return {
      epoch: view.epoch,
      partition,
      preferenceList: list.map((m, i) => ({ id: m.id, url: m.url, role: i < view.current.n ? ('primary' as const) : ('spare' as const), up: this.membership.up(m.id) })),
      replicas: states,
      // The primaries: an incoming replica catches up by the handoff, not by repair.
      agree: states.filter((r) => r.role === 'primary').every((r) => !r.error && r.digest === states[0].digest),
      hints,
      unasked: holders.filter((m) => !asked.has(m.id)).map((m) => m.id),
      moving: incoming.length > 0 ? { from: current.map((m) => m.id), to: next.map((m) => m.id), ready } : null,
    }
  }
}

/** The live values of an encoded set (none for a tombstone), or the error that it does not decode. */
function liveOf(set: Uint8Array): Uint8Array[] | Error {
  try {
    return siblings(decodeSet(set))
  } catch (err) {
    return err as Error
  }
}

function failuresOf(outcomes: Outcome<unknown>[]): ReplicaFailure[] {
  return outcomes.flatMap((o) => (o.ok ? [] : [o.failure]))
}

/** One failure per replica (the latest): a replica that refused the coordination and then a store is listed once. */
function perReplica(failures: ReplicaFailure[]): ReplicaFailure[] {
  return [...new Map(failures.map((f) => [f.id, f])).values()]
}

function decodable(bytes: Uint8Array): boolean {
  try {
    decodeSet(bytes)
    return true
  } catch {
    return false
  }
}

/** Sync the sets the replicas answered with; identical bytes (the common case) decode once. */
export function syncAnswers(raws: (Uint8Array | null)[]): DvvSet {
  const present = raws.filter((r): r is Uint8Array => r !== null)
  if (present.length === 0) return []
  if (present.every((r) => bytesEqual(r, present[0]))) return decodeSet(present[0])
  return syncAll(present.map((r) => decodeSet(r)))
}

export function contextOf(vector: VersionVector, coordinator: string, parts?: ContextPart[]): string {
  return encodeContext(parts && parts.length > 0 ? { vector, coordinator, parts } : { vector, coordinator })
}

/**
 * The signed parts of a read's context: one per distinct set the replicas answered with (their joins'
 * join is the read's vector), each with the MAC its node made. None in a cluster without a secret.
 */
function partsOf(answered: readonly Outcome<Held | null>[], vector: VersionVector): ContextPart[] | undefined {
  // A cluster without a secret signs nothing: no work on its reads.
  if (!answered.some((o) => o.ok && o.value?.context !== undefined)) return undefined
  const present = answered.filter((o) => o.ok && o.value !== null)
  const first = present[0]?.ok ? present[0].value?.set : undefined
  const only = first !== undefined && present.every((o) => o.ok && bytesEqual(o.value!.set, first))
  let parts: ContextPart[] | undefined
  const seen: Uint8Array[] = []
  for (const o of answered) {
    const h = o.ok ? o.value : null
    if (!h?.context || seen.some((s) => bytesEqual(s, h.set))) continue
    seen.push(h.set)
    // The common case, every replica alike: the read's vector is this set's join, already computed.
    ;(parts ??= []).push([vectorBytes(seen.length === 1 && only ? vector : join(decodeSet(h.set))), h.context])
  }
  return parts
}

/** Sets with distinct bytes, first of each kept. */
function distinct(held: Held[]): Held[] {
  const out: Held[] = []
  for (const h of held) if (!out.some((o) => bytesEqual(o.set, h.set))) out.push(h)
  return out
}

/**
 * The error of an operation that did not reach its quorum. A replica that refused the credentials
 * (401, 403) or the context refuses them again: that is the error, typed, whatever the others did.
 */
function quorumError(operation: 'get' | 'put' | 'delete', need: number, succeeded: number, failures: ReplicaFailure[], credentials: boolean): ZerohopError {
  const auth = failures.find((f) => f.code === ErrorCodes.BAD_CONTEXT || (credentials && (f.code === ErrorCodes.UNAUTHENTICATED || f.code === ErrorCodes.FORBIDDEN)))
  if (auth) {
    const message = `${operation} refused by ${auth.id}: ${auth.message}`
    if (auth.code === ErrorCodes.BAD_CONTEXT) return new BadContextError(message)
    return auth.code === ErrorCodes.UNAUTHENTICATED ? new UnauthenticatedError(message) : new ForbiddenError(message)
  }
  return new QuorumError(operation, need, succeeded, failures)
}
