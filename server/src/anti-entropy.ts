// Anti-entropy (Dynamo §4.7): in the background, replicas of a partition compare Merkle trees and
// exchange only the keys whose sets differ, so a replica that missed writes (down too long for its
// hints, or a lost hint) converges without clients reading every key. Each partition's tree is built
// by one scan at start and then kept current write by write (`onWrite`): an exchange reads no data
// it does not send, and sends little more than the keys that differ. Each round compares the roots of
// every partition two replicas share in one request, then exchanges only the partitions that differ,
// so the time to agree follows the differences, not the number of partitions.
import {
  ErrorCodes,
  HttpError,
  InvalidArgumentError,
  MAX_BATCH,
  MerkleTree,
  Paths,
  differingLeaves,
  bytesEqual,
  show,
  decodeSet,
  sleep,
  AbortError,
  type Clock,
  type KeysRequest,
  type KeysResponse,
  type RootsRequest,
  type RootsResponse,
  type TreeRequest,
  type TreeResponse,
} from '@zerohop/core'
import { ReplicaClient, type ReplicaRequestOptions } from '@zerohop/client'
import { dataKey } from './replica.js'
import type { Store } from './storage/store.js'
import { DataScan } from './scan.js'

/** The anti-entropy endpoints (their shapes: RootsRequest, TreeRequest, KeysRequest in core's wire.ts). */
export const AntiEntropyPaths = { roots: Paths.roots, tree: Paths.tree, keys: Paths.keys } as const

/** Most node indices one tree request may ask for. */
export const MAX_TREE_INDICES = 4096
/** Most leaves one keys request may ask for. */
export const MAX_KEYS_LEAVES = 1024
/** Most partitions one roots request may ask for (64 KiB of roots). */
export const MAX_ROOTS_PARTITIONS = 4096
/** Most one-sided tombstones whose copy waits (see #oneSided); past that they are copied at once. */
const MAX_ONE_SIDED = 10_000

export type { RootsRequest, RootsResponse, TreeRequest, TreeResponse, KeysRequest, KeysResponse }

export interface Peer {
  id: string
  url: string
}

export interface AntiEntropyOptions {
  /** The node's storage: scanned once by `start()` (data keys, see replica.ts) and read for repairs. */
  store: Store
  /** The scan of the store at start-up, shared with the node's other parts (default: one of its own). */
  scan?: DataScan
  /** Sync a set received from a peer into the local one (`Replica.store`); true when the local state changed. */
  storeSet: (partition: number, key: Uint8Array, set: Uint8Array) => Promise<boolean>
  /** How requests reach peers (an error status rejects with the peer's HttpError). */
  replicaClient: ReplicaClient
  clock: Clock
  /** Partitions this node replicates, and may compare now ([] while anti-entropy must pause). */
  partitions: () => number[]
  /** Live replicas of `partition` other than this node. */
  peers: (partition: number) => Peer[]
  /**
   * Time between two rounds. A round compares, with each peer in turn, the roots of every partition
   * the two share (one request), then exchanges the partitions whose roots differ. Default 10 000.
   */
  intervalMs?: number
  /** Most keys compared and repaired per second, so repairs never starve clients. Default 5000. */
  maxKeysPerSecond?: number
  /** Keys per read / store request of a repair, at most MAX_BATCH. Default 500. */
  batchKeys?: number
  /** Leaves per keys request. Default 64. */
  leavesPerRequest?: number
  /** Shuffles the order in which a round exchanges the differing partitions, in [0, 1). Default Math.random. */
  random?: () => number
  /** Tree shape: must be the same on every node. Default fanout 16, depth 3 (4096 leaves). */
  fanout?: number
  depth?: number
  /**
   * A roots request (`partition` undefined) or an exchange of the loop failed: the loop leaves that
   * peer until the next round and goes on with the next peer.
   */
  onError?: (err: unknown, partition: number | undefined, peer: Peer) => void
}

