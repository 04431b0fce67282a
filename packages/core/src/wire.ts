// The replica protocol between SDKs and storage nodes: paths, headers and message shapes. Bodies are
// MessagePack (see codec.ts); errors are JSON `{"error":{"code","message"}}` with a 4xx/5xx status.
import { parseMembers, type MemberState } from './membership.js'
import type { VersionVector } from './dvv.js'
import { pack, type ContextPart } from './codec.js'

export const Paths = {
  health: '/v1/health',
  ring: '/v1/ring',
  /** Read this node's DVV sets for a batch of keys. */
  read: '/v1/replica/read',
  /** Coordinate a write: mint a dot with this node's actor id, sync locally, store, return the set. */
  coordinate: '/v1/replica/coordinate',
  /** Store sets sent by a coordinator or by read repair (DVV sync with the local set: idempotent). */
  store: '/v1/replica/store',
  /** One page of a partition's items, in key order: partition handoff. */
  range: '/v1/replica/range',
  /** The hints this node holds for one key, per node they are for (explain). */
  hints: '/v1/replica/hints',
  /** This node's own figures: hints, handoff, anti-entropy, tombstones, requests and latencies (JSON). */
  stats: '/v1/stats',
  /** The cluster as the asked node sees it, with every member's /v1/stats (JSON; CLI and dashboard). */
  cluster: '/v1/cluster',
  /** Push-pull of member entries between nodes. */
  gossip: '/v1/gossip',
  /** Anti-entropy: root hashes of some partitions' trees, in the order asked. */
  roots: '/v1/ae/roots',
  /** Anti-entropy: hashes of some nodes of one level of a partition's tree. */
  tree: '/v1/ae/tree',
  /** Anti-entropy: keys of some leaves with the digest of their stored set. */
  keys: '/v1/ae/keys',
  /** Tombstone reaping: check, then delete, tombstones every replica has held for the grace period. */
  reap: '/v1/replica/reap',
  /** Prometheus metrics (text). */
  metrics: '/v1/metrics',
  /** Operator: this node hands off its data and leaves (JSON). */
  leave: '/v1/admin/leave',
  /** Operator: remove a dead node; the others re-replicate its data (JSON `{"id"}`). */
  remove: '/v1/admin/remove',
} as const

/** Every response carries the ring epoch of the node that answered. */
export const EPOCH_HEADER = 'x-zerohop-epoch'

/**
 * What a client sends first on a connection to a node that speaks the framed protocol from then on
 * (server/src/frames.ts; the SDK's FramesTransport): not an HTTP request line.
 */
export const FRAMES_PREFACE: Buffer = Buffer.from('ZHF1\r\n')

/** One frame of that protocol, both ways: [u32 length][MessagePack of `x`], as the two parts to write. */
export function encodeFrame(x: unknown): Buffer[] {
  const body = pack(x)
  const head = Buffer.allocUnsafe(4)
  head.writeUInt32BE(body.byteLength, 0)
  return [head, body]
}

/**
 * The other half of encodeFrame: splits what a connection reads into frames. `push` returns the
 * MessagePack bytes of each frame the chunk completes, in order, and `over`, the length announced,
 * when a frame claims more than `maxBytes` (nothing after it is read: close the connection).
 * `buffered` counts the bytes of a frame begun and not yet complete.
 */
export class FrameReader {
  #buffer: Buffer = Buffer.alloc(0)

  constructor(readonly maxBytes: number) {}

  get buffered(): number {
    return this.#buffer.length
  }

  push(chunk: Buffer): { frames: Buffer[]; over?: number } {
    const buf = this.#buffer.length > 0 ? Buffer.concat([this.#buffer, chunk]) : chunk
    const frames: Buffer[] = []
    let off = 0
    while (buf.length - off >= 4) {
      const len = buf.readUInt32BE(off)
      if (len > this.maxBytes) {
        this.#buffer = Buffer.alloc(0)
        return { frames, over: len }
      }
      if (buf.length - off < 4 + len) break
      frames.push(buf.subarray(off + 4, off + 4 + len))
      off += 4 + len
    }
    // Keep only what the next frame needs (a copy, so a big read is not held by a small tail).
    this.#buffer = off === buf.length ? Buffer.alloc(0) : off === 0 ? buf : Buffer.from(buf.subarray(off))
    return { frames }
  }
}

export const MAX_BATCH = 1000

