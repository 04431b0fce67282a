// The Store conformance suite: what every storage backend must do for the node to be correct on it.
// A backend's test file calls storeConformance(name, makeStore) once; each test gets a fresh, opened
// store and its cleanup runs afterwards whether the test passed or not.
import { randomBytes } from 'node:crypto'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { dataKey, partitionRange } from '../src/replica.js'
import type { Range, Store } from '../src/storage/store.js'

export interface StoreFixture {
  /** A store that has not been opened yet; the suite opens it. */
  store: Store
  /** Close the store if it is open and remove whatever it left behind (files, directories). */
  cleanup(): Promise<void>
}

export interface ConformanceOptions {
  /** The backend keeps its data across close() and open() (LevelDB does; a fresh MemoryStore is not asked to). */
  persistent?: boolean
}

const b = (...bytes: number[]) => Uint8Array.from(bytes)
const hex = (x: Uint8Array | undefined) => (x === undefined ? undefined : Buffer.from(x.buffer, x.byteOffset, x.byteLength).toString('hex'))
const cmp = (x: Uint8Array, y: Uint8Array) => Buffer.compare(x, y)

async function collect(store: Store, range?: Range): Promise<[string, string][]> {
  const out: [string, string][] = []
  for await (const [k, v] of store.entries(range)) {
    expect(k).toBeInstanceOf(Uint8Array)
    expect(v).toBeInstanceOf(Uint8Array)
    out.push([hex(k)!, hex(v)!])
  }
  return out
}

/** Keys chosen to catch string-vs-byte ordering, sign errors, prefixes and embedded 0x00/0xff. */
const AWKWARD_KEYS: Uint8Array[] = [
  b(0x00),
  b(0x00, 0x00),
  b(0x00, 0xff),
  b(0x01),
  b(0x01, 0x00),
  b(0x7f),
  b(0x7f, 0xff, 0xff),
  b(0x80),
  b(0x80, 0x00),
  b(0xc3, 0xa9), // "é" in UTF-8: sorts after every ASCII key as bytes
  b(0xef, 0xbf, 0xbd),
  b(0xfe, 0xff),
  b(0xff),
  b(0xff, 0x00),
  b(0xff, 0xff),
  b(0xff, 0xff, 0xff, 0xff),
  Buffer.from('a'),
  Buffer.from('a\0b'),
  Buffer.from('ab'),
  Buffer.from('b'),
]