export const antiEntropyDefaults = {
  intervalMs: 10_000,
  maxKeysPerSecond: 5000,
  batchKeys: 500,
  leavesPerRequest: 64,
  fanout: 16,
  depth: 3,
} as const

type Resolved = Required<Omit<AntiEntropyOptions, 'onError' | 'scan'>> & Pick<AntiEntropyOptions, 'onError'> & { scan: DataScan }

function resolve(o: AntiEntropyOptions): Resolved {
  const r = { ...antiEntropyDefaults, random: Math.random, ...o, scan: o.scan ?? new DataScan(o.store) } as Resolved
  for (const name of ['storeSet', 'partitions', 'peers', 'random'] as const) {
    if (typeof r[name] !== 'function') throw new InvalidArgumentError(`anti-entropy option ${name} must be a function`)
  }
  if (!(r.replicaClient instanceof ReplicaClient)) throw new InvalidArgumentError('anti-entropy option replicaClient must be a ReplicaClient (new ReplicaClient(transport))')
  if (!r.store || typeof r.store.pages !== 'function') throw new InvalidArgumentError('anti-entropy option store must be the node Store')
  if (!(r.scan instanceof DataScan) || r.scan.store !== r.store) throw new InvalidArgumentError('anti-entropy option scan must be a DataScan of the same store (new DataScan(store)), or unset')
  if (!r.clock || typeof r.clock.setTimeout !== 'function') throw new InvalidArgumentError('anti-entropy option clock must be a Clock (systemClock outside tests)')
  if (!Number.isInteger(r.intervalMs) || r.intervalMs < 1) throw new InvalidArgumentError(`anti-entropy intervalMs must be a positive integer (got ${String(r.intervalMs)}); the default is ${antiEntropyDefaults.intervalMs}`)
  if (typeof r.maxKeysPerSecond !== 'number' || !(r.maxKeysPerSecond > 0)) {
    throw new InvalidArgumentError(`anti-entropy maxKeysPerSecond must be a positive number, or Infinity for no limit (got ${String(r.maxKeysPerSecond)}); the default is ${antiEntropyDefaults.maxKeysPerSecond}`)
  }
  if (!Number.isInteger(r.batchKeys) || r.batchKeys < 1 || r.batchKeys > MAX_BATCH) throw new InvalidArgumentError(`anti-entropy batchKeys must be an integer from 1 to ${MAX_BATCH} (got ${String(r.batchKeys)})`)
  if (!Number.isInteger(r.leavesPerRequest) || r.leavesPerRequest < 1 || r.leavesPerRequest > MAX_KEYS_LEAVES) {
    throw new InvalidArgumentError(`anti-entropy leavesPerRequest must be an integer from 1 to ${MAX_KEYS_LEAVES} (got ${String(r.leavesPerRequest)})`)
  }
  return r
}

/**
 * One partition's tree, and which keys it holds: key → digest of the key and its stored set (see
 * MerkleTree.digest), both as latin1 strings. Strings, and one map per partition rather than one per
 * leaf: a node holding a million keys keeps a million of these.
 */
interface PartitionState {
  tree: MerkleTree
  keys: Map<string, string>
}

export interface ExchangeResult {
  /** Leaves whose hashes differed. */
  leaves: number
  /** Keys whose digests differed. */
  keys: number
  /** Keys whose sets differed when read, and were sent one way or both. */
  repaired: number
}

const latin1 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('latin1')

function bad(message: string): HttpError {
  return new HttpError(400, ErrorCodes.BAD_BODY, message)
}

function asMap(x: unknown, path: string): Record<string, unknown> {
  if (x === null || typeof x !== 'object' || Array.isArray(x)) throw bad(`${path} takes a MessagePack map`)
  return x as Record<string, unknown>
}

const isPartition = (p: unknown): p is number => Number.isInteger(p) && (p as number) >= 0 && (p as number) <= 0xffff

function intsIn(x: unknown, field: string, max: number, limit: number): number[] {
  if (!Array.isArray(x) || x.length === 0 || x.length > max) throw bad(`${field} must be an array of 1 to ${max} integers`)
  for (const i of x) if (!Number.isInteger(i) || i < 0 || i >= limit) throw bad(`${field} must be integers from 0 to ${limit - 1}; got ${show(i)}`)
  return x as number[]
}

