// Tests for the Merkle tree: order independence, the descent to a differing leaf, add-then-remove,
// O(1) incremental updates (counted hash calls), a leaf's keys spread evenly, leaf placement independent of the ring's partition
// bits, and option validation.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../src/errors.js'
import { MerkleTree, differingLeaves, HASH_BYTES, resolveMerkleOptions } from '../src/merkle.js'
import { md5 } from '../src/ring.js'

const key = (s: string) => Buffer.from(s)

/** Distinct keys, each with one or two versions of its stored set bytes. */
const arbItems = fc.uniqueArray(
  fc.record({ key: fc.uint8Array({ minLength: 1, maxLength: 12 }), v1: fc.uint8Array({ maxLength: 20 }), v2: fc.uint8Array({ maxLength: 20 }) }),
  { minLength: 0, maxLength: 60, selector: (x) => Buffer.from(x.key).toString('hex') },
)

/** A tree whose hash counts its calls. */
function counted(options: { fanout?: number; depth?: number } = {}) {
  const calls = { n: 0 }
  const tree = new MerkleTree({
    ...options,
    hash: (b) => {
      calls.n++
      return md5(b)
    },
  })
  return { tree, calls }
}

describe('MerkleTree', () => {
  it('has fanout^depth leaves and the documented defaults', () => {
    const t = new MerkleTree()
    expect([t.fanout, t.depth, t.leaves]).toEqual([16, 3, 4096])
    expect(t.width(0)).toBe(1)
    expect(t.width(2)).toBe(256)
    expect(t.children(1, 2)).toEqual(Array.from({ length: 16 }, (_, c) => 32 + c))
    expect(t.root()).toHaveLength(HASH_BYTES)
  })

  it('gives the same root for the same keys and sets, in any insertion order and through any overwrites', () => {
    fc.assert(
      fc.property(
        arbItems.chain((items) => fc.tuple(fc.constant(items), fc.shuffledSubarray(items, { minLength: items.length, maxLength: items.length }))),
        fc.constantFrom([2, 4], [4, 2], [16, 2], [16, 3]),
        ([items, shuffled], [fanout, depth]) => {
          const a = new MerkleTree({ fanout, depth })
          const b = new MerkleTree({ fanout, depth })
          for (const x of items) a.update(x.key, undefined, x.v2)
          // b goes through v1 first, reads its root halfway (inner hashes cached, then dirtied again).
          for (const x of shuffled) b.update(x.key, undefined, x.v1)
          b.root()
          for (const x of shuffled) b.update(x.key, x.v1, x.v2)
          expect(b.root().equals(a.root())).toBe(true)
          for (let l = 0; l <= a.depth; l++) {
            const all = Array.from({ length: a.width(l) }, (_, i) => i)
            expect(Buffer.concat(b.level(l, all)).equals(Buffer.concat(a.level(l, all)))).toBe(true)
          }
        },
      ),
      { numRuns: 200 },
    )
  })

  it('tells apart trees that differ in one key, and the descent finds exactly its leaf', async () => {
    await fc.assert(
      fc.asyncProperty(arbItems, fc.nat(), fc.uint8Array({ minLength: 1, maxLength: 20 }), async (items, pick, other) => {
        const a = new MerkleTree()
        const b = new MerkleTree()
        for (const x of items) {
          a.update(x.key, undefined, x.v1)
          b.update(x.key, undefined, x.v1)
        }
        expect(await differingLeaves(a, (l, ix) => b.level(l, ix))).toEqual([])
        // One key changed on b, or (with no items) one key that only b has.
        const target = items.length > 0 ? items[pick % items.length] : { key: Uint8Array.from([1, 2, 3]), v1: undefined }
        if (target.v1 && Buffer.from(target.v1).equals(Buffer.from(other))) other = Uint8Array.from([...other, 0])
        b.update(target.key, target.v1, other)
        expect(a.root().equals(b.root())).toBe(false)
        const asked: number[] = []
        const leaves = await differingLeaves(a, (l, ix) => {
          asked.push(ix.length)
          return b.level(l, ix)
        })
        expect(leaves).toEqual([a.leafOf(target.key)])
        // Only the root, then the children of one differing node per level.
        expect(asked).toEqual([1, 16, 16, 16])
      }),
      { numRuns: 100 },
    )
  })

  it('a key whose set differs only in its stored bytes changes the root; a different key with the same set does too', () => {
    const a = new MerkleTree()
    a.update(key('k'), undefined, key('set-1'))
    const b = new MerkleTree()
    b.update(key('k'), undefined, key('set-2'))
    const c = new MerkleTree()
    c.update(key('j'), undefined, key('set-1'))
    expect(a.root().equals(b.root())).toBe(false)
    expect(a.root().equals(c.root())).toBe(false)
  })

  it('is back to the empty root after every key added is removed', () => {
    fc.assert(
      fc.property(arbItems, (items) => {
        const empty = new MerkleTree({ fanout: 4, depth: 3 }).root()
        const t = new MerkleTree({ fanout: 4, depth: 3 })
        for (const x of items) t.update(x.key, undefined, x.v1)
        t.root()
        for (const x of items) t.update(x.key, x.v1, undefined)
        expect(t.root().equals(empty)).toBe(true)
      }),
    )
  })

  it('clear() empties the tree', () => {
    const t = new MerkleTree()
    const empty = t.root()
    t.update(key('a'), undefined, key('x'))
    expect(t.root().equals(empty)).toBe(false)
    t.clear()
    expect(t.root().equals(empty)).toBe(true)
  })

  it('updates in O(1): a write costs a fixed number of hashes, and reading the root rehashes only its path', () => {
    const { tree, calls } = counted()
    for (let i = 0; i < 5000; i++) tree.update(key(`k${i}`), undefined, key(`v${i}`))
    tree.root()
    calls.n = 0
    // The digests of the key with its set before and after, whatever the tree holds (the leaf takes
    // them by XOR, and the key's leaf is not a hash of the tree's).
    tree.update(key('k42'), key('v42'), key('v42-new'))
    expect(calls.n).toBe(2)
    calls.n = 0
    tree.root()
    // One rehash per inner level on the leaf's path (depth 3), not a recompute of the 273 inner nodes.
    expect(calls.n).toBe(3)
    calls.n = 0
    tree.root()
    expect(calls.n).toBe(0)
    // Given the leaf and the digests, a write costs no hash at all.
    const leaf = tree.leafOf(key('k7'))
    tree.updateDigests(leaf, tree.digest(key('k7'), key('v7')), tree.digest(key('k7'), key('v7-new')))
    expect(calls.n).toBe(2)
    calls.n = 0
    tree.updateDigests(leaf, md5('v7'), md5('v7-new'))
    expect(calls.n).toBe(0)
    // An unchanged set costs nothing, not even a rehash of the path.
    tree.root()
    calls.n = 0
    tree.updateDigests(leaf, md5('v7-new'), md5('v7-new'))
    tree.root()
    expect(calls.n).toBe(0)
  })

  it('a new tree costs one hash per level to build, not one per node', () => {
    const { calls } = counted({ fanout: 16, depth: 4 })
    // The probe of the hash's width, then one per inner level.
    expect(calls.n).toBe(1 + 4)
  })

  it('spreads the keys of one ring partition over the leaves (leaf bits are not the partition bits)', () => {
    const t = new MerkleTree()
    const leaves = new Set<number>()
    let kept = 0
    // Keys of partition 5 of a 16-partition ring: the top 4 bits of MD5(key) are all 0101.
    for (let i = 0; kept < 2000; i++) {
      const k = key(`user:${i}`)
      if (md5(k).readUInt32BE(0) >>> 28 !== 5) continue
      kept++
      leaves.add(t.leafOf(k))
    }
    // ~1590 expected at random; top-bit leaves would give at most 4096 / 16 = 256.
    expect(leaves.size).toBeGreaterThan(1400)
  })

  it('validates its options with messages that name the fix', () => {
    expect(() => new MerkleTree({ fanout: 10 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ fanout: 10 })).toThrow(/power of two from 2 to 256/)
    expect(() => new MerkleTree({ fanout: 1 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ fanout: 512 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ depth: 0 })).toThrow(/depth must be an integer from 1 to 5 with fanout 16/)
    expect(() => new MerkleTree({ depth: 6 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ depth: 1.5 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ fanout: 2, depth: 20 })).not.toThrow()
    expect(() => new MerkleTree({ fanout: 2, depth: 21 })).toThrow(InvalidArgumentError)
    expect(() => new MerkleTree({ hash: () => Buffer.alloc(20) })).toThrow(/16 bytes/)
    expect(resolveMerkleOptions({})).toMatchObject({ fanout: 16, depth: 3 })
    const t = new MerkleTree()
    expect(() => t.level(4, [0])).toThrow(/from 0 \(the root\) to 3/)
    expect(() => t.level(1, [16])).toThrow(/nodes 0\.\.15/)
    expect(() => t.children(3, 0)).toThrow(/no children/)
  })

  it('differingLeaves refuses an answer of the wrong shape', async () => {
    const t = new MerkleTree()
    await expect(differingLeaves(t, () => [])).rejects.toThrow(/0 hashes for 1 nodes/)
    await expect(differingLeaves(t, () => [Buffer.alloc(3)])).rejects.toThrow(/not 16 bytes/)
  })
})
