// Merkle trees for anti-entropy (Dynamo §4.7): one per partition, so two replicas find the keys on
// which they differ by exchanging a few hashes instead of their data. The shape is fixed (`fanout`
// children per inner node, `depth` levels below the root), so two nodes' trees line up node for node.
//
// A key's digest is one hash of the key and its stored set together, and a leaf is the XOR of the
// digests of its keys: a write adjusts its leaf in O(1) without reading the leaf's other keys (one
// hash for the new digest, none to take the old one out), and the same keys and sets give the same
// tree whatever order they were written in. Inner nodes are rehashed lazily, when an exchange reads
// them. A key's leaf is picked by a cheap mixing hash of the key (FNV-1a, then MurmurHash3's
// finaliser): it only has to spread keys evenly, and a node scanning a million keys at start-up
// computes it for every one.
import { InvalidArgumentError } from './errors.js'
import { fmix32, md5 } from './ring.js'

export interface MerkleOptions {
  /** Children per inner node: a power of two from 2 to 256. Default 16. */
  fanout?: number
  /** Levels below the root: the tree has fanout^depth leaves, at most 2^20. Default 3 (4096 leaves). */
  depth?: number
  /**
   * The 16-byte hash behind every inner node and key digest. MD5 unless a test wants to count calls:
   * all the nodes of a cluster must use the same one, or their trees never agree.
   */
  hash?: (bytes: Uint8Array) => Buffer
}

export interface ResolvedMerkleOptions {
  fanout: number
  depth: number
  hash: (bytes: Uint8Array) => Buffer
}

export const merkleDefaults = { fanout: 16, depth: 3 } as const

/** Bytes of every node hash and set digest. */
export const HASH_BYTES = 16

/** Most leaves a tree may have: 16 MiB of leaf hashes. */
export const MAX_MERKLE_LEAVES = 2 ** 20

export function resolveMerkleOptions(o: MerkleOptions = {}): ResolvedMerkleOptions {
  const fanout = o.fanout ?? merkleDefaults.fanout
  const depth = o.depth ?? merkleDefaults.depth
  const hash = o.hash ?? md5
  if (!Number.isInteger(fanout) || fanout < 2 || fanout > 256 || (fanout & (fanout - 1)) !== 0) {
    throw new InvalidArgumentError(`merkle fanout must be a power of two from 2 to 256 (got ${String(fanout)}); the default is ${merkleDefaults.fanout}`)
  }
  const maxDepth = Math.floor(Math.log2(MAX_MERKLE_LEAVES) / Math.log2(fanout))
  if (!Number.isInteger(depth) || depth < 1 || depth > maxDepth) {
    throw new InvalidArgumentError(
      `merkle depth must be an integer from 1 to ${maxDepth} with fanout ${fanout} (got ${String(depth)}), so the tree has at most ${MAX_MERKLE_LEAVES} leaves; the default is ${merkleDefaults.depth}`,
    )
  }
  if (typeof hash !== 'function') throw new InvalidArgumentError('merkle hash must be a function from bytes to a 16-byte Buffer; leave it unset to use MD5')
  return { fanout, depth, hash }
}

export class MerkleTree {
  readonly fanout: number
  readonly depth: number
  /** Number of leaves: fanout^depth. */
  readonly leaves: number
  readonly #hash: (bytes: Uint8Array) => Buffer
  readonly #leafBits: number
  // #nodes[l] holds the hashes of level l back to back, HASH_BYTES each; #nodes[depth] are the leaves.
  readonly #nodes: Buffer[] = []
  // #dirty[l][i] = 1: inner node i of level l must be rehashed before it is read. A dirty node's
  // ancestors are all dirty too, so marking stops at the first ancestor already marked.
  readonly #dirty: Uint8Array[] = []
  // Hash of an inner node of each level in an empty tree: clear() and the constructor copy these.
  readonly #emptyLevels: Buffer[] = []