export class AntiEntropy {
  readonly #o: Resolved
  readonly #parts = new Map<number, PartitionState>()
  // Answers for partitions without data here (and carries the shape); never updated.
  readonly #empty: MerkleTree
  // While the start scan runs: keys (per partition) written since it began. The scan skips them, as
  // onWrite already accounted for a state at least as new as the one the scan would read.
  #touched?: Map<number, Set<string>>
  #building?: Promise<void>
  #ready = false
  #stopped = true
  #timer?: ReturnType<Clock['setTimeout']>
  #running?: Promise<void>
  #abort?: AbortController
  // Per peer id: the partition whose exchange failed in the last round with it. The next round takes
  // it last, so a partition that keeps failing does not hold back the others.
  readonly #failed = new Map<string, number>()
  // Rate limit: when the next batch of keys may start (clock ms).
  #nextAt = -Infinity
  // Keys found on one side only, as a tombstone: when first seen (clock ms), by peer, partition and
  // key. A reap (reaper.ts) makes exactly that state for a moment, between the other replicas'
  // deletes and its coordinator's; copying the tombstone back then would keep the key for another
  // grace period. So such a key is copied only if it still differs at least an interval later, as one
  // left by a reap that failed halfway does (the reaper counts on that copy).
  readonly #oneSided = new Map<string, { first: number; round: number }>()
  // Rounds started (tags the sightings of one-sided tombstones).
  #roundNo = 0

  readonly metrics = {
    /** Roots comparisons completed: all the partitions shared with one peer, in one request (loop or compareRoots()). */
    rounds: 0,
    /** Exchanges completed (by the loop or by exchange()): partitions whose roots differed, descended and synced. */
    exchanges: 0,
    /** Exchanges and roots comparisons that failed (one cut short by stop() counts too). */
    failures: 0,
    keysRepaired: 0,
    bytesSent: 0,
    bytesReceived: 0,
    /** Duration of the last completed exchange. */
    lastExchangeMs: 0,
    /** When (clock ms) the last exchange completed. */
    lastExchangeAt: 0,
    /** When (clock ms) the last roots comparison completed. */
    lastRoundAt: 0,
  }

