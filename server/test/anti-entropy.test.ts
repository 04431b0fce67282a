// Tests of anti-entropy between replicas in one process: AntiEntropy instances over MemoryStores,
// connected by the ReplicaClient over an in-memory `post` that routes to the other instance's handlers and to small
// read/store handlers (DVV sync, as the Replica does), on the simulator's virtual clock.
import { describe, expect, it, vi } from 'vitest'
import {
  ErrorCodes,
  HttpError,
  InvalidArgumentError,
  MerkleTree,
  Paths,
  decodeSet,
  encodeSet,
  md5,
  pack,
  siblings,
  sync,
  unpack,
  update,
  type Clock,
} from '@zerohop/core'
import { AntiEntropy, AntiEntropyPaths, type AntiEntropyOptions } from '../src/anti-entropy.js'
import { dataKey } from '../src/replica.js'
import { replicaClientOf } from './replica-client-of.js'
import { MemoryStore, type Range, type Store } from '../src/storage/store.js'
import { VirtualClock } from '../../test/sim/scheduler.js'

// Everything below runs on promises alone (no I/O): one macrotask turn lets every chain finish.
const settle = () => new Promise<void>((r) => setImmediate(r))

const Q_BITS = 3 // 8 partitions
const partitionOf = (k: Uint8Array) => md5(k).readUInt32BE(0) >>> (32 - Q_BITS)
const keyOf = (i: number) => Buffer.from(`user:${i}`)
const setOf = (actor: string, value: string, base: Uint8Array | undefined = undefined) =>
  encodeSet(update([], base ? decodeSet(base) : [], actor, Buffer.from(value)))

interface Received {
  path: string
  body: Record<string, unknown>
}

/** One replica: a store, its AntiEntropy, and the replica routes another replica may call. */
class TestNode {
  readonly store: Store
  readonly ae: AntiEntropy
  readonly received: Received[] = []
  failNext = 0

  constructor(
    readonly url: string,
    readonly net: Map<string, TestNode>,
    clock: Clock,
    options: Partial<AntiEntropyOptions> = {},
    store: Store = new MemoryStore(),
  ) {
    this.store = store
    net.set(url, this)
    this.ae = new AntiEntropy({
      store,
      clock,
      storeSet: (p, k, s) => this.storeSet(p, k, s),
      replicaClient: replicaClientOf((to, path, body) => net.get(to)!.handle(path, body)),
      partitions: () => [],
      peers: () => [],
      maxKeysPerSecond: Infinity,
      ...options,
    })
  }

  /** What the Replica's store does: DVV-sync the incoming set into the stored one; then tell the tree. */
  async storeSet(p: number, key: Uint8Array, incoming: Uint8Array): Promise<boolean> {
    const dk = dataKey(p, key)
    const before = await this.store.get(dk)
    const after = before ? encodeSet(sync(decodeSet(before), decodeSet(incoming))) : Buffer.from(incoming)
    if (before && Buffer.from(before).equals(after)) return false
    await this.store.put(dk, after)
    this.ae.onWrite(p, key, before, after)
    return true
  }

  /** A client write coordinated here (concurrent with whatever is stored). */
  async write(key: Uint8Array, value: string, actor = 'w'): Promise<void> {
    const p = partitionOf(key)
    const dk = dataKey(p, key)
    const before = await this.store.get(dk)
    const after = setOf(actor, value, before)
    await this.store.put(dk, after)
    this.ae.onWrite(p, key, before, after)
  }

  /** Put a set straight into the store, as data already on disk before start. */
  async seed(key: Uint8Array, set: Uint8Array, partition = partitionOf(key)): Promise<void> {
    await this.store.put(dataKey(partition, key), set)
  }

