// The consistent-hash ring: MD5(key) → one of Q equal-sized partitions (Dynamo's strategy 3), and a
// partition → preference list table. Ownership is a pure function of the membership, so every node
// and every SDK computes the same table with no leader, whatever order the members are listed in.
import crypto from 'node:crypto'
import { InvalidArgumentError } from './errors.js'

export interface Member {
  /** Stable node id, e.g. "n1". */
  id: string
  /** Base URL other nodes and clients use, e.g. "http://127.0.0.1:7001". */
  url: string
  /** Relative capacity; a node with weight 2 owns about twice the partitions of weight 1. */
  weight: number
  /** When the member joined (ms; 0 for the founding members): orders the ring's history. */
  since?: number
}

/** A former member, kept so the ring's history (and so its assignment) is the same everywhere. */
export interface Departed {
  id: string
  weight: number
  since: number
  until: number
}

export interface RingOptions {
  /** Q: number of partitions, a power of two, fixed when the cluster is created. */
  partitions: number
  /** N: replicas per key. */
  n: number
  /** Fallback nodes kept after the top N of each preference list (for sloppy quorums). */
  spares?: number
  /** Members that have left, oldest first or in any order. */
  history?: readonly Departed[]
}

export const ringDefaults = { partitions: 256, n: 3, spares: 2 } as const

const ID_RE = /^[A-Za-z0-9._-]{1,64}$/

// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object: ~40 % cheaper per key.
const oneShot = (crypto as { hash?: (alg: string, data: Uint8Array | string, enc: 'buffer') => Buffer }).hash

export function md5(bytes: Uint8Array | string): Buffer {
  return oneShot ? oneShot('md5', bytes, 'buffer') : crypto.createHash('md5').update(bytes).digest()
}

function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** Split Q among members in proportion to weight (largest remainder; ties by id). */
export function quotas(members: readonly Member[], partitions: number): number[] {
  const total = members.reduce((s, m) => s + m.weight, 0)
  const exact = members.map((m) => (partitions * m.weight) / total)
  const q = exact.map(Math.floor)
  let left = partitions - q.reduce((s, x) => s + x, 0)
  const order = members
    .map((_, i) => i)
    .sort((a, b) => exact[b] - q[b] - (exact[a] - q[a]) || (members[a].id < members[b].id ? -1 : 1))
  for (let k = 0; left > 0; k = (k + 1) % order.length, left--) q[order[k]]++
  return q
}

/**
 * Owner of every partition. Each (partition, member) pair gets a pseudo-random score; pairs are taken
 * best score first and a partition goes to the first member that still has quota. With quotas in
 * proportion to weight this is balanced, and since scores do not depend on the rest of the membership,
 * adding a member moves about its quota's worth of partitions and little more.
 */
export function assignOwners(members: readonly Member[], partitions: number): Uint32Array {
  const n = members.length
  const seeds = members.map((m) => md5(m.id).readUInt32BE(0))
  const quota = quotas(members, partitions)
  const total = partitions * n
  const scores = new Uint32Array(total)
  for (let p = 0; p < partitions; p++) {
    const hp = Math.imul(p + 1, 0x9e3779b1)
    for (let i = 0; i < n; i++) scores[p * n + i] = fmix32((seeds[i] ^ hp) >>> 0)
  }
  const order = new Uint32Array(total)
  for (let k = 0; k < total; k++) order[k] = k
  // Best score first; ties by member (ids are sorted) then partition, so the result is deterministic.
  order.sort((a, b) => scores[b] - scores[a] || (a % n) - (b % n) || a - b)
  const owner = new Uint32Array(partitions).fill(0xffffffff)
  let assigned = 0
  for (let k = 0; k < total && assigned < partitions; k++) {
    const pair = order[k]
    const p = (pair / n) | 0
    const i = pair % n
    if (owner[p] !== 0xffffffff || quota[i] === 0) continue
    owner[p] = i
    quota[i]--
    assigned++
  }
  return owner
}

export class Ring {
  readonly partitions: number
  readonly n: number
  readonly spares: number
  /** Members sorted by id. */
  readonly members: readonly Member[]
  /** Former members, sorted by id. */
  readonly history: readonly Departed[]
  /** Digest of the membership and parameters: equal epochs mean equal rings. */
  readonly epoch: string
  readonly #owners: Uint32Array
  readonly #prefs: Member[][]
  readonly #shift: number
  readonly #byId: Map<string, Member>

