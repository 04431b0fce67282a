// Unit tests of the Replica (read / coordinate / store) over a MemoryStore, its per-key lock, and the
// storage key layout (dataKey / partitionRange).
import { randomBytes } from 'node:crypto'
import { beforeEach, describe, expect, it, vi } from 'vitest'
import { ClusterKeys, decodeSet, encodeSet, join, siblings, update, vectorBytes, type DvvSet } from '@zerohop/core'
import { KeyLocks, Replica, dataKey, partitionRange } from '../src/replica.js'
import { ContextMacs } from '../src/routes/replica.js'
import { MemoryStore, type Range, type Store } from '../src/storage/store.js'

const P = 7
const KEY = Buffer.from('cart:42')
const v = (s: string) => Buffer.from(s)
const str = (set: DvvSet) => siblings(set).map((x) => Buffer.from(x).toString())

async function openStore(): Promise<MemoryStore> {
  const s = new MemoryStore()
  await s.open()
  return s
}

/** A Store that yields to the event loop (a random few ms) before each call, like a disk would. */
class SlowStore implements Store {
  constructor(readonly inner: Store) {}
  #pause = () => new Promise((r) => setTimeout(r, Math.random() * 3))
  open() { return this.inner.open() }
  close() { return this.inner.close() }
  async get(key: Uint8Array) { await this.#pause(); return this.inner.get(key) }
  async getMany(keys: Uint8Array[]) { await this.#pause(); return this.inner.getMany(keys) }
  async put(key: Uint8Array, value: Uint8Array) { await this.#pause(); return this.inner.put(key, value) }
  async del(key: Uint8Array) { await this.#pause(); return this.inner.del(key) }
  entries(range?: Range) { return this.inner.entries(range) }
  pages(range?: Range, size?: number) { return this.inner.pages(range, size) }
}

describe('Replica.coordinate', () => {
  let store: MemoryStore
  let replica: Replica

  beforeEach(async () => {
    store = await openStore()
    replica = new Replica(store, 'n1~aaaa')
  })

  it('two writes with an empty context become two siblings', async () => {
    const first = decodeSet(await replica.coordinate(P, KEY, [], v('a')))
    expect(first).toEqual([['n1~aaaa', 1, [v('a')]]])
    const second = decodeSet(await replica.coordinate(P, KEY, [], v('b')))
    expect(second).toEqual([['n1~aaaa', 2, [v('b'), v('a')]]])
    expect(str(second).sort()).toEqual(['a', 'b'])
    // What read() returns is what coordinate() stored.
    const [stored] = await replica.read([[P, KEY]])
    expect(Buffer.from(stored!).equals(encodeSet(second))).toBe(true)
  })

  it('a write whose context is the join of the siblings replaces them with one value', async () => {
    await replica.coordinate(P, KEY, [], v('a'))
    const both = decodeSet(await replica.coordinate(P, KEY, [], v('b')))
    const one = decodeSet(await replica.coordinate(P, KEY, join(both), v('c')))
    expect(str(one)).toEqual(['c'])
    expect(one).toEqual([['n1~aaaa', 3, [v('c')]]])
    // A context that saw only the first write keeps the second as a sibling.
    const store2 = await openStore()
    const r2 = new Replica(store2, 'n1~aaaa')
    const a = decodeSet(await r2.coordinate(P, KEY, [], v('a')))
    await r2.coordinate(P, KEY, [], v('b'))
    expect(str(decodeSet(await r2.coordinate(P, KEY, join(a), v('c')))).sort()).toEqual(['b', 'c'])
  })

  it('a null value is a tombstone that supersedes what the context saw', async () => {
    const a = decodeSet(await replica.coordinate(P, KEY, [], v('a')))
    const del = decodeSet(await replica.coordinate(P, KEY, join(a), null))
    expect(del).toEqual([['n1~aaaa', 2, [null]]])
    expect(siblings(del)).toEqual([])
  })

  it('keys and partitions are independent', async () => {
    await replica.coordinate(P, KEY, [], v('a'))
    await replica.coordinate(P + 1, KEY, [], v('other partition'))
    await replica.coordinate(P, Buffer.from('cart:43'), [], v('other key'))
    const [x, y, z, missing] = await replica.read([[P, KEY], [P + 1, KEY], [P, Buffer.from('cart:43')], [P, Buffer.from('nope')]])
    expect(str(decodeSet(x!))).toEqual(['a'])
    expect(str(decodeSet(y!))).toEqual(['other partition'])
    expect(str(decodeSet(z!))).toEqual(['other key'])
    expect(missing).toBeNull()
    expect(await replica.read([[P, Buffer.from('nope')]])).toEqual([null])
  })

  it('20 concurrent coordinates on one key with empty contexts all survive as siblings (per-key lock)', async () => {
    const slow = new Replica(new SlowStore(store), 'n1~aaaa')
    const values = Array.from({ length: 20 }, (_, i) => `w${i}`)
    // Each key object is a fresh copy: the lock must go by bytes, not by identity.
    const results = await Promise.all(values.map((x) => slow.coordinate(P, Buffer.from(KEY), [], v(x))))
    const [stored] = await slow.read([[P, KEY]])
    const final = decodeSet(stored!)
    expect(final).toHaveLength(1)
    expect(final[0][1]).toBe(20)
    expect(str(final).sort()).toEqual([...values].sort())
    // Each coordinate saw every earlier one: the returned sets grow one value at a time.
    expect(results.map((r) => siblings(decodeSet(r)).length).sort((a, b) => a - b)).toEqual(values.map((_, i) => i + 1))
  })

  it('concurrent coordinates and stores on one key lose nothing', async () => {
    const slow = new Replica(new SlowStore(store), 'n1~aaaa')
    const foreign = await Promise.all(
      Array.from({ length: 10 }, async (_, i) => {
        const r = new Replica(await openStore(), `n${i + 2}~bbbb`)
        return r.coordinate(P, KEY, [], v(`s${i}`))
      }),
    )
    await Promise.all([
      ...Array.from({ length: 10 }, (_, i) => slow.coordinate(P, KEY, [], v(`c${i}`))),
      ...foreign.map((set) => slow.store(P, KEY, set)),
    ])
    const [stored] = await slow.read([[P, KEY]])
    const expected = [...Array.from({ length: 10 }, (_, i) => `c${i}`), ...Array.from({ length: 10 }, (_, i) => `s${i}`)]
    expect(str(decodeSet(stored!)).sort()).toEqual(expected.sort())
  })
})

describe('Replica.store', () => {
  it('is idempotent: the second store of the same set changes nothing and returns false', async () => {
    const source = new Replica(await openStore(), 'n2~bbbb')
    await source.coordinate(P, KEY, [], v('x'))
    const set = await source.coordinate(P, KEY, [], v('y'))

    const store = await openStore()
    const replica = new Replica(store, 'n1~aaaa')
    expect(await replica.store(P, KEY, set)).toBe(true)
    const [after1] = await replica.read([[P, KEY]])
    expect(Buffer.from(after1!).equals(Buffer.from(set))).toBe(true)
    expect(await replica.store(P, KEY, set)).toBe(false)
    const [after2] = await replica.read([[P, KEY]])
    expect(Buffer.from(after2!).equals(Buffer.from(after1!))).toBe(true)
    // A set the replica already supersedes changes nothing either.
    const older = encodeSet([['n2~bbbb', 1, [v('x')]]])
    expect(await replica.store(P, KEY, older)).toBe(false)
    const [after3] = await replica.read([[P, KEY]])
    expect(Buffer.from(after3!).equals(Buffer.from(after1!))).toBe(true)
  })

  it('syncs concurrent sets: both values survive, and both replicas converge to the same bytes', async () => {
    const a = new Replica(await openStore(), 'n1~aaaa')
    const b = new Replica(await openStore(), 'n2~bbbb')
    const setA = await a.coordinate(P, KEY, [], v('from a'))
    const setB = await b.coordinate(P, KEY, [], v('from b'))
    expect(await a.store(P, KEY, setB)).toBe(true)
    expect(await b.store(P, KEY, setA)).toBe(true)
    const [onA] = await a.read([[P, KEY]])
    const [onB] = await b.read([[P, KEY]])
    expect(str(decodeSet(onA!)).sort()).toEqual(['from a', 'from b'])
    expect(Buffer.from(onA!).equals(Buffer.from(onB!))).toBe(true)
    // Storing the merged set back is a no-op on both.
    expect(await a.store(P, KEY, onB!)).toBe(false)
    expect(await b.store(P, KEY, onA!)).toBe(false)
  })

  it('a newer set from another replica replaces what it supersedes', async () => {
    const a = new Replica(await openStore(), 'n1~aaaa')
    const b = new Replica(await openStore(), 'n2~bbbb')
    const first = await a.coordinate(P, KEY, [], v('old'))
    expect(await b.store(P, KEY, first)).toBe(true)
    const newer = await b.coordinate(P, KEY, join(decodeSet(first)), v('new'))
    expect(await a.store(P, KEY, newer)).toBe(true)
    const [onA] = await a.read([[P, KEY]])
    expect(str(decodeSet(onA!))).toEqual(['new'])
  })
})

describe('ContextMacs', () => {
  const secret = randomBytes(32)
  const keys = new ClusterKeys(secret)
  // The MACs expected, made apart (the tests count the calls on `keys`).
  const apart = new ClusterKeys(secret)
  const setOf = (value: string, actor = 'n1~aaaa', context: DvvSet = []) => encodeSet(update(join(context), context, actor, Buffer.from(value)))
  const direct = (key: Uint8Array, set: Uint8Array) => apart.proveContext(key, vectorBytes(join(decodeSet(set))))

  it('answers the MAC of the set join, and signs an unchanged set once', () => {
    const macs = new ContextMacs(keys)
    const made = vi.spyOn(keys, 'proveContext')
    try {
      const set = setOf('a')
      const first = macs.of(KEY, set)
      expect(Buffer.from(first)).toEqual(direct(KEY, set))
      made.mockClear()
      // The same bytes in another buffer (as each read of the store returns): no new HMAC.
      expect(Buffer.from(macs.of(KEY, Buffer.from(set)))).toEqual(Buffer.from(first))
      expect(made).not.toHaveBeenCalled()
      // A changed set, and another key with the same set, get their own MACs.
      const next = setOf('b', 'n2~bbbb', decodeSet(set))
      expect(Buffer.from(macs.of(KEY, next))).toEqual(direct(KEY, next))
      expect(Buffer.from(macs.of(Buffer.from('cart:43'), set))).toEqual(direct(Buffer.from('cart:43'), set))
      expect(made).toHaveBeenCalledTimes(2)
    } finally {
      made.mockRestore()
    }
  })

  it('keeps its own copy of the set: a caller reusing its buffer cannot make it answer a stale MAC', () => {
    const macs = new ContextMacs(keys)
    // Of one length, with other joins (the MAC signs the join).
    const a = setOf('a')
    const b = setOf('b', 'n2~bbbb')
    expect(a.byteLength).toBe(b.byteLength)
    expect(direct(KEY, a)).not.toEqual(direct(KEY, b))
    const buf = Buffer.from(a)
    macs.of(KEY, buf)
    b.copy(buf)
    expect(Buffer.from(macs.of(KEY, buf))).toEqual(direct(KEY, b))
  })

  it('is bounded by the bytes of the sets it keeps: the least recently used are signed again', () => {
    const set = setOf('x'.repeat(1000))
    const macs = new ContextMacs(keys, 4 * (set.byteLength + 100))
    const made = vi.spyOn(keys, 'proveContext')
    try {
      for (let i = 0; i < 10; i++) macs.of(Buffer.from(`k${i}`), set)
      expect(made).toHaveBeenCalledTimes(10)
      macs.of(Buffer.from('k9'), set)
      expect(made).toHaveBeenCalledTimes(10)
      macs.of(Buffer.from('k0'), set)
      expect(made).toHaveBeenCalledTimes(11)
    } finally {
      made.mockRestore()
    }
  })
})

describe('KeyLocks', () => {
  it('runs work on one key one at a time, and a failure does not block the next', async () => {
    const locks = new KeyLocks()
    const key = Buffer.from('k')
    let active = 0
    let maxActive = 0
    const order: number[] = []
    const job = (i: number, fail = false) => locks.run(Buffer.from(key), async () => {
      active++
      maxActive = Math.max(maxActive, active)
      await new Promise((r) => setTimeout(r, 1))
      order.push(i)
      active--
      if (fail) throw new Error(`job ${i} failed`)
      return i
    })
    const results = await Promise.allSettled([job(0), job(1, true), job(2), job(3)])
    expect(maxActive).toBe(1)
    expect(order).toEqual([0, 1, 2, 3])
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled'])
    // Different keys do not wait for each other.
    let release!: () => void
    const held = locks.run(Buffer.from('a'), () => new Promise<void>((r) => (release = r)))
    await expect(locks.run(Buffer.from('b'), async () => 'b')).resolves.toBe('b')
    release()
    await held
  })
})

describe('storage key layout', () => {
  const Q = 65536
  const ranges = Array.from({ length: Q }, (_, p) => partitionRange(p))
  const inside = (k: Uint8Array, r: { gte: Uint8Array; lt: Uint8Array }) => Buffer.compare(k, r.gte) >= 0 && Buffer.compare(k, r.lt) < 0
  /** Every partition whose range holds k (binary search on the lower bounds, then a check both sides). */
  const holders = (k: Uint8Array): number[] => {
    let lo = 0
    let hi = Q - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (Buffer.compare(ranges[mid].gte, k) <= 0) lo = mid
      else hi = mid - 1
    }
    return [lo - 1, lo, lo + 1].filter((p) => p >= 0 && p < Q && inside(k, ranges[p]))
  }

  it("dataKey is 'd', the partition as uint16 big-endian, then the key bytes", () => {
    expect(dataKey(0, Buffer.from('k')).toString('hex')).toBe('6400006b')
    expect(dataKey(0x1234, Uint8Array.from([0, 0xff])).toString('hex')).toBe('64123400ff')
    expect(dataKey(65535, new Uint8Array(0)).toString('hex')).toBe('64ffff')
    const view = Uint8Array.from([9, 1, 2, 9]).subarray(1, 3)
    expect(dataKey(1, view).toString('hex')).toBe('6400010102')
  })

  it('partition ranges are non-empty, ascending and contiguous over all 65536 partitions', () => {
    const bad: number[] = []
    for (let p = 0; p < Q; p++) {
      if (Buffer.compare(ranges[p].gte, ranges[p].lt) !== -1) bad.push(p)
      if (p > 0 && !ranges[p - 1].lt.equals(ranges[p].gte)) bad.push(p)
    }
    expect(bad).toEqual([])
    expect(ranges[0].gte.toString('hex')).toBe('640000')
  })

  it('every key of partition p sorts inside partitionRange(p) and inside no other, including p=0 and p=65535', () => {
    const keys = [new Uint8Array(0), Uint8Array.of(0), Uint8Array.of(0, 0), Uint8Array.of(0xff), Uint8Array.of(0xff, 0xff, 0xff), Buffer.alloc(1024, 0xff), Buffer.alloc(1024, 0), Buffer.from('user:1')]
    const partitions = [0, 1, 2, 255, 256, 4095, 0x7fff, 0x8000, 65533, 65534, 65535]
    for (const p of partitions) {
      for (const k of keys) {
        const dk = dataKey(p, k)
        expect(inside(dk, ranges[p]), `p=${p} key=${Buffer.from(k).toString('hex').slice(0, 16)}`).toBe(true)
        expect(holders(dk)).toEqual([p])
      }
    }
    // Brute force for the edges: no other range of all 65536 holds the extreme keys of p=0 and p=65535.
    for (const dk of [dataKey(0, new Uint8Array(0)), dataKey(0, Buffer.alloc(1024, 0xff)), dataKey(65535, new Uint8Array(0)), dataKey(65535, Buffer.alloc(1024, 0xff))]) {
      const all: number[] = []
      for (let p = 0; p < Q; p++) if (inside(dk, ranges[p])) all.push(p)
      expect(all).toHaveLength(1)
    }
  })

  it("keys outside the data keyspace (metadata, bytes around 'd') fall in no partition range", () => {
    for (const k of [Buffer.from('midentity'), Buffer.from('c\xff\xff'), Uint8Array.of(0x64), Uint8Array.of(0x64, 0), Uint8Array.of(0x65), Uint8Array.of(0x65, 0), Uint8Array.of(0x65, 0, 0)]) {
      expect(holders(k), Buffer.from(k).toString('hex')).toEqual([])
    }
  })
})