  async handle(path: string, raw: Uint8Array): Promise<{ status: number; body: Buffer }> {
    const body = unpack(raw) as Record<string, unknown>
    this.received.push({ path, body })
    try {
      if (this.failNext > 0) {
        this.failNext--
        throw new HttpError(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
      }
      let out: unknown
      if (path === AntiEntropyPaths.roots) out = this.ae.handleRoots(body)
      else if (path === AntiEntropyPaths.tree) out = this.ae.handleTree(body)
      else if (path === AntiEntropyPaths.keys) out = this.ae.handleKeys(body)
      else if (path === Paths.read) {
        const keys = body.keys as [number, Uint8Array][]
        out = { sets: (await this.store.getMany(keys.map(([p, k]) => dataKey(p, k)))).map((s) => s ?? null) }
      } else if (path === Paths.store) {
        const items = body.items as [number, Uint8Array, Uint8Array][]
        const results = await Promise.all(items.map(([p, k, s]) => this.storeSet(p, k, s)))
        out = { changed: results.filter(Boolean).length }
      } else throw new HttpError(404, ErrorCodes.NOT_FOUND, `no route ${path}`)
      return { status: 200, body: pack(out) }
    } catch (err) {
      if (err instanceof HttpError) return { status: err.status, body: Buffer.from(JSON.stringify(err.toJSON())) }
      throw err
    }
  }

  async dump(): Promise<string[]> {
    const out: string[] = []
    for await (const [k, v] of this.store.entries()) out.push(`${Buffer.from(k).toString('hex')}=${Buffer.from(v).toString('hex')}`)
    return out
  }
}

async function pair(options: Partial<AntiEntropyOptions> = {}) {
  const clock = new VirtualClock()
  const net = new Map<string, TestNode>()
  const a = new TestNode('a', net, clock, options)
  const b = new TestNode('b', net, clock, options)
  await a.store.open()
  await b.store.open()
  return { clock, net, a, b }
}

/** Both nodes hold `total` keys; `differing` of them differ (a third changed on a, a third only on a, the rest only on b). */
async function seeded(total: number, differing: number, options: Partial<AntiEntropyOptions> = {}) {
  const env = await pair(options)
  const { a, b } = env
  const odd: number[] = []
  for (let i = 0; i < total; i++) {
    const k = keyOf(i)
    const set = setOf('n0', `v${i}`)
    // Spread the differing keys over the key space.
    const d = i % Math.floor(total / differing) === 0 && odd.length < differing ? odd.length % 3 : -1
    if (d >= 0) odd.push(i)
    if (d === 0) {
      await a.seed(k, setOf('n1', `changed ${i}`, set))
      await b.seed(k, set)
    } else if (d === 1) {
      await a.seed(k, set)
    } else if (d === 2) {
      await b.seed(k, set)
    } else {
      await a.seed(k, set)
      await b.seed(k, set)
    }
  }
  expect(odd).toHaveLength(differing)
  await a.ae.build()
  await b.ae.build()
  return { ...env, odd }
}

const ALL = Array.from({ length: 2 ** Q_BITS }, (_, p) => p)

async function exchangeAll(from: TestNode, to: string) {
  let leaves = 0
  let keys = 0
  let repaired = 0
  for (const p of ALL) {
    const r = await from.ae.exchange(p, to)
    leaves += r.leaves
    keys += r.keys
    repaired += r.repaired
  }
  return { leaves, keys, repaired }
}

const traffic = (n: TestNode) => n.ae.metrics.bytesSent + n.ae.metrics.bytesReceived

async function fullCopyBytes(n: TestNode): Promise<number> {
  const items: [number, Uint8Array, Uint8Array][] = []
  for await (const [k, v] of n.store.entries()) items.push([(k[1] << 8) | k[2], k.subarray(3), v])
  return pack({ items }).byteLength
}

describe('AntiEntropy exchange', () => {
  it('makes two replicas identical: 1000 keys, 10 differing, over 8 partitions', async () => {
    const { a, b, odd } = await seeded(1000, 10)
    expect(await a.dump()).not.toEqual(await b.dump())
    const r = await exchangeAll(a, 'b')
    expect(r.keys).toBe(10)
    expect(r.repaired).toBe(10)
    expect(a.ae.metrics.keysRepaired).toBe(10)
    expect(a.ae.metrics.exchanges).toBe(8)
    expect(await a.dump()).toEqual(await b.dump())
    for (const p of ALL) expect(a.ae.root(p).equals(b.ae.root(p))).toBe(true)
    // The key changed on a kept both versions on both sides (DVV sync, not last-writer-wins).
    const changed = keyOf(odd[0])
    const set = decodeSet((await b.store.get(dataKey(partitionOf(changed), changed)))!)
    expect(siblings(set).map((v) => Buffer.from(v).toString()).sort()).toEqual([`changed ${odd[0]}`, `v${odd[0]}`])
    // A second round finds nothing to do.
    expect(await exchangeAll(b, 'a')).toEqual({ leaves: 0, keys: 0, repaired: 0 })
  })

  it('sends bytes in proportion to the differing keys, not to the total', async () => {
    const measure = async (total: number, differing: number) => {
      const { a, b } = await seeded(total, differing)
      const full = await fullCopyBytes(a)
      const r = await exchangeAll(a, 'b')
      expect(r.repaired).toBe(differing)
      expect(await a.dump()).toEqual(await b.dump())
      return { bytes: traffic(a), full, ratio: traffic(a) / full }
    }
    const small = await measure(1000, 10)
    const large = await measure(10_000, 10)
    const more = await measure(10_000, 100)
    console.log('anti-entropy bytes', { '10 of 1000': small, '10 of 10000': large, '100 of 10000': more })
    expect(large.ratio).toBeLessThan(0.05)
    // Ten times the keys with the same differences: the traffic stays about the same...
    expect(large.bytes).toBeLessThan(small.bytes * 1.5)
    // ...and ten times the differences costs several times the traffic.
    expect(more.bytes).toBeGreaterThan(large.bytes * 4)
  })

  it('copies a key present on one side only, both ways', async () => {
    const { a, b } = await pair()
    const x = Buffer.from('only-on-a')
    const y = Buffer.from('only-on-b')
    await a.ae.build()
    await b.ae.build()
    await a.write(x, 'x')
    await b.write(y, 'y')
    await exchangeAll(a, 'b')
    expect(await a.dump()).toEqual(await b.dump())
    expect(await a.dump()).toHaveLength(2)
    expect(a.ae.keyCount(partitionOf(y))).toBeGreaterThan(0)
    for (const p of ALL) expect(a.ae.root(p).equals(b.ae.root(p))).toBe(true)
  })

  it('copies a tombstone held on one side only if it still differs an interval later (a reap in progress looks like that)', async () => {
    const { clock, a, b } = await pair()
    await a.ae.build()
    await b.ae.build()
    const tomb = encodeSet(update([], [], 'n0', null))
    const [k1, k2] = [Buffer.from('deleted-1'), Buffer.from('deleted-2')]
    for (const k of [k1, k2]) {
      const dk = dataKey(partitionOf(k), k)
      await a.store.put(dk, tomb)
      a.ae.onWrite(partitionOf(k), k, undefined, tomb)
    }
    expect(await exchangeAll(a, 'b')).toMatchObject({ keys: 2, repaired: 0 })
    expect(await b.dump()).toEqual([])
    // k2's reap completes on a (its tombstone goes): nothing is ever copied for it.
    const dk2 = dataKey(partitionOf(k2), k2)
    await a.store.del(dk2)
    a.ae.onWrite(partitionOf(k2), k2, tomb, undefined)
    await clock.advance(9_999)
    expect(await exchangeAll(a, 'b')).toMatchObject({ keys: 1, repaired: 0 })
    await clock.advance(1)
    // k1 still differs an interval later: copied, as a reap that failed halfway needs.
    expect(await exchangeAll(a, 'b')).toMatchObject({ keys: 1, repaired: 1 })
    expect(await b.dump()).toEqual(await a.dump())
    expect(await b.dump()).toHaveLength(1)
  })

  it('identical replicas exchange only the root', async () => {
    const { a, b } = await seeded(1000, 3)
    await exchangeAll(a, 'b')
    b.received.length = 0
    const before = traffic(a)
    const r = await a.ae.exchange(partitionOf(keyOf(1)), 'b')
    expect(r).toEqual({ leaves: 0, keys: 0, repaired: 0 })
    expect(b.received).toHaveLength(1)
    expect(b.received[0].path).toBe(AntiEntropyPaths.tree)
    expect(b.received[0].body).toMatchObject({ level: 0, indices: [0] })
    expect(traffic(a) - before).toBeLessThan(100)
  })

  it('fills an empty replica, pulling every key', async () => {
    const { a, b } = await pair()
    for (let i = 0; i < 600; i++) await a.seed(keyOf(i), setOf('n0', `v${i}`))
    await a.ae.build()
    await b.ae.build()
    const r = await exchangeAll(b, 'a')
    expect(r.repaired).toBe(600)
    expect(await b.dump()).toEqual(await a.dump())
    // The pulled keys went through storeSet → onWrite: b's trees are current.
    for (const p of ALL) expect(b.ae.root(p).equals(a.ae.root(p))).toBe(true)
  })

  it('keeps trees current write by write: they equal the trees a fresh scan builds', async () => {
    const { clock, net, a } = await seeded(500, 5)
    for (let i = 0; i < 200; i++) await a.write(keyOf(i * 3), `w${i}`)
    // Deletes of stored data (dropped, not tombstoned) go through onWrite with after = undefined.
    for (let i = 1; i < 50; i += 7) {
      const k = keyOf(i)
      const dk = dataKey(partitionOf(k), k)
      const before = await a.store.get(dk)
      await a.store.del(dk)
      a.ae.onWrite(partitionOf(k), k, before, undefined)
    }
    const fresh = new TestNode('fresh', net, clock, {}, a.store)
    await fresh.ae.build()
    for (const p of ALL) {
      expect(a.ae.root(p).equals(fresh.ae.root(p))).toBe(true)
      expect(a.ae.keyCount(p)).toBe(fresh.ae.keyCount(p))
    }
  })

  it('counts a write made during the start scan exactly once', async () => {
    // A store whose scan pauses after its first page of one row, so writes land mid-scan (the scan
    // reads a snapshot, as LevelDB's iterators do).
    const inner = new MemoryStore()
    let hook: (() => Promise<void>) | undefined
    const store: Store = {
      open: () => inner.open(),
      close: () => inner.close(),
      get: (k) => inner.get(k),
      getMany: (k) => inner.getMany(k),
      put: (k, v) => inner.put(k, v),
      del: (k) => inner.del(k),
      entries: (range?: Range) => inner.entries(range),
      async *pages(range?: Range) {
        let first = true
        for await (const page of inner.pages(range, 1)) {
          yield page
          if (first && hook) await hook()
          first = false
        }
      },
    }
    await store.open()
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const a = new TestNode('a', net, clock, {}, store)
    for (let i = 0; i < 300; i++) await a.seed(keyOf(i), setOf('n0', `v${i}`))
    hook = async () => {
      for (let i = 0; i < 300; i += 10) await a.write(keyOf(i), `during ${i}`)
      await a.write(Buffer.from('new-key'), 'new')
      const gone = keyOf(5)
      const dk = dataKey(partitionOf(gone), gone)
      const before = await store.get(dk)
      await store.del(dk)
      a.ae.onWrite(partitionOf(gone), gone, before, undefined)
    }
    await a.ae.build()
    hook = undefined
    const fresh = new TestNode('fresh', net, clock, {}, store)
    await fresh.ae.build()
    for (const p of ALL) expect(a.ae.root(p).equals(fresh.ae.root(p))).toBe(true)
  })

  it('repairs at most maxKeysPerSecond', async () => {
    const { clock, a, b } = await pair({ maxKeysPerSecond: 1000, batchKeys: 500 })
    const p = 3
    // 2000 keys of one partition, on a only.
    for (let i = 0, n = 0; n < 2000; i++) {
      const k = keyOf(i)
      if (partitionOf(k) !== p) continue
      await a.seed(k, setOf('n0', `v${i}`))
      n++
    }
    await a.ae.build()
    await b.ae.build()
    const reads: number[] = []
    const handle = a.handle.bind(a)
    a.handle = async (path, body) => {
      if (path === Paths.read) reads.push(clock.now())
      return handle(path, body)
    }
    let done = false
    const run = b.ae.exchange(p, 'a').then((r) => {
      done = true
      return r
    })
    while (!done) await clock.advance(50)
    expect((await run).repaired).toBe(2000)
    // Four batches of 500, one every half second.
    expect(reads).toEqual([0, 500, 1000, 1500])
    expect(b.ae.metrics.lastExchangeMs).toBe(1500)
    expect(await b.dump()).toEqual(await a.dump())
  })

  it('never sends a batch over a second of the rate limit', async () => {
    const { clock, a, b } = await pair({ maxKeysPerSecond: 100, batchKeys: 500 })
    for (let i = 0, n = 0; n < 250; i++) {
      const k = keyOf(i)
      if (partitionOf(k) !== 0) continue
      await a.seed(k, setOf('n0', `v${i}`))
      n++
    }
    await a.ae.build()
    await b.ae.build()
    let done = false
    void b.ae.exchange(0, 'a').then(() => (done = true))
    while (!done) await clock.advance(100)
    const sizes = a.received.filter((r) => r.path === Paths.read).map((r) => (r.body.keys as unknown[]).length)
    expect(sizes).toEqual([100, 100, 50])
    expect(clock.now()).toBeGreaterThanOrEqual(2000)
  })

  it('answers a peer error with an HttpError carrying its code', async () => {
    const { a, b } = await seeded(100, 3)
    b.failNext = 1
    const err = await a.ae.exchange(0, 'b').catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HttpError)
    expect(err).toMatchObject({ status: 503, code: ErrorCodes.SHUTTING_DOWN })
    expect(a.ae.metrics.failures).toBe(1)
  })
})

