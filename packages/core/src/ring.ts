// The consistent-hash ring: MD5(key) → one of Q equal-sized partitions (Dynamo's strategy 3), and a
// partition → preference list table. Ownership is a pure function of the membership and its history
// (replayed join by join, leave by leave, moving the minimum each time), so every node and every SDK
// computes the same table with no leader, whatever order the members are listed in.
import crypto from 'node:crypto'
import { md5 as jsMd5 } from 'js-md5'
import { InvalidArgumentError } from './errors.js'

export interface Member {
  /** Stable node id, e.g. "n1". */
  id: string
  /** Base URL other nodes and clients use, e.g. "http://127.0.0.1:7001". */
  url: string
  /** Relative capacity; a node with weight 2 owns about twice the partitions of weight 1. */
  weight: number
  /**
   * When the member joined (ms; 0 for the founding members): orders the ring's history. A joiner's
   * must be later than every `since` and `until` already known, or the replay reshuffles the ring.
   */
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

/** Node ids and zones (and incarnations): 1-64 characters of A-Z a-z 0-9 . _ - */
export const ID_PATTERN = /^[A-Za-z0-9._-]{1,64}$/
const ID_RE = ID_PATTERN

// crypto.hash (Node >= 20.12) is a one-shot digest without a Hash object: ~40 % cheaper per key.
const oneShot = (crypto as { hash?: (alg: string, data: Uint8Array | string, enc: 'buffer') => Buffer }).hash

/**
 * Inputs up to this many bytes (or string characters) are hashed by js-md5, in JavaScript: a call into
 * Node's crypto costs about 1.1 µs whatever the input, where js-md5 hashes a 24-byte key in 0.2 µs and
 * 70 bytes in 0.6 µs (crypto is faster from about 200 bytes on). Every get and put hashes its key
 * several times: the SDK's routing, each replica's partition check, the context's checksum.
 */
const SHORT_INPUT = 128

export function md5(bytes: Uint8Array | string): Buffer {
  if ((typeof bytes === 'string' ? bytes.length * 3 : bytes.byteLength) <= SHORT_INPUT) return Buffer.from(jsMd5.array(bytes))
  return oneShot ? oneShot('md5', bytes, 'buffer') : crypto.createHash('md5').update(bytes).digest()
}

/** The first 4 bytes of md5(bytes) as a big-endian unsigned integer. */
function md5Word(bytes: Uint8Array): number {
  if (bytes.byteLength > SHORT_INPUT) return md5(bytes).readUInt32BE(0)
  const d = jsMd5.array(bytes)
  return ((d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3]) >>> 0
}

/** MurmurHash3's 32-bit finaliser: every input bit flips each output bit with probability about 1/2. */
export function fmix32(h: number): number {
  h ^= h >>> 16
  h = Math.imul(h, 0x85ebca6b)
  h ^= h >>> 13
  h = Math.imul(h, 0xc2b2ae35)
  h ^= h >>> 16
  return h >>> 0
}

/** How much `partition` suits the member whose md5(id) starts with `seed`: independent of everyone else. */
function score(seed: number, partition: number): number {
  return fmix32((seed ^ Math.imul(partition + 1, 0x9e3779b1)) >>> 0)
}

// A (score, partition) pair packed in one double (< 2^48, exact): a higher key is a higher score,
// then a lower partition, so plain numeric order is the deterministic order of choice.
const key = (s: number, p: number) => s * 65536 + (65535 - p)
const partitionOfKey = (k: number) => 65535 - (k % 65536)

function byId(a: { id: string }, b: { id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0
}

/**
 * Largest-remainder split of `partitions` among the entries `idx` of `weights`, written to `out`.
 * Equal remainders go to the entry listed first in `idx`: a fixed order, so (with equal weights) a
 * member joining or leaving never moves an extra partition from one old member to another.
 */
function apportion(partitions: number, weights: ArrayLike<number>, idx: readonly number[], out: Int32Array | number[]): void {
  const n = idx.length
  let total = 0
  for (let k = 0; k < n; k++) total += weights[idx[k]]
  const rem = new Float64Array(n)
  let left = partitions
  for (let k = 0; k < n; k++) {
    const exact = (partitions * weights[idx[k]]) / total
    const whole = Math.floor(exact)
    out[idx[k]] = whole
    rem[k] = exact - whole
    left -= whole
  }
  if (left === 0) return
  const order = Array.from({ length: n }, (_, k) => k).sort((a, b) => rem[b] - rem[a] || a - b)
  for (let j = 0; left > 0; j = (j + 1) % n, left--) out[idx[order[j]]]++
  // Rounding error can make the floors overshoot when a share is within an ulp of an integer.
  for (let j = n - 1; left < 0; j = (j + n - 1) % n) {
    if (out[idx[order[j]]] > 0) {
      out[idx[order[j]]]--
      left++
    }
  }
}

/** Split Q among members in proportion to weight (largest remainder; ties by id). */
export function quotas(members: readonly Member[], partitions: number): number[] {
  const idx = members.map((_, i) => i).sort((a, b) => byId(members[a], members[b]))
  const q = new Array<number>(members.length).fill(0)
  apportion(partitions, members.map((m) => m.weight), idx, q)
  return q
}

/**
 * Owner of every partition, as an index into `members`. The membership's history is replayed: every
 * member and former member joins at its `since`, and every former member leaves at its `until` (in
 * time order; joins before leaves at equal times; then by id; a former member with `until` <= `since`
 * is skipped). The first join owns every partition. After each event the quotas of the members
 * present are recomputed and the minimum moves: members over quota give exactly their excess, members
 * under it receive exactly their deficit. A donor gives the partitions that score best for the
 * receivers (on a join: for the joiner); each partition given goes to the receiver it scores best for
 * among those still short (best pair first). So a join moves only the joiner's quota and a leave only
 * the leaver's partitions (with equal weights exactly; with unequal ones a few more where the rounding
 * of a quota flips), while the table stays a pure function of the members and their history,
 * whatever order they are listed in.
 *
 * That holds for events appended to the history. An event that sorts before events already replayed
 * (a `since` or `until` stamped by a clock behind the others, a second founder at 0), a changed weight
 * or a former member dropped from the history changes every later step: at 100 members that moves
 * about 20 % of the partitions, at 1000 most of them (test/bench/ring-sim.ts). Whoever stamps a join or
 * a leave must make it later than every `since` and `until` it knows.
 */
export function assignOwners(members: readonly Member[], partitions: number, history: readonly Departed[] = []): Uint32Array {
  // Members and former members together, sorted by id: the index order is the tie-break everywhere.
  const people = [
    ...members.map((m, i) => ({ id: m.id, weight: m.weight, since: m.since ?? 0, until: Infinity, member: i })),
    ...history.map((d) => ({ id: d.id, weight: d.weight, since: d.since, until: d.until, member: -1 })),
  ].sort(byId)
  const count = people.length
  for (let i = 1; i < count; i++) {
    if (people[i - 1].id === people[i].id) throw new InvalidArgumentError(`node id ${people[i].id} appears twice in the membership and its history`)
  }
  const weights = people.map((x) => x.weight)
  const seeds = Uint32Array.from(people, (x) => md5(x.id).readUInt32BE(0))

  // Events as 2·person + (0 join | 1 leave). A former member whose departure is not after its join
  // never held anything: it has no events.
  const events: number[] = []
  const at = (e: number) => (e & 1 ? people[e >> 1].until : people[e >> 1].since)
  for (let i = 0; i < count; i++) {
    if (people[i].until <= people[i].since) continue
    events.push(2 * i)
    if (people[i].member < 0) events.push(2 * i + 1)
  }
  events.sort((a, b) => at(a) - at(b) || (a & 1) - (b & 1) || a - b)

  const owner = new Int32Array(partitions).fill(-1)
  const owned: number[][] = people.map(() => [])
  const slot = new Int32Array(partitions) // where each partition sits in its owner's `owned` list
  const target = new Int32Array(count)
  const deficit = new Int32Array(count) // all zero between events
  const bestOf = new Int32Array(partitions)
  let present: number[] = [] // indices in id order

  const take = (p: number) => {
    const list = owned[owner[p]]
    const last = list.pop()!
    if (last !== p) {
      list[slot[p]] = last
      slot[last] = slot[p]
    }
    owner[p] = -1
  }
  const give = (p: number, to: number) => {
    owner[p] = to
    slot[p] = owned[to].length
    owned[to].push(p)
  }

  for (const e of events) {
    const who = e >> 1
    if ((e & 1) === 0) {
      if (present.length === 0) {
        // The first member (or the first after everyone left) owns every partition.
        owned[who] = []
        for (let p = 0; p < partitions; p++) give(p, who)
        present = [who]
        continue
      }
      present.splice(lowerBound(present, who), 0, who)
    } else {
      present.splice(lowerBound(present, who), 1)
      target[who] = 0
      if (present.length === 0) {
        owner.fill(-1)
        owned[who] = []
        continue
      }
    }
    apportion(partitions, weights, present, target)
    rebalance(e & 1 ? [...present, who] : present)
  }

  function rebalance(involved: readonly number[]): void {
    const receivers = involved.filter((i) => owned[i].length < target[i])
    for (const r of receivers) deficit[r] = target[r] - owned[r].length
    // Donors hand over their excess: all of it when they leave, else the partitions that suit a
    // receiver best (a joiner's, when it is the only receiver).
    const pool: number[] = []
    for (const d of involved) {
      const excess = owned[d].length - target[d]
      if (excess <= 0) continue
      const mine = owned[d]
      if (excess === mine.length) {
        pool.push(...mine)
      } else {
        const keys = new Float64Array(mine.length)
        for (let k = 0; k < mine.length; k++) {
          const p = mine[k]
          let best = 0
          for (const r of receivers) best = Math.max(best, score(seeds[r], p))
          keys[k] = key(best, p)
        }
        const from = keys.length - excess
        select(keys, from)
        for (let k = from; k < keys.length; k++) pool.push(partitionOfKey(keys[k]))
      }
    }
    for (const p of pool) take(p)
    // Best (score, partition) pair first; a partition whose best receiver has filled up meanwhile is
    // scored again among those still short (lazily: its old key bounds its new one from above).
    const heap = new MaxHeap()
    const offer = (p: number) => {
      let best = -1
      let bestScore = -1
      for (const r of receivers) {
        if (deficit[r] === 0) continue
        const s = score(seeds[r], p)
        if (s > bestScore) {
          bestScore = s
          best = r
        }
      }
      bestOf[p] = best
      heap.push(key(bestScore, p))
    }
    for (const p of pool) offer(p)
    while (heap.size > 0) {
      const p = partitionOfKey(heap.pop())
      const r = bestOf[p]
      if (deficit[r] > 0) {
        deficit[r]--
        give(p, r)
      } else {
        offer(p)
      }
    }
  }

  const table = new Uint32Array(partitions)
  for (let p = 0; p < partitions; p++) table[p] = people[owner[p]].member
  return table
}

/**
 * Reorder `xs` (distinct values) so that xs[k] is the value sorting would put there, with the smaller
 * ones before it and the larger ones after (quickselect): the top of a donor's list without a sort.
 */
function select(xs: Float64Array, k: number): void {
  let lo = 0
  let hi = xs.length - 1
  while (hi > lo) {
    const mid = (lo + hi) >> 1
    // Median of three as the pivot; the keys are pseudo-random, so this stays linear on average.
    const a = xs[lo]
    const b = xs[mid]
    const c = xs[hi]
    const pivot = a < b ? (b < c ? b : a < c ? c : a) : a < c ? a : b < c ? c : b
    let i = lo
    let j = hi
    while (i <= j) {
      while (xs[i] < pivot) i++
      while (xs[j] > pivot) j--
      if (i <= j) {
        const t = xs[i]
        xs[i] = xs[j]
        xs[j] = t
        i++
        j--
      }
    }
    if (k <= j) hi = j
    else if (k >= i) lo = i
    else return
  }
}

/** First position in the sorted `xs` whose value is >= x. */
function lowerBound(xs: readonly number[], x: number): number {
  let lo = 0
  let hi = xs.length
  while (lo < hi) {
    const mid = (lo + hi) >> 1
    if (xs[mid] < x) lo = mid + 1
    else hi = mid
  }
  return lo
}

class MaxHeap {
  #a: number[] = []
  get size(): number {
    return this.#a.length
  }
  push(x: number): void {
    const a = this.#a
    let i = a.length
    a.push(x)
    while (i > 0) {
      const up = (i - 1) >> 1
      if (a[up] >= x) break
      a[i] = a[up]
      i = up
    }
    a[i] = x
  }
  pop(): number {
    const a = this.#a
    const top = a[0]
    const x = a.pop()!
    const n = a.length
    if (n > 0) {
      let i = 0
      for (;;) {
        let c = 2 * i + 1
        if (c >= n) break
        if (c + 1 < n && a[c + 1] > a[c]) c++
        if (a[c] <= x) break
        a[i] = a[c]
        i = c
      }
      a[i] = x
    }
    return top
  }
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
    const sorted = [...members].map((m) => ({ id: m.id, url: m.url, weight: m.weight, since: m.since ?? 0 })).sort(byId)
    for (let i = 0; i < sorted.length; i++) {
      const m = sorted[i]
      if (typeof m.id !== 'string' || !ID_RE.test(m.id)) throw new InvalidArgumentError(`node id ${JSON.stringify(m.id)} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
      if (i > 0 && sorted[i - 1].id === m.id) throw new InvalidArgumentError(`node id ${m.id} appears twice in the membership`)
      if (!(typeof m.weight === 'number' && Number.isFinite(m.weight) && m.weight > 0)) throw new InvalidArgumentError(`node ${m.id} has weight ${m.weight}; a weight must be a positive number`)
      if (!Number.isFinite(m.since)) throw new InvalidArgumentError(`node ${m.id} has since ${m.since}; it must be a finite number of ms`)
    }
    this.partitions = partitions
    this.n = n
    this.spares = spares
    this.members = sorted
    this.#shift = 32 - Math.log2(partitions)
    this.#byId = new Map(sorted.map((m) => [m.id, m]))
    const history = [...(options.history ?? [])].map((d) => ({ id: d.id, weight: d.weight, since: d.since, until: d.until })).sort(byId)
    for (let i = 0; i < history.length; i++) {
      const d = history[i]
      if (typeof d.id !== 'string' || !ID_RE.test(d.id)) throw new InvalidArgumentError(`former node id ${JSON.stringify(d.id)} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
      if ((i > 0 && history[i - 1].id === d.id) || this.#byId.has(d.id)) throw new InvalidArgumentError(`node id ${d.id} appears twice in the membership and its history`)
      if (!(typeof d.weight === 'number' && Number.isFinite(d.weight) && d.weight > 0)) throw new InvalidArgumentError(`former node ${d.id} has weight ${d.weight}; a weight must be a positive number`)
      if (!Number.isFinite(d.since) || !Number.isFinite(d.until)) throw new InvalidArgumentError(`former node ${d.id} has since ${d.since} and until ${d.until}; both must be finite numbers of ms`)
    }
    this.history = history
    this.epoch = md5(JSON.stringify([partitions, n, spares, sorted.map((m) => [m.id, m.url, m.weight, m.since]), history.map((d) => [d.id, d.weight, d.since, d.until])])).toString('hex').slice(0, 16)
    this.#owners = assignOwners(sorted, partitions, history)
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
    return md5Word(key) >>> this.#shift
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
}