export interface ReadRequest {
  keys: [partition: number, key: Uint8Array][]
  /** In a cluster with a secret: also prove each set (what relaying it takes; read repair asks so). */
  prove?: boolean
}
export interface ReadResponse {
  /** Encoded DVV set per key, or null where the replica holds nothing. */
  sets: (Uint8Array | null)[]
  /** In a cluster with a secret, per set: the MAC of its join as a context part (see auth.ts). */
  contexts?: (Uint8Array | null)[]
  /** With `prove`, per set: its proof, which a relayed store of it must carry. */
  proofs?: (Uint8Array | null)[]
}

export interface CoordinateRequest {
  partition: number
  key: Uint8Array
  /** The version vector the client read (empty for a blind write). */
  context: VersionVector
  /** The new value, or null for a tombstone. */
  value: Uint8Array | null
  /** In a cluster with a secret: the context's signed parts (their join is `context`); required unless it is empty. */
  parts?: ContextPart[]
}
export interface CoordinateResponse {
  set: Uint8Array
  /** In a cluster with a secret: the set's proof (for the stores that follow) and the MAC of its join as a context part. */
  proof?: Uint8Array
  context?: Uint8Array
}

/** Several coordinations in one request (the SDK coalesces those to one node), each minted on its own. */
export interface CoordinateBatchRequest {
  items: CoordinateRequest[]
}

/** Why one coordination of a batch was refused, as its own request would have been (status and code). */
export interface CoordinateItemError {
  error: { status: number; code: string; message: string }
}

export interface CoordinateBatchResponse {
  /** One per item, in order: its answer, or why it was refused. */
  results: (CoordinateResponse | CoordinateItemError)[]
}

export interface StoreRequest {
  /**
   * With `hintFor`, the node keeps the item as a hint for that node (a sloppy quorum). In a cluster
   * with a secret, a set relayed by a client carries the proof of the node that handed it out.
   */
  items: [partition: number, key: Uint8Array, set: Uint8Array, hintFor?: string | null, proof?: Uint8Array][]
}
export interface StoreResponse {
  /** How many items changed this replica's state (the rest it already had). */
  changed: number
}

export interface Limits {
  maxKeyBytes: number
  maxValueBytes: number
  /** Largest request body the node accepts. */
  maxBodyBytes: number
}

export interface HintsRequest {
  partition: number
  key: Uint8Array
}
export interface HintsResponse {
  /** Each hint held for the key: the node it is for and the set kept for it. */
  hints: [target: string, set: Uint8Array][]
}

export interface RangeRequest {
  partition: number
  /** Resume after this key (exclusive); absent for the first page. */
  after?: Uint8Array
  /** Most items per page. */
  limit: number
}
export interface RangeResponse {
  items: [key: Uint8Array, set: Uint8Array][]
  /** True when the partition has more items after the last one. */
  more: boolean
}

export interface RootsRequest {
  partitions: number[]
  /** The asker's tree shape; when given, it must be the node's. */
  fanout?: number
  depth?: number
}
export interface RootsResponse {
  /** The root of each asked partition's tree (the empty tree's root for one without data there). */
  roots: Uint8Array[]
}

export interface TreeRequest {
  partition: number
  level: number
  indices: number[]
  /** The asker's tree shape; when given, it must be the node's. */
  fanout?: number
  depth?: number
}
export interface TreeResponse {
  /** One hash per index asked. */
  hashes: Uint8Array[]
}

export interface KeysRequest {
  partition: number
  leaves: number[]
  fanout?: number
  depth?: number
}
export interface KeysResponse {
  /** [key, MD5 of its stored set] for every key the node holds in those leaves. */
  keys: [key: Uint8Array, digest: Uint8Array][]
}

export interface ReapRequest {
  partition: number
  phase: 'check' | 'reap'
  items: [key: Uint8Array, set: Uint8Array][]
}
export interface ReapResponse {
  /** One answer per item. */
  ok: boolean[]
}

/** POST /v1/gossip, both ways: the sender's ring parameters and every member entry it knows. */
export interface GossipMessage {
  partitions: number
  n: number
  members: MemberState[]
}

/**
 * A gossip message received (a request or a peer's answer), rebuilt from its known fields with every
 * member entry checked (parseMembers); or why it is not one. Whether its ring parameters are the
 * receiver's is the receiver's to check.
 */