export function storeConformance(name: string, makeStore: () => Promise<StoreFixture>, options: ConformanceOptions = {}): void {
  describe(`Store conformance: ${name}`, () => {
    let fixture: StoreFixture | undefined
    let store: Store

    beforeEach(async () => {
      fixture = await makeStore()
      store = fixture.store
      await store.open()
    })

    afterEach(async () => {
      const f = fixture
      fixture = undefined
      await f?.cleanup()
    })

    it('get and getMany of a missing key give undefined', async () => {
      expect(await store.get(b(1, 2, 3))).toBeUndefined()
      expect(await store.getMany([b(1), b(2)])).toEqual([undefined, undefined])
      await store.put(b(1, 2), b(9))
      // A prefix or an extension of a stored key is a different key.
      expect(await store.get(b(1))).toBeUndefined()
      expect(await store.get(b(1, 2, 0))).toBeUndefined()
    })

    it('round-trips arbitrary bytes: empty value, 0x00/0xff in keys, every byte value, large values', async () => {
      const everyByte = Uint8Array.from({ length: 256 }, (_, i) => i)
      const rows: [Uint8Array, Uint8Array][] = [
        [b(0x00), b()],
        [b(0xff), b(0x00)],
        [b(0x00, 0xff, 0x00), everyByte],
        [b(0xff, 0x00, 0xff), b(0xff, 0xff, 0xff)],
        [everyByte, randomBytes(100)],
        [randomBytes(1024), randomBytes(1)],
        [Buffer.from('plain'), randomBytes(1024 * 1024 + 7)],
        [dataKey(65535, b(0xff, 0xff)), b(0x00, 0x00)],
      ]
      for (const [k, v] of rows) await store.put(k, v)
      for (const [k, v] of rows) {
        const got = await store.get(k)
        expect(got, `key ${hex(k)?.slice(0, 40)}`).toBeInstanceOf(Uint8Array)
        expect(got!.byteLength).toBe(v.byteLength)
        expect(hex(got)).toBe(hex(v))
      }
      // The empty value is a stored value, not a missing one.
      const empty = await store.get(b(0x00))
      expect(empty).toBeInstanceOf(Uint8Array)
      expect(empty!.byteLength).toBe(0)
      // A key that is a view into a larger buffer is just its bytes.
      const big = Uint8Array.from([7, 7, 0xaa, 0xbb, 7])
      await store.put(big.subarray(2, 4), big.subarray(0, 2))
      expect(hex(await store.get(b(0xaa, 0xbb)))).toBe('0707')
    })

    it('overwrites a key with a longer and then a shorter value', async () => {
      const k = b(0x64, 0x00, 0x01, 0x00)
      await store.put(k, b(1))
      await store.put(k, b(2, 2, 2, 2, 2))
      expect(hex(await store.get(k))).toBe('0202020202')
      await store.put(k, b(3))
      expect(hex(await store.get(k))).toBe('03')
      await store.put(k, b())
      expect(hex(await store.get(k))).toBe('')
      expect(await collect(store)).toEqual([[hex(k), '']])
    })

    it('del removes a key from get, getMany and entries, and deleting a missing key is fine', async () => {
      await store.put(b(1), b(10))
      await store.put(b(2), b(20))
      await store.del(b(1))
      expect(await store.get(b(1))).toBeUndefined()
      expect((await store.getMany([b(1), b(2)])).map(hex)).toEqual([undefined, '14'])
      expect(await collect(store)).toEqual([['02', '14']])
      await store.del(b(1))
      await store.del(b(3))
      expect(hex(await store.get(b(2)))).toBe('14')
      // A deleted key can be written again.
      await store.put(b(1), b(11))
      expect(hex(await store.get(b(1)))).toBe('0b')
    })

    it('getMany answers in request order, with undefined for missing keys and repeats allowed', async () => {
      const keys = [b(3), b(1), b(2), b(0xff)]
      for (const k of keys) await store.put(k, b(k[0], k[0]))
      const got = await store.getMany([b(2), b(9), b(0xff), b(1), b(0), b(2), b(3)])
      expect(got.map(hex)).toEqual(['0202', undefined, 'ffff', '0101', undefined, '0202', '0303'])
      expect(await store.getMany([])).toEqual([])
    })

    it('entries() yields every entry in unsigned byte order', async () => {
      const keys = [...AWKWARD_KEYS].reverse()
      // Insert in a scrambled order so insertion order cannot pass for key order.
      for (let i = 0; i < keys.length; i++) {
        const k = keys[(i * 7) % keys.length]
        await store.put(k, b(i))
      }
      const got = await collect(store)
      const expected = [...AWKWARD_KEYS].sort(cmp).map((k) => hex(k)!)
      expect(got.map(([k]) => k)).toEqual(expected)
      expect(new Set(expected).size).toBe(AWKWARD_KEYS.length)
    })

    it('entries() respects gte (inclusive) and lt (exclusive) bounds', async () => {
      for (const [i, k] of AWKWARD_KEYS.entries()) await store.put(k, b(i))
      const sorted = [...AWKWARD_KEYS].sort(cmp)
      const inRange = (r: Range) => sorted.filter((k) => (!r.gte || cmp(k, r.gte) >= 0) && (!r.lt || cmp(k, r.lt) < 0)).map((k) => hex(k)!)
      const ranges: Range[] = [
        {},
        { gte: b(0x01) },
        { lt: b(0x80) },
        { gte: b(0x00, 0xff), lt: b(0xff) },
        { gte: b(0x01), lt: b(0x01, 0x00) }, // exactly one key: the prefix, not its extension
        { gte: b(0x7f, 0xff), lt: b(0x80, 0x00) }, // bounds that are not stored keys
        { gte: b(0xff), lt: b(0xff, 0xff, 0xff, 0xff, 0x00) },
        { gte: b(0x80), lt: b(0x80) }, // empty
        { gte: b(0xff), lt: b(0x00) }, // inverted: empty
        { gte: Buffer.from('a'), lt: Buffer.from('b') }, // a prefix range
      ]
      for (const r of ranges) {
        const got = (await collect(store, r)).map(([k]) => k)
        expect(got, `range gte=${hex(r.gte)} lt=${hex(r.lt)}`).toEqual(inRange(r))
      }
      // Spot-check the cases above actually bite.
      expect(inRange({ gte: b(0x01), lt: b(0x01, 0x00) })).toEqual(['01'])
      expect(inRange({ gte: Buffer.from('a'), lt: Buffer.from('b') })).toEqual(['61', '610062', '6162'])
    })

    it("entries() over the node's partitionRange yields exactly that partition's data, in key order", async () => {
      const partitions = [0, 1, 255, 256, 0x7fff, 0x8000, 65534, 65535]
      const userKeys = [b(0x00), b(0xff), b(0xff, 0xff), b(0x00, 0x00, 0x00), Buffer.from('user:1'), Buffer.from('user:10'), Buffer.from('user:2')]
      const expected = new Map<number, string[]>()
      for (const p of partitions) {
        for (const k of userKeys) await store.put(dataKey(p, k), Buffer.from(`${p}`))
        expected.set(p, userKeys.map((k) => dataKey(p, k)).sort(cmp).map((k) => hex(k)!))
      }
      // Other keyspaces the node keeps next to the data: metadata ('m…') and anything sorting just around 'd'.
      for (const k of [Buffer.from('midentity'), b(0x63, 0xff, 0xff, 0xff), b(0x64), b(0x64, 0x00), b(0x65), b(0x65, 0x00)]) await store.put(k, b(1))
      for (const p of partitions) {
        const got = await collect(store, partitionRange(p))
        expect(got.map(([k]) => k), `partition ${p}`).toEqual(expected.get(p))
        expect(got.every(([, v]) => Buffer.from(v, 'hex').toString() === `${p}`)).toBe(true)
      }
      // A partition with nothing in it is empty even when both neighbours hold data.
      expect(await collect(store, partitionRange(2))).toEqual([])
      expect(await collect(store, partitionRange(65533))).toEqual([])
    })

    it('entries() crosses internal batch boundaries without losing or repeating entries', async () => {
      const count = 2500
      const keys = Array.from({ length: count }, (_, i) => dataKey(3, Buffer.from(String(i).padStart(5, '0'))))
      await Promise.all(keys.map((k, i) => store.put(k, Buffer.from(String(i)))))
      await store.put(dataKey(4, b(0)), b(0))
      const got = await collect(store, partitionRange(3))
      expect(got.length).toBe(count)
      expect(got.map(([k]) => k)).toEqual(keys.map((k) => hex(k)!))
      // Breaking out of a scan early is allowed and leaves the store usable.
      let seen = 0
      for await (const _ of store.entries()) if (++seen === 10) break
      expect(seen).toBe(10)
      expect(hex(await store.get(keys[0]))).toBe(Buffer.from('0').toString('hex'))
    })

    it('pages() yields the same entries as entries(), in order, in pages of at most the size asked', async () => {
      const count = 2345
      const keys = Array.from({ length: count }, (_, i) => dataKey(7, Buffer.from(String(i).padStart(5, '0'))))
      await Promise.all(keys.map((k, i) => store.put(k, Buffer.from(String(i)))))
      await store.put(dataKey(8, b(0)), b(0))
      const sizes: number[] = []
      const paged: [string, string][] = []
      for await (const page of store.pages(partitionRange(7), 500)) {
        sizes.push(page.length)
        for (const [k, v] of page) paged.push([hex(k)!, hex(v)!])
      }
      expect(sizes.every((n) => n >= 1 && n <= 500)).toBe(true)
      expect(sizes.reduce((a, n) => a + n, 0)).toBe(count)
      expect(paged).toEqual(await collect(store, partitionRange(7)))
      // An empty range has no page at all, not an empty one.
      let pages = 0
      for await (const _ of store.pages(partitionRange(9))) pages++
      expect(pages).toBe(0)
    })

    it('does not alias caller buffers: mutating what was put or what was returned changes nothing stored', async () => {
      const key = Uint8Array.from([0x10, 0x20, 0x30])
      const value = Uint8Array.from([1, 2, 3, 4])
      await store.put(key, value)
      key[0] = 0x99
      value.fill(0xee)
      expect(await store.get(key)).toBeUndefined()
      expect(hex(await store.get(b(0x10, 0x20, 0x30)))).toBe('01020304')

      const got = await store.get(b(0x10, 0x20, 0x30))
      got!.fill(0x55)
      expect(hex(await store.get(b(0x10, 0x20, 0x30)))).toBe('01020304')

      const [many] = await store.getMany([b(0x10, 0x20, 0x30)])
      many!.fill(0x66)
      expect(hex(await store.get(b(0x10, 0x20, 0x30)))).toBe('01020304')

      for await (const [k, v] of store.entries()) {
        k.fill(0x77)
        v.fill(0x77)
      }
      expect(await collect(store)).toEqual([['102030', '01020304']])
    })

    it('concurrent puts to different keys all land', async () => {
      await Promise.all(Array.from({ length: 200 }, (_, i) => store.put(b(i >> 8, i & 0xff), b(i & 0xff))))
      const got = await store.getMany(Array.from({ length: 200 }, (_, i) => b(i >> 8, i & 0xff)))
      expect(got.map((v) => v?.[0])).toEqual(Array.from({ length: 200 }, (_, i) => i & 0xff))
    })

    it('rejects operations once closed', async () => {
      await store.put(b(1), b(1))
      await store.close()
      await expect(store.get(b(1))).rejects.toThrow()
      await expect(store.put(b(2), b(2))).rejects.toThrow()
    })

    it.runIf(options.persistent)('keeps puts and deletes across close() and open()', async () => {
      const rows = AWKWARD_KEYS.map((k, i) => [k, randomBytes(i * 37)] as const)
      for (const [k, v] of rows) await store.put(k, v)
      await store.put(b(0x42), b(1))
      await store.put(b(0x42), b(2)) // overwritten
      await store.put(b(0x43), b(3))
      await store.del(b(0x43)) // deleted
      await store.close()
      await store.open()
      for (const [k, v] of rows) expect(hex(await store.get(k))).toBe(hex(v))
      expect(hex(await store.get(b(0x42)))).toBe('02')
      expect(await store.get(b(0x43))).toBeUndefined()
      const all = await collect(store)
      expect(all.map(([k]) => k)).toEqual([...AWKWARD_KEYS, b(0x42)].sort(cmp).map((k) => hex(k)!))
      // And it is still writable after reopening.
      await store.put(b(0x44), b(4))
      expect(hex(await store.get(b(0x44)))).toBe('04')
    })
  })
}