  // Every request to a peer counts its bytes, both ways.
  readonly #metered: ReplicaRequestOptions = {
    onReply: (reply, sent) => {
      this.metrics.bytesSent += sent
      this.metrics.bytesReceived += reply.body.byteLength
    },
  }

  constructor(options: AntiEntropyOptions) {
    this.#o = resolve(options)
    this.#empty = new MerkleTree({ fanout: this.#o.fanout, depth: this.#o.depth })
  }

  get ready(): boolean {
    return this.#ready
  }

  /** Build every partition's tree by one scan of the store. Idempotent; start() calls it. */
  build(): Promise<void> {
    this.#building ??= this.#scan().catch((err: unknown) => {
      // A failed scan (storage error) may be retried by the next call.
      this.#building = undefined
      throw err
    })
    return this.#building
  }

  async #scan(): Promise<void> {
    const touched = (this.#touched = new Map<number, Set<string>>())
    try {
      await this.#o.scan.visit((p, key, set) => {
        if (touched.size > 0 && touched.get(p)?.has(latin1(key))) return
        this.#set(p, key, set)
      })
    } finally {
      this.#touched = undefined
    }
    this.#ready = true
  }

  /**
   * A key's stored set changed: `before` and `after` are the stored bytes (undefined = absent). Call it
   * for every change of a data key, after the write and in write order per key (inside the Replica's
   * key lock). The tree follows the digest it last recorded for the key, so `before` is not needed
   * for correctness; it is taken so the call mirrors MerkleTree.update.
   */
  onWrite(partition: number, key: Uint8Array, _before: Uint8Array | undefined, after: Uint8Array | undefined): void {
    if (this.#touched) {
      let keys = this.#touched.get(partition)
      if (!keys) this.#touched.set(partition, (keys = new Set()))
      keys.add(latin1(key))
    }
    this.#set(partition, key, after)
  }

  /** Root hash of a partition's tree (the empty root when this node holds no data of it). */
  root(partition: number): Buffer {
    return (this.#parts.get(partition)?.tree ?? this.#empty).root()
  }

  /** Number of keys this node holds in a partition, as the tree knows them. */
  keyCount(partition: number): number {
    return this.#parts.get(partition)?.keys.size ?? 0
  }

  #set(partition: number, key: Uint8Array, set: Uint8Array | undefined): void {
    let st = this.#parts.get(partition)
    const k = latin1(key)
    const old = st?.keys.get(k)
    if (old === undefined && set === undefined) return
    const digest = set && this.#empty.digest(key, set).toString('latin1')
    if (old === digest) return
    if (!st) {
      st = { tree: new MerkleTree({ fanout: this.#o.fanout, depth: this.#o.depth }), keys: new Map() }
      this.#parts.set(partition, st)
    }
    st.tree.updateDigests(this.#empty.leafOf(key), old === undefined ? undefined : Buffer.from(old, 'latin1'), digest === undefined ? undefined : Buffer.from(digest, 'latin1'))
    if (digest !== undefined) st.keys.set(k, digest)
    else {
      st.keys.delete(k)
      if (st.keys.size === 0) this.#parts.delete(partition)
    }
  }

  #checkServing(req: Record<string, unknown>, path: string): number {
    this.#checkShape(req, path)
    const p = req.partition
    if (!isPartition(p)) throw new HttpError(400, ErrorCodes.UNKNOWN_PARTITION, `${path}: partition must be an integer from 0 to 65535`)
    return p
  }

  // Ready, and the asker's trees have this node's shape.
  #checkShape(req: Record<string, unknown>, path: string): void {
    if (!this.#ready) throw new HttpError(503, ErrorCodes.NOT_READY, 'this node is still building its anti-entropy trees; retry shortly')
    for (const k of ['fanout', 'depth'] as const) {
      if (req[k] !== undefined && !Number.isSafeInteger(req[k])) throw new HttpError(400, ErrorCodes.BAD_BODY, `${path}: ${k} must be an integer, got ${show(req[k])}`)
    }
    if ((req.fanout !== undefined && req.fanout !== this.#o.fanout) || (req.depth !== undefined && req.depth !== this.#o.depth)) {
      throw new HttpError(
        409,
        ErrorCodes.CLUSTER_MISMATCH,
        `${path}: the asker's Merkle trees have fanout ${String(req.fanout)} and depth ${String(req.depth)}, this node's fanout ${this.#o.fanout} and depth ${this.#o.depth}; run every node with the same anti-entropy tree options`,
      )
    }
  }

  /** POST /v1/ae/roots: the root of each of some partitions' trees. */
  handleRoots(body: unknown): RootsResponse {
    const req = asMap(body, AntiEntropyPaths.roots)
    this.#checkShape(req, AntiEntropyPaths.roots)
    const ps = req.partitions
    if (!Array.isArray(ps) || ps.length === 0 || ps.length > MAX_ROOTS_PARTITIONS) throw bad(`partitions must be an array of 1 to ${MAX_ROOTS_PARTITIONS} integers`)
    for (const p of ps) {
      if (!isPartition(p)) throw new HttpError(400, ErrorCodes.UNKNOWN_PARTITION, `${AntiEntropyPaths.roots}: partitions must be integers from 0 to 65535; got ${show(p)}`)
    }
    return { roots: (ps as number[]).map((p) => this.root(p)) }
  }

  /** POST /v1/ae/tree: hashes of some nodes of one level of a partition's tree. */
  handleTree(body: unknown): TreeResponse {
    const req = asMap(body, AntiEntropyPaths.tree)
    const p = this.#checkServing(req, AntiEntropyPaths.tree)
    const { depth } = this.#o
    const level = req.level
    if (!Number.isInteger(level) || (level as number) < 0 || (level as number) > depth) throw bad(`level must be an integer from 0 (the root) to ${depth} (the leaves)`)
    const indices = intsIn(req.indices, 'indices', MAX_TREE_INDICES, this.#empty.width(level as number))
    return { hashes: (this.#parts.get(p)?.tree ?? this.#empty).level(level as number, indices) }
  }

  /** POST /v1/ae/keys: the keys of some leaves of a partition, with the digest of their stored set. */
  handleKeys(body: unknown): KeysResponse {
    const req = asMap(body, AntiEntropyPaths.keys)
    const p = this.#checkServing(req, AntiEntropyPaths.keys)
    const leaves = intsIn(req.leaves, 'leaves', MAX_KEYS_LEAVES, this.#empty.leaves)
    const keys: [Uint8Array, Uint8Array][] = []
    for (const [k, d] of this.#keysIn(p, leaves)) keys.push([Buffer.from(k, 'latin1'), Buffer.from(d, 'latin1')])
    return { keys }
  }

  /** The keys of `leaves` in a partition, with their digests (as latin1 strings). */
  #keysIn(partition: number, leaves: readonly number[]): Map<string, string> {
    const out = new Map<string, string>()
    const st = this.#parts.get(partition)
    if (!st) return out
    const wanted = new Set(leaves)
    for (const [k, d] of st.keys) if (wanted.has(this.#empty.leafOf(k))) out.set(k, d)
    return out
  }

  /**
   * Compare the roots of `partitions` with one peer's, one request per MAX_ROOTS_PARTITIONS: the
   * partitions whose roots differ, in the order given. Both must replicate every one of them (the peer
   * refuses otherwise, 409 ZH_NOT_REPLICA).
   */
  async compareRoots(peerUrl: string, partitions: readonly number[]): Promise<number[]> {
    try {
      await this.build()
      const { fanout, depth } = this.#o
      const differ: number[] = []
      for (let i = 0; i < partitions.length; i += MAX_ROOTS_PARTITIONS) {
        const chunk = partitions.slice(i, i + MAX_ROOTS_PARTITIONS)
        const { roots } = await this.#o.replicaClient.roots(peerUrl, { partitions: chunk, fanout, depth }, this.#metered)
        chunk.forEach((p, j) => {
          if (!bytesEqual(this.root(p), roots[j])) differ.push(p)
        })
      }
      this.metrics.rounds++
      this.metrics.lastRoundAt = this.#o.clock.now()
      return differ
    } catch (err) {
      this.metrics.failures++
      throw err
    }
  }

  /**
   * Compare one partition with one peer and repair both sides: descend the trees into differing
   * nodes only, compare the keys of differing leaves, then pull the peer's sets of the keys that
   * differ (stored through `storeSet`) and push ours to the peer (/v1/replica/store).
   */
  async exchange(partition: number, peerUrl: string, signal?: AbortSignal): Promise<ExchangeResult> {
    try {
      return await this.#exchange(partition, peerUrl, signal)
    } catch (err) {
      this.metrics.failures++
      throw err
    }
  }

  async #exchange(partition: number, peerUrl: string, signal?: AbortSignal): Promise<ExchangeResult> {
    await this.build()
    const { clock, fanout, depth } = this.#o
    const started = clock.now()
    const tree = this.#parts.get(partition)?.tree ?? this.#empty
    const leaves = await differingLeaves(tree, async (level, indices) => {
      if (signal?.aborted) throw new AbortError({ cause: signal.reason })
      const out: Uint8Array[] = []
      for (let i = 0; i < indices.length; i += MAX_TREE_INDICES) {
        const chunk = indices.slice(i, i + MAX_TREE_INDICES)
        out.push(...(await this.#o.replicaClient.tree(peerUrl, { partition, fanout, depth, level, indices: chunk }, this.#metered)).hashes)
      }
      return out
    })
    const result: ExchangeResult = { leaves: leaves.length, keys: 0, repaired: 0 }
    // A batch is never more than a second's worth of keys, so the rate limit holds from the first one.
    const batch = Math.max(1, Math.min(this.#o.batchKeys, Math.floor(this.#o.maxKeysPerSecond)))
    const pending: Uint8Array[] = []
    for (let i = 0; i < leaves.length; i += this.#o.leavesPerRequest) {
      const chunk = leaves.slice(i, i + this.#o.leavesPerRequest)
      if (signal?.aborted) throw new AbortError({ cause: signal.reason })
      const theirs = (await this.#o.replicaClient.keys(peerUrl, { partition, fanout, depth, leaves: chunk }, this.#metered)).keys
      // Ours are read after theirs arrived: a write in between only adds a key that then compares equal.
      const ours = this.#keysIn(partition, chunk)
      const differ: Uint8Array[] = []
      const seen = new Set<string>()
      for (const [key, digest] of theirs) {
        const k = latin1(key)
        seen.add(k)
        const mine = ours.get(k)
        if (mine === undefined || mine !== latin1(digest)) differ.push(key)
      }
      for (const k of ours.keys()) if (!seen.has(k)) differ.push(Buffer.from(k, 'latin1'))
      result.keys += differ.length
      // Full batches now; the rest waits for the next leaves' keys, so batches stay full.
      pending.push(...differ)
      while (pending.length >= batch) result.repaired += await this.#repair(partition, peerUrl, pending.splice(0, batch), signal)
    }
    if (pending.length > 0) result.repaired += await this.#repair(partition, peerUrl, pending, signal)
    this.metrics.exchanges++
    this.metrics.keysRepaired += result.repaired
    this.metrics.lastExchangeAt = clock.now()
    this.metrics.lastExchangeMs = this.metrics.lastExchangeAt - started
    return result
  }

  async #repair(partition: number, peerUrl: string, keys: Uint8Array[], signal?: AbortSignal): Promise<number> {
    await this.#pace(keys.length, signal)
    const local = await this.#o.store.getMany(keys.map((k) => dataKey(partition, k)))
    const { sets } = await this.#o.replicaClient.read(peerUrl, { keys: keys.map((k) => [partition, k]) }, this.#metered)
    const pull: [Uint8Array, Uint8Array][] = []
    const push: [number, Uint8Array, Uint8Array][] = []
    keys.forEach((k, i) => {
      const ours = local[i] ?? null
      const theirs = sets[i] ?? null
      if (bytesEqual(ours, theirs)) return
      if (!ours !== !theirs && this.#waits(peerUrl, partition, k, (ours ?? theirs)!)) return
      if (theirs) pull.push([k, theirs])
      if (ours) push.push([partition, k, ours])
    })
    // Push what we held before pulling: the peer syncs it with its own set, as we sync theirs with ours.
    if (push.length > 0) await this.#o.replicaClient.store(peerUrl, { items: push }, this.#metered)
    await Promise.all(pull.map(([k, s]) => this.#o.storeSet(partition, k, s)))
    return new Set([...pull.map(([k]) => latin1(k)), ...push.map(([, k]) => latin1(k))]).size
  }

  // A key held on one side only: true while its copy waits (see #oneSided).
  #waits(peerUrl: string, partition: number, key: Uint8Array, set: Uint8Array): boolean {
    let tombstone: boolean
    try {
      const entries = decodeSet(set)
      tombstone = entries.length > 0 && entries.every((e) => e[2].every((v) => v === null))
    } catch {
      return false
    }
    if (!tombstone) return false
    const id = `${peerUrl} ${partition} ${latin1(key)}`
    const now = this.#o.clock.now()
    const seen = this.#oneSided.get(id)
    if (seen === undefined) {
      if (this.#oneSided.size >= MAX_ONE_SIDED) return false
      this.#oneSided.set(id, { first: now, round: this.#roundNo })
      return true
    }
    seen.round = this.#roundNo
    if (now - seen.first < this.#o.intervalMs) return true
    this.#oneSided.delete(id)
    return false
  }

  // Let `n` more keys through at most maxKeysPerSecond: wait until the previous batches' share of
  // time has passed. A batch is charged before it runs, so bursts are at most one batch.
  async #pace(n: number, signal?: AbortSignal): Promise<void> {
    const { clock, maxKeysPerSecond } = this.#o
    if (signal?.aborted) throw new AbortError({ cause: signal.reason })
    if (maxKeysPerSecond === Infinity) return
    const now = clock.now()
    const at = Math.max(this.#nextAt, now)
    this.#nextAt = at + (n * 1000) / maxKeysPerSecond
    if (at > now) await sleep(clock, at - now, signal)
    if (signal?.aborted) throw new AbortError({ cause: signal.reason })
  }

  /** Build the trees, then run a round every intervalMs (after the previous round ended). */
  async start(): Promise<void> {
    await this.build()
    if (!this.#stopped) return
    this.#stopped = false
    this.#abort = new AbortController()
    this.#schedule()
  }

  /** Stop the loop; waits for a round under way to end (its rate-limit waits end at once). */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== undefined) this.#o.clock.clearTimeout(this.#timer)
    this.#timer = undefined
    this.#abort?.abort()
    await this.#running
  }

  #schedule(): void {
    if (this.#stopped) return
    this.#timer = this.#o.clock.setTimeout(() => {
      this.#timer = undefined
      this.#running = this.#round().finally(() => {
        this.#running = undefined
        this.#schedule()
      })
    }, this.#o.intervalMs)
  }

  // One round: with each peer in turn, compare the roots of every partition the two share, then
  // exchange the differing partitions one after another (paced by the key rate limit).
  async #round(): Promise<void> {
    // One-sided tombstones not met again in the last round have gone (reaped everywhere, or copied).
    const last = this.#roundNo++
    for (const [id, seen] of this.#oneSided) if (seen.round < last) this.#oneSided.delete(id)
    const shared = new Map<string, { peer: Peer; partitions: number[] }>()
    for (const p of this.#o.partitions()) {
      for (const peer of this.#o.peers(p)) {
        let s = shared.get(peer.id)
        if (!s) shared.set(peer.id, (s = { peer, partitions: [] }))
        s.partitions.push(p)
      }
    }
    for (const { peer, partitions } of shared.values()) {
      if (this.#stopped) return
      await this.#roundWith(peer, partitions)
    }
  }

  async #roundWith(peer: Peer, partitions: number[]): Promise<void> {
    let differ: number[]
    try {
      differ = await this.compareRoots(peer.url, partitions)
    } catch (err) {
      if (!this.#stopped) this.#o.onError?.(err, undefined, peer)
      return
    }
    // In random order: replicas that repair the same peer (or each other) at the same time then seldom
    // work on one partition at once (in one order, one that caught up with another would follow it
    // step by step, descending every partition twice), and one that finds a partition already
    // repaired pays one tree request for it.
    const order = [...differ]
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(this.#o.random() * (i + 1))
      ;[order[i], order[j]] = [order[j], order[i]]
    }
    const failed = this.#failed.get(peer.id)
    this.#failed.delete(peer.id)
    if (failed !== undefined && order.includes(failed)) order.push(...order.splice(order.indexOf(failed), 1))
    // The plan was made when the round began; a long round (many keys at the rate limit) checks it
    // again once a second, so a ring change or a peer going down stops what no longer holds.
    const { clock } = this.#o
    let checkedAt = clock.now()
    let still = new Set(partitions)
    for (const p of order) {
      if (this.#stopped) return
      if (clock.now() - checkedAt >= 1000) {
        checkedAt = clock.now()
        still = new Set(this.#o.partitions())
      }
      if (!still.has(p) || !this.#o.peers(p).some((x) => x.id === peer.id)) continue
      try {
        await this.exchange(p, peer.url, this.#abort?.signal)
      } catch (err) {
        if (this.#stopped) return
        this.#o.onError?.(err, p, peer)
        this.#failed.set(peer.id, p)
        return
      }
    }
  }
}