  constructor(options: MerkleOptions = {}) {
    const o = resolveMerkleOptions(options)
    this.fanout = o.fanout
    this.depth = o.depth
    this.#hash = o.hash
    this.leaves = o.fanout ** o.depth
    this.#leafBits = Math.log2(this.leaves)
    const probe = this.#hash(new Uint8Array(0))
    if (!(probe instanceof Uint8Array) || probe.byteLength !== HASH_BYTES) {
      throw new InvalidArgumentError(`merkle hash must return ${HASH_BYTES} bytes; leave it unset to use MD5`)
    }
    let below = Buffer.alloc(HASH_BYTES)
    this.#emptyLevels[o.depth] = below
    for (let l = o.depth - 1; l >= 0; l--) {
      below = Buffer.from(this.#hash(Buffer.concat(Array.from({ length: o.fanout }, () => below))))
      this.#emptyLevels[l] = below
    }
    for (let l = 0; l <= o.depth; l++) {
      this.#nodes.push(Buffer.alloc(this.width(l) * HASH_BYTES))
      this.#dirty.push(new Uint8Array(l === o.depth ? 0 : this.width(l)))
    }
    this.clear()
  }

  /** Number of nodes of level `l` (0 = the root, `depth` = the leaves). */
  width(l: number): number {
    return this.fanout ** l
  }

  /**
   * The leaf a key falls in: the top bits of a 32-bit mixing hash of its bytes. Not MD5's top bits:
   * the ring puts a key in a partition by those, so within one partition they are all the same and
   * would leave most leaves empty. A string key is taken as latin1 (one byte per character).
   */
  leafOf(key: Uint8Array | string): number {
    let h = 0x811c9dc5
    if (typeof key === 'string') for (let i = 0; i < key.length; i++) h = Math.imul(h ^ (key.charCodeAt(i) & 0xff), 0x01000193)
    else for (let i = 0; i < key.byteLength; i++) h = Math.imul(h ^ key[i], 0x01000193)
    return fmix32(h) >>> (32 - this.#leafBits)
  }

  /** The digest of a key holding a stored (encoded) DVV set: what the leaves XOR and the key exchange compares. */
  digest(key: Uint8Array, set: Uint8Array): Buffer {
    const input = Buffer.allocUnsafe(4 + key.byteLength + set.byteLength)
    input.writeUInt32BE(key.byteLength, 0)
    input.set(key, 4)
    input.set(set, 4 + key.byteLength)
    return this.#hash(input)
  }

  /** Account for a write: `before` and `after` are the key's stored set bytes (undefined = absent). */
  update(key: Uint8Array, before: Uint8Array | undefined, after: Uint8Array | undefined): void {
    this.updateDigests(this.leafOf(key), before && this.digest(key, before), after && this.digest(key, after))
  }

  /** As `update`, given the key's leaf and the digests (see `digest`) it held before and holds now. */
  updateDigests(leaf: number, before: Uint8Array | undefined, after: Uint8Array | undefined): void {
    if (!Number.isInteger(leaf) || leaf < 0 || leaf >= this.leaves) throw new InvalidArgumentError(`merkle leaf must be an integer from 0 to ${this.leaves - 1}; got ${String(leaf)}`)
    if (before === after || (before && after && Buffer.compare(before, after) === 0)) return
    if (before) this.#toggle(leaf, before)
    if (after) this.#toggle(leaf, after)
  }

  /** Forget every key: the tree is empty again. */
  clear(): void {
    for (let l = 0; l <= this.depth; l++) {
      const nodes = this.#nodes[l]
      for (let i = 0; i < nodes.length; i += HASH_BYTES) this.#emptyLevels[l].copy(nodes, i)
      this.#dirty[l].fill(0)
    }
  }

  root(): Buffer {
    return Buffer.from(this.#read(0, 0))
  }

  /** Hashes of the nodes `indices` of level `l` (0 = the root), in the order asked. */
  level(l: number, indices: readonly number[]): Buffer[] {
    this.#checkLevel(l)
    const width = this.width(l)
    return indices.map((i) => {
      if (!Number.isInteger(i) || i < 0 || i >= width) throw new InvalidArgumentError(`merkle level ${l} has nodes 0..${width - 1}; got ${String(i)}`)
      return Buffer.from(this.#read(l, i))
    })
  }

  /** Indices (in level l + 1) of the children of node `i` of level `l`. */
  children(l: number, i: number): number[] {
    this.#checkLevel(l)
    if (l === this.depth) throw new InvalidArgumentError(`merkle level ${l} is the leaves, which have no children; ask for a level from 0 to ${this.depth - 1}`)
    const first = i * this.fanout
    return Array.from({ length: this.fanout }, (_, c) => first + c)
  }

  #checkLevel(l: number): void {
    if (!Number.isInteger(l) || l < 0 || l > this.depth) throw new InvalidArgumentError(`merkle level must be an integer from 0 (the root) to ${this.depth} (the leaves); got ${String(l)}`)
  }

  // XOR a key's digest into its leaf: the same call adds and removes it.
  #toggle(leaf: number, digest: Uint8Array): void {
    if (digest.byteLength !== HASH_BYTES) throw new InvalidArgumentError(`a merkle digest is ${HASH_BYTES} bytes; got ${digest.byteLength}`)
    const leaves = this.#nodes[this.depth]
    const at = leaf * HASH_BYTES
    for (let b = 0; b < HASH_BYTES; b++) leaves[at + b] ^= digest[b]
    let i = leaf
    for (let l = this.depth - 1; l >= 0; l--) {
      i = Math.floor(i / this.fanout)
      if (this.#dirty[l][i]) break
      this.#dirty[l][i] = 1
    }
  }

  // A view of node (l, i), rehashing it (and its dirty descendants) first when it is dirty.
  #read(l: number, i: number): Buffer {
    const at = i * HASH_BYTES
    if (l < this.depth && this.#dirty[l][i]) {
      const first = i * this.fanout
      for (let c = first; c < first + this.fanout; c++) this.#read(l + 1, c)
      const below = this.#nodes[l + 1]
      this.#hash(below.subarray(first * HASH_BYTES, (first + this.fanout) * HASH_BYTES)).copy(this.#nodes[l], at)
      this.#dirty[l][i] = 0
    }
    return this.#nodes[l].subarray(at, at + HASH_BYTES)
  }
}

/**
 * The leaves at which `local` and another tree of the same shape differ, reading only the children of
 * nodes that differ, level by level from the root. `remote(level, indices)` answers the other tree's
 * hashes of those nodes, as `MerkleTree.level` does (over the network, during an exchange).
 */
export async function differingLeaves(
  local: MerkleTree,
  remote: (level: number, indices: number[]) => Promise<readonly Uint8Array[]> | readonly Uint8Array[],
): Promise<number[]> {
  let differing = [0]
  for (let l = 0; l <= local.depth && differing.length > 0; l++) {
    const indices = l === 0 ? [0] : differing.flatMap((i) => local.children(l - 1, i))
    const theirs = await remote(l, indices)
    if (!Array.isArray(theirs) || theirs.length !== indices.length) {
      throw new TypeError(`the other tree answered ${Array.isArray(theirs) ? theirs.length : 'no'} hashes for ${indices.length} nodes of level ${l}`)
    }
    const ours = local.level(l, indices)
    differing = indices.filter((_, k) => {
      const t = theirs[k]
      if (!(t instanceof Uint8Array) || t.byteLength !== HASH_BYTES) throw new TypeError(`the other tree answered a hash that is not ${HASH_BYTES} bytes at level ${l}`)
      return Buffer.compare(ours[k], t) !== 0
    })
  }
  return differing
}