describe('AntiEntropy loop', () => {
  const Q64 = 64
  const partitionOf64 = (k: Uint8Array) => md5(k).readUInt32BE(0) >>> 26
  const ALL64 = Array.from({ length: Q64 }, (_, p) => p)
  /** The first `n` keys (of keyOf) that fall in `partition` of 64. */
  const keysIn64 = (partition: number, n: number, skip = 0) => {
    const out: Uint8Array[] = []
    for (let i = 0; out.length < n + skip; i++) if (partitionOf64(keyOf(i)) === partition) out.push(keyOf(i))
    return out.slice(skip)
  }
  const paths = (n: TestNode) => n.received.map((r) => r.path)
  const partitionsOf = (n: TestNode, path: string) => [...new Set(n.received.filter((r) => r.path === path).map((r) => r.body.partition as number))].sort((x, y) => x - y)

  /** a and b replicate 64 partitions, 20 keys each, the same on both but for the keys `differ` puts in. */
  async function sharing64(options: Partial<AntiEntropyOptions> = {}, differ: (a: TestNode, b: TestNode) => Promise<void> = async () => undefined) {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const errors: [unknown, number | undefined, string][] = []
    const a = new TestNode('a', net, clock, {
      partitions: () => ALL64,
      peers: () => [{ id: 'b', url: 'b' }],
      onError: (err, p, peer) => errors.push([err, p, peer.id]),
      ...options,
    })
    const b = new TestNode('b', net, clock)
    await a.store.open()
    await b.store.open()
    for (const p of ALL64) {
      for (const k of keysIn64(p, 20)) {
        const set = setOf('n0', `v-${p}`)
        await a.seed(k, set, p)
        await b.seed(k, set, p)
      }
    }
    await differ(a, b)
    await b.ae.build()
    await a.ae.start()
    return { clock, net, a, b, errors }
  }

  const samePartitions = (a: TestNode, b: TestNode) => ALL64.filter((p) => !a.ae.root(p).equals(b.ae.root(p)))

  it('one round: one roots request for all 64 shared partitions, then exchanges of only the 3 that differ', async () => {
    const draws = [0.9, 0]
    const { clock, a, b } = await sharing64({ random: () => draws.shift() ?? 0 }, async (a, b) => {
      // Partition 5: a key changed on a; 17: a key only on b; 42: a key only on a.
      const [k5] = keysIn64(5, 1)
      await a.seed(k5, setOf('n1', 'changed', setOf('n0', 'v-5')), 5)
      await b.seed(keysIn64(17, 1, 20)[0], setOf('n0', 'new on b'), 17)
      await a.seed(keysIn64(42, 1, 20)[0], setOf('n0', 'new on a'), 42)
    })
    expect(samePartitions(a, b)).toEqual([5, 17, 42])
    await clock.advance(9_999)
    expect(b.received).toEqual([])
    await clock.advance(1)
    // All three repaired in the one round, without waiting for further intervals.
    expect(samePartitions(a, b)).toEqual([])
    expect(await a.dump()).toEqual(await b.dump())
    const roots = b.received.filter((r) => r.path === AntiEntropyPaths.roots)
    expect(roots).toHaveLength(1)
    expect(roots[0].body).toEqual({ partitions: ALL64, fanout: 16, depth: 3 })
    expect(b.received[0].path).toBe(AntiEntropyPaths.roots)
    // Only the differing partitions were descended; the other 61 cost their 16-byte root alone.
    expect(partitionsOf(b, AntiEntropyPaths.tree)).toEqual([5, 17, 42])
    expect(partitionsOf(b, AntiEntropyPaths.keys)).toEqual([5, 17, 42])
    // In the order `random` shuffled them to (Fisher-Yates: 0.9 keeps 42 last, 0 swaps 5 and 17).
    expect(b.received.filter((r) => r.path === AntiEntropyPaths.tree && r.body.level === 0).map((r) => r.body.partition)).toEqual([17, 5, 42])
    expect(a.ae.metrics).toMatchObject({ rounds: 1, exchanges: 3, failures: 0, keysRepaired: 3 })
    const roundBytes = traffic(a)
    console.log('a round repairing 3 of 64 partitions', { requests: b.received.length, bytes: roundBytes, byPath: Object.fromEntries([...new Set(paths(b))].map((x) => [x, paths(b).filter((y) => y === x).length])) })
    // Each descent is 4 tree requests (a level each) and one keys request, plus the repair's read (and store).
    expect(b.received.length).toBeLessThanOrEqual(1 + 3 * 7)
    expect(roundBytes).toBeLessThan(6000)

    // In sync: the next round is the roots request alone.
    b.received.length = 0
    await clock.advance(10_000)
    expect(paths(b)).toEqual([AntiEntropyPaths.roots])
    const idle = traffic(a) - roundBytes
    console.log('an in-sync round with 64 shared partitions', { requests: 1, bytes: idle })
    expect(idle).toBeGreaterThanOrEqual(64 * 16)
    expect(idle).toBeLessThan(64 * 16 * 1.25 + 100)
    expect(a.ae.metrics).toMatchObject({ rounds: 2, exchanges: 3 })
    await a.ae.stop()
  })

  it('an in-sync round costs one roots request per peer, for exactly the partitions the two share', async () => {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    let active = true
    const a = new TestNode('a', net, clock, {
      partitions: () => (active ? [0, 1, 2, 3, 5, 6] : []),
      // b replicates all of them, c the even ones, d none of a's (never asked).
      peers: (p) => (p % 2 === 0 ? [{ id: 'b', url: 'b' }, { id: 'c', url: 'c' }] : [{ id: 'b', url: 'b' }]),
    })
    const b = new TestNode('b', net, clock)
    const c = new TestNode('c', net, clock)
    for (const n of [a, b, c]) await n.store.open()
    await b.ae.build()
    await c.ae.build()
    await a.ae.start()
    await clock.advance(10_000)
    expect(b.received.map((r) => [r.path, r.body.partitions])).toEqual([[AntiEntropyPaths.roots, [0, 1, 2, 3, 5, 6]]])
    expect(c.received.map((r) => [r.path, r.body.partitions])).toEqual([[AntiEntropyPaths.roots, [0, 2, 6]]])
    expect(a.ae.metrics).toMatchObject({ rounds: 2, exchanges: 0 })
    // Bytes of the roots requests are counted: 6 and 3 roots of 16 bytes, and the two small requests.
    expect(a.ae.metrics.bytesReceived).toBeGreaterThanOrEqual(9 * 16)
    expect(a.ae.metrics.bytesReceived).toBeLessThan(9 * 18 + 2 * 16)
    expect(a.ae.metrics.bytesSent).toBeGreaterThan(0)
    // While the rings change, partitions() is empty: nothing is compared.
    active = false
    await clock.advance(30_000)
    expect(b.received).toHaveLength(1)
    expect(c.received).toHaveLength(1)
    await a.ae.stop()
    expect(clock.pending).toBe(0)
  })

  it('a peer that fails is left until the next round; the other peers still get theirs', async () => {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const errors: [unknown, number | undefined, string][] = []
    const a = new TestNode('a', net, clock, {
      partitions: () => [1, 2],
      peers: () => [
        { id: 'b', url: 'b' },
        { id: 'c', url: 'c' },
      ],
      onError: (err, p, peer) => errors.push([err, p, peer.id]),
    })
    const b = new TestNode('b', net, clock)
    const c = new TestNode('c', net, clock)
    for (const n of [a, b, c]) await n.store.open()
    let k: Uint8Array | undefined
    for (let i = 0; !k; i++) if (partitionOf(keyOf(i)) === 1) k = keyOf(i)
    await a.seed(k, setOf('n0', 'v'))
    await a.ae.start()
    await b.ae.build()
    await c.ae.build()
    b.failNext = 1
    await clock.advance(10_000)
    expect(errors).toHaveLength(1)
    expect(errors[0][0]).toMatchObject({ status: 503, code: ErrorCodes.SHUTTING_DOWN })
    expect(errors[0].slice(1)).toEqual([undefined, 'b'])
    expect(paths(b)).toEqual([AntiEntropyPaths.roots])
    // c was compared and repaired in the same round.
    expect(await c.dump()).toEqual(await a.dump())
    expect(await b.dump()).toEqual([])
    await clock.advance(10_000)
    expect(await b.dump()).toEqual(await a.dump())
    expect(a.ae.metrics).toMatchObject({ rounds: 3, exchanges: 2, failures: 1 })
    await a.ae.stop()
    await clock.advance(100_000)
    expect(a.ae.metrics.rounds).toBe(3)
    expect(clock.pending).toBe(0)
  })

  it('an exchange that fails ends the round with that peer; the next round takes it last, so it holds back no other partition', async () => {
    // random 0.99: no shuffle, the differing partitions in ascending order.
    const { clock, a, b, errors } = await sharing64({ random: () => 0.99 }, async (a) => {
      for (const p of [10, 20, 30]) await a.seed(keysIn64(p, 1, 20)[0], setOf('n0', `only on a ${p}`), p)
    })
    // Every tree request for partition 10 fails on b.
    const handle = b.handle.bind(b)
    b.handle = async (path, raw) => {
      const body = unpack(raw) as Record<string, unknown>
      if (path === AntiEntropyPaths.tree && body.partition === 10) return { status: 500, body: Buffer.from(JSON.stringify({ error: { code: ErrorCodes.INTERNAL, message: 'disk on fire' } })) }
      return handle(path, raw)
    }
    await clock.advance(10_000)
    expect(errors.map(([, p, peer]) => [p, peer])).toEqual([[10, 'b']])
    // 20 and 30 were not tried after 10 failed.
    expect(samePartitions(a, b)).toEqual([10, 20, 30])
    await clock.advance(10_000)
    // This round took 20 and 30 first, then tried 10 again.
    expect(samePartitions(a, b)).toEqual([10])
    expect(errors.map(([, p]) => p)).toEqual([10, 10])
    expect(a.ae.metrics).toMatchObject({ rounds: 2, exchanges: 2, failures: 2 })
    await a.ae.stop()
  })

  it('exchanges the differing partitions back to back within the key rate limit', async () => {
    const { clock, a, b } = await sharing64({ maxKeysPerSecond: 1000, batchKeys: 500 }, async (a) => {
      for (const p of [7, 8, 9]) for (const k of keysIn64(p, 500, 20)) await a.seed(k, setOf('n0', `new ${p}`), p)
    })
    const reads: number[] = []
    const handle = b.handle.bind(b)
    b.handle = async (path, raw) => {
      if (path === Paths.read) reads.push(clock.now())
      return handle(path, raw)
    }
    await clock.advance(10_000)
    for (let i = 0; i < 60 && samePartitions(a, b).length > 0; i++) await clock.advance(100)
    expect(samePartitions(a, b)).toEqual([])
    // 1500 keys at 1000 a second: a batch of 500 every half second, from the first interval on.
    expect(reads).toEqual([10_000, 10_500, 11_000])
    expect(a.ae.metrics).toMatchObject({ rounds: 1, exchanges: 3, keysRepaired: 1500 })
    await a.ae.stop()
  })

  it('a long round checks its plan again: partitions no longer compared (rings changing) are not exchanged', async () => {
    let active = true
    const { clock, a, b } = await sharing64({ maxKeysPerSecond: 1000, batchKeys: 500, random: () => 0.99, partitions: () => (active ? ALL64 : []) }, async (a) => {
      for (const p of [7, 8, 9]) for (const k of keysIn64(p, 600, 20)) await a.seed(k, setOf('n0', `new ${p}`), p)
    })
    await clock.advance(10_000)
    // 7 takes reads at 10 000 and 10 500, 8 at 10 600 and 11 100; the rings start to change meanwhile.
    await clock.advance(700)
    active = false
    for (let i = 0; i < 30; i++) await clock.advance(100)
    expect(samePartitions(a, b)).toEqual([9])
    expect(partitionsOf(b, AntiEntropyPaths.tree)).toEqual([7, 8])
    expect(a.ae.metrics).toMatchObject({ rounds: 1, exchanges: 2, keysRepaired: 1200 })
    await a.ae.stop()
  })

  it('a peer whose trees have another shape refuses clearly; nothing else is asked of it', async () => {
    const { clock, a, b, errors } = await sharing64({ fanout: 4, depth: 6 })
    await clock.advance(10_000)
    expect(paths(b)).toEqual([AntiEntropyPaths.roots])
    expect(errors).toHaveLength(1)
    expect(errors[0][0]).toMatchObject({ status: 409, code: ErrorCodes.CLUSTER_MISMATCH })
    expect(String(errors[0][0])).toMatch(/fanout 4 and depth 6, this node's fanout 16 and depth 3/)
    expect(a.ae.metrics).toMatchObject({ rounds: 0, exchanges: 0, failures: 1 })
    await a.ae.stop()
  })

  it('stop() ends an exchange waiting on the rate limit, and the round with it', async () => {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const b = new TestNode('b', net, clock, { maxKeysPerSecond: 10, batchKeys: 10, random: () => 0.99, partitions: () => [0, 1], peers: () => [{ id: 'a', url: 'a' }] })
    const a = new TestNode('a', net, clock)
    await a.store.open()
    await b.store.open()
    for (let i = 0, n = 0; n < 100; i++) {
      if (partitionOf(keyOf(i)) !== 0) continue
      await a.seed(keyOf(i), setOf('n0', `v${i}`))
      n++
    }
    // Partition 1 differs too: its exchange would come next in the round.
    for (let i = 0, n = 0; n < 5; i++) {
      if (partitionOf(keyOf(i)) !== 1) continue
      await a.seed(keyOf(i), setOf('n0', `v${i}`))
      n++
    }
    await a.ae.build()
    await b.ae.start()
    await clock.advance(10_000)
    await clock.advance(1_500)
    const copied = (await b.dump()).length
    expect(copied).toBeGreaterThan(0)
    expect(copied).toBeLessThan(100)
    await b.ae.stop()
    expect(b.ae.metrics.failures).toBe(1)
    expect(clock.pending).toBe(0)
    await clock.advance(60_000)
    expect(a.received.filter((r) => r.body.partition === 1)).toEqual([])
  })
})

describe('AntiEntropy handlers', () => {
  it('refuse to serve before the trees are built', async () => {
    const { a } = await pair()
    expect(() => a.ae.handleTree({ partition: 0, level: 0, indices: [0] })).toThrow(expect.objectContaining({ status: 503, code: ErrorCodes.NOT_READY }))
  })

  it('validate their bodies', async () => {
    const { a } = await pair()
    await a.ae.build()
    const tree = (body: unknown) => () => a.ae.handleTree(body)
    expect(tree([1, 2])).toThrow(expect.objectContaining({ status: 400, code: ErrorCodes.BAD_BODY }))
    expect(tree({ partition: -1, level: 0, indices: [0] })).toThrow(expect.objectContaining({ code: ErrorCodes.UNKNOWN_PARTITION }))
    expect(tree({ partition: 0, level: 4, indices: [0] })).toThrow(/level must be an integer from 0 \(the root\) to 3/)
    expect(tree({ partition: 0, level: 1, indices: [16] })).toThrow(/integers from 0 to 15/)
    expect(tree({ partition: 0, level: 1, indices: [] })).toThrow(/array of 1 to 4096/)
    expect(tree({ partition: 0, level: 0, indices: [0], fanout: 4, depth: 6 })).toThrow(expect.objectContaining({ status: 409, code: ErrorCodes.CLUSTER_MISMATCH }))
    expect(() => a.ae.handleKeys({ partition: 0, leaves: [4096] })).toThrow(/integers from 0 to 4095/)
    expect(a.ae.handleTree({ partition: 9, level: 0, indices: [0] }).hashes[0]).toEqual(new MerkleTree().root())
    expect(a.ae.handleKeys({ partition: 9, leaves: [0, 1] })).toEqual({ keys: [] })
  })

  it('answer the roots of the asked partitions, in order; validate that body with typed 4xx errors', async () => {
    const { a } = await pair()
    expect(() => a.ae.handleRoots({ partitions: [0] })).toThrow(expect.objectContaining({ status: 503, code: ErrorCodes.NOT_READY }))
    await a.ae.build()
    const k = Buffer.from('cart:1')
    await a.write(k, 'x')
    const p = partitionOf(k)
    const empty = new MerkleTree().root()
    const other = (p + 1) % 8
    expect(a.ae.handleRoots({ partitions: [p, other, p], fanout: 16, depth: 3 })).toEqual({ roots: [a.ae.root(p), empty, a.ae.root(p)] })
    expect(a.ae.root(p)).not.toEqual(empty)
    const roots = (body: unknown) => () => a.ae.handleRoots(body)
    const badBody = expect.objectContaining({ status: 400, code: ErrorCodes.BAD_BODY })
    for (const body of [null, [0, 1], 'partitions', {}, { partitions: 3 }, { partitions: [] }, { partitions: { 0: 1 } }, { partitions: Array.from({ length: 4097 }, () => 0) }]) {
      expect(roots(body), JSON.stringify(body)?.slice(0, 50)).toThrow(badBody)
    }
    expect(roots({ partitions: [] })).toThrow(/partitions must be an array of 1 to 4096 integers/)
    for (const bad of [-1, 1.5, '3', null, 65536, 2 ** 32, 2n ** 64n - 1n, [1n]]) {
      expect(roots({ partitions: [0, bad] }), String(bad)).toThrow(expect.objectContaining({ status: 400, code: ErrorCodes.UNKNOWN_PARTITION }))
    }
    expect(roots({ partitions: [0], fanout: 4, depth: 6 })).toThrow(expect.objectContaining({ status: 409, code: ErrorCodes.CLUSTER_MISMATCH }))
    expect(roots({ partitions: [0], depth: 4 })).toThrow(/run every node with the same anti-entropy tree options/)
    expect(a.ae.handleRoots({ partitions: Array.from({ length: 4096 }, (_, i) => i) }).roots).toHaveLength(4096)
  })

  it('compareRoots names the partitions whose roots differ, in the order asked', async () => {
    const { a, b, odd } = await seeded(1000, 10)
    const differ = [...new Set(odd.map((i) => partitionOf(keyOf(i))))].sort((x, y) => x - y)
    expect(differ.length).toBeGreaterThan(1)
    expect(await a.ae.compareRoots('b', ALL)).toEqual(differ)
    expect(await a.ae.compareRoots('b', [...ALL].reverse())).toEqual([...differ].reverse())
    expect(b.received.map((r) => r.path)).toEqual([AntiEntropyPaths.roots, AntiEntropyPaths.roots])
    expect(a.ae.metrics).toMatchObject({ rounds: 2, exchanges: 0 })
    await exchangeAll(a, 'b')
    expect(await a.ae.compareRoots('b', ALL)).toEqual([])
  })

  it('compareRoots refuses an answer of the wrong shape', async () => {
    const { a, b } = await pair()
    await a.ae.build()
    await b.ae.build()
    for (const roots of [undefined, [], [Buffer.alloc(16)], [Buffer.alloc(16), Buffer.alloc(15)], [Buffer.alloc(16), 'x']]) {
      b.handle = async () => ({ status: 200, body: pack({ roots }) })
      await expect(a.ae.compareRoots('b', [0, 1])).rejects.toThrow(/with something other than 2 roots of 16 bytes/)
    }
    expect(a.ae.metrics.failures).toBe(5)
  })

  it('list the keys of a leaf with the digest of each key and its stored set', async () => {
    const { a } = await pair()
    await a.ae.build()
    const k = Buffer.from('cart:1')
    await a.write(k, 'x')
    const stored = (await a.store.get(dataKey(partitionOf(k), k)))!
    const tree = new MerkleTree()
    const leaf = tree.leafOf(k)
    const input = Buffer.concat([Buffer.from([0, 0, 0, k.length]), k, stored])
    expect(tree.digest(k, stored)).toEqual(md5(input))
    expect(a.ae.handleKeys({ partition: partitionOf(k), leaves: [leaf] })).toEqual({ keys: [[k, md5(input)]] })
    // Another leaf of the partition does not list it.
    expect(a.ae.handleKeys({ partition: partitionOf(k), leaves: [(leaf + 1) % tree.leaves] }).keys.some(([x]) => Buffer.from(x).equals(k))).toBe(false)
  })

  it('validates its options', () => {
    const base = { store: new MemoryStore(), clock: new VirtualClock(), storeSet: async () => true, replicaClient: replicaClientOf(async () => ({ status: 200, body: Buffer.alloc(0) })), partitions: () => [], peers: () => [] }
    expect(() => new AntiEntropy({ ...base, intervalMs: 0 })).toThrow(InvalidArgumentError)
    expect(() => new AntiEntropy({ ...base, maxKeysPerSecond: 0 })).toThrow(/positive number, or Infinity/)
    expect(() => new AntiEntropy({ ...base, batchKeys: 5000 })).toThrow(/from 1 to 1000/)
    expect(() => new AntiEntropy({ ...base, fanout: 3 })).toThrow(/power of two/)
    expect(() => new AntiEntropy({ ...base, replicaClient: undefined as never })).toThrow(/replicaClient must be a ReplicaClient/)
    expect(() => new AntiEntropy({ ...base, random: 0.5 as never })).toThrow(/random must be a function/)
  })
})
describe('anti-entropy stop()', () => {
  async function setup(rate: number, keys: number) {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const a = new TestNode('a', net, clock)
    // b's requests to a take 5 ms of real time each (a slow or distant peer).
    const b = new TestNode('b', net, clock, {
      maxKeysPerSecond: rate,
      partitions: () => [0],
      peers: () => [{ id: 'a', url: 'a' }],
      replicaClient: replicaClientOf(async (to, path, body) => {
        await new Promise((r) => setTimeout(r, 5))
        return net.get(to)!.handle(path, body)
      }),
    })
    await a.store.open()
    await b.store.open()
    for (let i = 0, n = 0; n < keys; i++) {
      if (partitionOf(keyOf(i)) !== 0) continue
      await a.seed(keyOf(i), setOf('n0', `v${i}`))
      n++
    }
    await a.ae.build()
    await b.ae.start()
    return { clock, a, b }
  }

  for (const rate of [Infinity, 5000]) {
    it(`maxKeysPerSecond ${rate}: after stop(), the exchange under way sends no further request`, async () => {
      const { clock, a, b } = await setup(rate, 400)
      void clock.advance(10_000) // fires the round timer
      await vi.waitFor(() => expect(a.received.some((r) => r.path === AntiEntropyPaths.tree)).toBe(true), { interval: 1 })
      const atStop = a.received.length
      await b.ae.stop()
      const after = a.received.slice(atStop).map((r) => r.path)
      expect(after.length).toBeLessThanOrEqual(1)
    })
  }
})

describe('anti-entropy one-sided tombstones', () => {
  it('a one-sided tombstone is copied the round after it was first seen, even while rounds are long', async () => {
    const clock = new VirtualClock()
    const net = new Map<string, TestNode>()
    const b = new TestNode('b', net, clock)
    // a: 1 s interval, 100 keys/s; partition 0 holds a tombstone b lacks; partition 1 has a backlog of
    // live keys b lacks (a rebuilding replica), refilled each round as a long repair would be.
    const order = [0, 1]
    const a = new TestNode('a', net, clock, {
      intervalMs: 1000,
      maxKeysPerSecond: 100,
      batchKeys: 100,
      random: () => 0.99, // keeps partition order [0, 1]: the tombstone's partition first
      partitions: () => order,
      peers: () => [{ id: 'b', url: 'b' }],
    })
    await a.store.open()
    await b.store.open()
    await a.ae.build()
    await b.ae.build()
    let k: Buffer | undefined
    for (let i = 0; !k; i++) if (partitionOf(Buffer.from(`gone-${i}`)) === 0) k = Buffer.from(`gone-${i}`)
    const tomb = encodeSet(update([], [], 'n0', null))
    await a.store.put(dataKey(0, k), tomb)
    a.ae.onWrite(0, k, undefined, tomb)
    let next = 0
    const backlog = async (n: number) => {
      for (let added = 0; added < n; next++) {
        if (partitionOf(keyOf(next)) !== 1) continue
        await a.write(keyOf(next), `v${next}`)
        added++
      }
    }
    await backlog(2500) // 25 s of repairs at 100 keys/s: more than 2 intervals after the tombstone
    await a.ae.start()
    const copied = async () => (await b.store.get(dataKey(0, k!))) !== undefined
    let rounds = 0
    let seen = 0
    while (clock.t < 300_000 && !(await copied())) {
      await clock.advance(500)
      if (a.ae.metrics.rounds !== seen) {
        seen = a.ae.metrics.rounds
        rounds++
        await backlog(2500) // the backlog persists: a long rebuild
      }
    }
    expect(await copied()).toBe(true)
    // Seen in the first round, copied in the second: the long rounds did not defer it again.
    expect(rounds).toBe(2)
  }, 60_000)
})

describe('anti-entropy request shapes', () => {
  it('a fanout sent as a 64-bit integer (decoded as a BigInt) is a 400, not a tree-shape mismatch', async () => {
    const { a } = await pair()
    await a.ae.build()
    // {partitions: [0], fanout: uint64 16}: MessagePack decoders read any uint64 as a BigInt.
    const body = unpack(Buffer.from([0x82, 0xaa, ...Buffer.from('partitions'), 0x91, 0x00, 0xa6, ...Buffer.from('fanout'), 0xcf, 0, 0, 0, 0, 0, 0, 0, 16])) as Record<string, unknown>
    expect(() => a.ae.handleRoots(body)).toThrow(expect.objectContaining({ status: 400, code: ErrorCodes.BAD_BODY }))
  })
})