export function parseGossipMessage(x: unknown): GossipMessage | string {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'a gossip message must be a map {partitions, n, members}'
  const { partitions, n, members } = x as Record<string, unknown>
  if (typeof partitions !== 'number' || !Number.isSafeInteger(partitions) || partitions < 2 || partitions > 65536 || (partitions & (partitions - 1)) !== 0) {
    return 'partitions must be a power of two from 2 to 65536'
  }
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1 || n > 16) return 'n must be an integer from 1 to 16'
  const parsed = parseMembers(members)
  if (typeof parsed === 'string') return `members: ${parsed}`
  return { partitions, n, members: parsed }
}

/** GET /v1/ring: the member entries the rings follow from, and what this node believes down. */
export interface RingResponse {
  epoch: string
  partitions: number
  n: number
  spares: number
  members: MemberState[]
  /** Ids of members this node's failure detector holds down. */
  down: string[]
  limits: Limits
}

export interface HealthResponse {
  status: 'starting' | 'ok' | 'stopping'
  id: string
  url: string
  weight: number
  n: number
  partitions: number
  actor: string
  epoch: string | null
  /** This node's membership status (joining, normal, leaving, left). */
  member?: string
}

/** Latencies of one kind of request a node served since it started: a histogram (cumulative buckets). */
export interface RequestLatency {
  /** The endpoint, e.g. /v1/kv or /v1/replica/read. */
  route: string
  method: string
  /** http or frames (the framed protocol): from the network; local: this node coordinating a key it replicates (no request to itself). */
  via: 'http' | 'frames' | 'local'
  count: number
  /** Sum of the durations, in seconds. */
  sum: number
  /** Requests that took at most LATENCY_BUCKETS[i] seconds (cumulative), one per bucket. */
  buckets: number[]
}

/** Upper bounds (seconds) of the latency histograms of GET /v1/stats and /v1/metrics. */
export const LATENCY_BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10] as const

/** GET /v1/stats: one node's own figures, since it started. */
export interface NodeStats {
  id: string
  url: string
  /** When the figures were taken (ms since 1970, the node's clock): rates are differences over time. */
  time: number
  /** This node's membership status. */
  member: string
  /** Hints held for other nodes, per target. */
  hints: { items: number; bytes: number; targets: Record<string, { items: number; bytes: number }>; stored: number; delivered: number; dropped: number; expired: number }
  /**
   * Partition handoff: while a join or leave is in progress, the partitions this node gains and how
   * many it has pulled; `active` false otherwise. Items and bytes pulled since start.
   */
  handoff: { active: boolean; gained: number; pulled: number; items: number; bytes: number }
  /**
   * Anti-entropy: whether its trees are built (the scan at start is done), rounds (roots comparisons),
   * exchanges, keys repaired, and when the last round ended (ms; 0 never).
   */
  antiEntropy: { ready: boolean; rounds: number; exchanges: number; keysRepaired: number; lastRoundAt: number }
  /** Whether the scan at start for tombstones is done, keys held only as tombstones, and tombstones reaped since start. */
  tombstones: { scanned: boolean; held: number; reaped: number }
  requests: RequestLatency[]
}

/** One member in GET /v1/cluster. */
export interface ClusterMember {
  id: string
  url: string
  zone: string
  weight: number
  /** joining, normal, leaving, left, or removed (an operator removed it; its data is re-replicated). */
  status: 'joining' | 'normal' | 'leaving' | 'left' | 'removed'
  /** As the asked node's failure detector sees it; `self` for the asked node. */
  health: 'up' | 'suspect' | 'down' | 'self'
  /** Share of the partitions' replicas this member holds in the current ring (0 to 1). */
  share: number
  /** Its own figures, or why they could not be had (it is down, or failed to answer). */
  stats?: NodeStats
  error?: string
}

/** A partition whose replicas change with the join or leave in progress. */
export interface PendingMove {
  partition: number
  from: string[]
  to: string[]
}

/** GET /v1/cluster: the cluster as the asked node sees it. */
export interface ClusterResponse {
  /** The asked node. */
  node: string
  epoch: string
  n: number
  partitions: number
  /** A join or leave is in progress: the next ring differs from the current one. */
  transition: boolean
  members: ClusterMember[]
  /** The first replica of each partition in the current ring (the dashboard's circle). */
  owners: string[]
  /** Largest share of replicas over the mean, among members that hold any (1 is perfect balance). */
  balance: number
  /** Partitions whose replicas change with the transition in progress. */
  moves: PendingMove[]
  /** Partitions the members gain in the transition, and how many they have pulled. */
  handoff: { gained: number; pulled: number }
}

export interface ErrorBody {
  error: { code: string; message: string }
}
