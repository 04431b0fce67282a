// What the public API needs from whoever coordinates a request: the SDK's own engine (zero-hop: the
// SDK runs the quorums) or a node reached through a load balancer (the node runs the same engine).
// Both work on bytes and answer with the same shapes; collections add encodings and merge functions.
import { InvalidArgumentError, KeyTooLargeError, type Limits, type ReplicaFailure } from '@zerohop/core'

export interface CallOptions {
  /** Deadline of the operation in ms (default: the client's timeoutMs). */
  timeoutMs?: number
  signal?: AbortSignal
}

export interface GetCall extends CallOptions {
  r?: number
}

export interface PutCall extends CallOptions {
  /** The context from the get() (or put()) this write follows. Without it the write is a sibling of what exists. */
  context?: string
  w?: number
  /**
   * Count only the key's own replicas toward W (Riak's PW). By default a replica that is down is
   * stood in for by the next healthy node, which keeps the copy as a hint (a sloppy quorum).
   */
  strict?: boolean
}

export interface CoordinatedGet {
  /** False when no replica holds a live value (never written, or deleted). */
  found: boolean
  /** Every concurrent live value the read saw. */
  siblings: Uint8Array[]
  /** Covers every sibling (and tombstone) read: a write with it supersedes them all. */
  context: string
}

export interface CoordinatedPut {
  /**
   * Context for the next write. It covers this write when the coordinator holds nothing concurrent
   * with it; otherwise it is the context passed in, so the next write becomes a sibling rather than
   * silently replacing a value its writer has not seen.
   */
  context: string
  /** The live values on the coordinating replica after the write. */
  siblings: Uint8Array[]
  /** True when `siblings` holds values concurrent with this write. */
  conflict: boolean
}

export interface ReplicaExplanation {
  id: string
  url: string
  /** A replica in the current ring (primary), or one gaining the partition in a join or leave (incoming). */
  role: 'primary' | 'incoming'
  found: boolean
  /** The replica holds only a tombstone (a delete not yet reaped). */
  tombstone: boolean
  siblings: Uint8Array[]
  /** Equal digests mean equal DVV sets; null when the replica holds nothing. */
  digest: string | null
  error?: ReplicaFailure
}

/** A hint some node holds for one of the key's replicas (sloppy quorum), until it is delivered. */
export interface HintExplanation {
  /** The node holding the hint. */
  holder: string
  /** The node it is for. */
  target: string
  tombstone: boolean
  siblings: Uint8Array[]
  digest: string
}

export interface Explanation {
  /** The ring the explanation was made with. */
  epoch: string
  partition: number
  /**
   * The key's preference list: the N primaries, then the spares that take writes (as hints) for
   * primaries that are down; up or down as the explaining client or node sees them.
   */
  preferenceList: { id: string; url: string; role: 'primary' | 'spare'; up: boolean }[]
  /** Each replica read directly, with no repair. */
  replicas: ReplicaExplanation[]
  /** Every replica answered, and all hold the same set (equal digests, or all nothing). */
  agree: boolean
  /** Hints held for this key, by any member that answered. */
  hints: HintExplanation[]
  /** Members that could not be asked for hints (down as far as this side knows, or failed). */
  unasked: string[]
  /** A join or leave is moving the partition: from the current replicas to the next ones, and which of those have pulled it. */
  moving: { from: string[]; to: string[]; ready: string[] } | null
}

export interface Coordinator {
  readonly limits: Limits
  /** Throws a typed error for a key the cluster would refuse. */
  checkKey(key: Uint8Array): void
  get(key: Uint8Array, call?: GetCall): Promise<CoordinatedGet>
  /** `value` null writes a tombstone. */
  put(key: Uint8Array, value: Uint8Array | null, call?: PutCall): Promise<CoordinatedPut>
  /** With a context, supersedes what that read saw; without one, reads first (at R) and deletes what it finds. */
  delete(key: Uint8Array, call?: PutCall): Promise<CoordinatedPut>
  /** Each of the key's N replicas, read directly with no repair. */
  explain(key: Uint8Array, call?: CallOptions): Promise<Explanation>
}

/** A key the cluster accepts: bytes, not empty, within the cluster's limit. */
export function checkKey(key: Uint8Array, limits: Limits): void {
  if (!(key instanceof Uint8Array)) throw new InvalidArgumentError('key must be a string or a Uint8Array')
  if (key.byteLength === 0) throw new InvalidArgumentError('key must not be empty')
  if (key.byteLength > limits.maxKeyBytes) throw new KeyTooLargeError(key.byteLength, limits.maxKeyBytes)
}