  constructor(members: readonly Member[], options: RingOptions) {
    const { partitions, n } = options
    const spares = options.spares ?? ringDefaults.spares
    if (!Number.isInteger(partitions) || partitions < 2 || partitions > 65536 || (partitions & (partitions - 1)) !== 0) {
      throw new InvalidArgumentError(`partitions must be a power of two from 2 to 65536, got ${partitions}`)
    }
    if (!Number.isInteger(n) || n < 1 || n > 16) throw new InvalidArgumentError(`n must be an integer from 1 to 16, got ${n}`)
    if (!Number.isInteger(spares) || spares < 0) throw new InvalidArgumentError(`spares must be a non-negative integer, got ${spares}`)
    if (members.length === 0) throw new InvalidArgumentError('a ring needs at least one member')
    const sorted = [...members].map((m) => ({ id: m.id, url: m.url, weight: m.weight, since: m.since ?? 0 })).sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    for (let i = 0; i < sorted.length; i++) {
      const m = sorted[i]
      if (typeof m.id !== 'string' || !ID_RE.test(m.id)) throw new InvalidArgumentError(`node id ${JSON.stringify(m.id)} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
      if (i > 0 && sorted[i - 1].id === m.id) throw new InvalidArgumentError(`node id ${m.id} appears twice in the membership`)
      if (!(typeof m.weight === 'number' && Number.isFinite(m.weight) && m.weight > 0)) throw new InvalidArgumentError(`node ${m.id} has weight ${m.weight}; a weight must be a positive number`)
    }
    this.partitions = partitions
    this.n = n
    this.spares = spares
    this.members = sorted
    this.#shift = 32 - Math.log2(partitions)
    this.#byId = new Map(sorted.map((m) => [m.id, m]))
    const history = [...(options.history ?? [])].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0))
    this.history = history
    this.epoch = md5(JSON.stringify([partitions, n, spares, sorted.map((m) => [m.id, m.url, m.weight, m.since]), history.map((d) => [d.id, d.weight, d.since, d.until])])).toString('hex').slice(0, 16)
    this.#owners = assignOwners(sorted, partitions)
    const length = Math.min(sorted.length, n + spares)
    this.#prefs = new Array(partitions)
    for (let p = 0; p < partitions; p++) {
      const list: Member[] = []
      const seen = new Set<number>()
      for (let step = 0; step < partitions && list.length < length; step++) {
        const o = this.#owners[(p + step) % partitions]
        if (!seen.has(o)) {
          seen.add(o)
          list.push(sorted[o])
        }
      }
      // A ring with fewer distinct owners than `length` (tiny Q) still lists every member.
      for (let i = 0; list.length < length && i < sorted.length; i++) if (!seen.has(i)) list.push(sorted[i])
      this.#prefs[p] = list
    }
  }

  /** The partition a key falls in: the top log2(Q) bits of its MD5. */
  partitionOf(key: Uint8Array): number {
    return md5(key).readUInt32BE(0) >>> this.#shift
  }

  ownerOf(partition: number): Member {
    return this.members[this.#owners[partition]]
  }

  /** Owner of the partition, then the distinct nodes met walking clockwise: N + spares long. */
  preferenceList(partition: number): readonly Member[] {
    return this.#prefs[partition]
  }

  member(id: string): Member | undefined {
    return this.#byId.get(id)
  }

  /** How many partitions each member owns (as first of the preference list). */
  ownership(): Map<string, number> {
    const counts = new Map(this.members.map((m) => [m.id, 0]))
    for (let p = 0; p < this.partitions; p++) counts.set(this.ownerOf(p).id, counts.get(this.ownerOf(p).id)! + 1)
    return counts
  }

  toJSON(): RingDescription {
    return { epoch: this.epoch, partitions: this.partitions, n: this.n, spares: this.spares, members: this.members.map((m) => ({ ...m })), history: this.history.map((d) => ({ ...d })) }
  }

  static fromJSON(d: RingDescription): Ring {
    return new Ring(d.members, { partitions: d.partitions, n: d.n, spares: d.spares, history: d.history })
  }
}

export interface RingDescription {
  epoch: string
  partitions: number
  n: number
  spares: number
  members: Member[]
  history?: Departed[]
}
