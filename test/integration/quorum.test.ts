// The SDK against a real 3-node cluster (N=3): read-your-write, siblings from a shared stale context,
// collapse with the joined context, merge written back, encodings, deletes, and the SDK's errors.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  connect,
  BadContextError,
  ClientClosedError,
  InvalidArgumentError,
  KeyTooLargeError,
  NoSeedReachableError,
  AbortError,
  MergeError,
  type Client,
} from '@zerohop/client'
import { Cluster, freePorts, NO_BACKGROUND_REPAIR } from '../harness/cluster.js'

const text = (b: Uint8Array | string | undefined) => (b === undefined ? undefined : Buffer.from(b as Uint8Array).toString())

let cluster: Cluster
let db: Client

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, args: NO_BACKGROUND_REPAIR })
  db = await connect({ seeds: cluster.seeds })
})

afterAll(async () => {
  await db?.close()
  await cluster?.close()
})

describe('reads and writes through quorums', () => {
  it('reads its own write', async () => {
    const { context } = await db.put('ryw', 'hello')
    expect(typeof context).toBe('string')
    const res = await db.get('ryw')
    expect(res.found).toBe(true)
    expect(text(res.value)).toBe('hello')
    expect(res.siblings.map(text)).toEqual(['hello'])
  })

  it('a missing key is not found, with a usable context', async () => {
    const res = await db.get('never-written')
    expect(res.found).toBe(false)
    expect(res.value).toBeUndefined()
    expect(res.siblings).toEqual([])
    await db.put('never-written', 'now written', { context: res.context })
    expect(text((await db.get('never-written')).value)).toBe('now written')
  })

  it('takes bytes keys and values, and a write with the read context replaces the value', async () => {
    const key = new Uint8Array([0, 1, 2, 255])
    const first = await db.put(key, new Uint8Array([9, 9]))
    await db.put(key, new Uint8Array([7]), { context: first.context })
    const res = await db.get(key)
    expect(res.siblings).toHaveLength(1)
    expect([...(res.value as Uint8Array)]).toEqual([7])
  })

  it('two puts from the same context give two siblings; a put with the joined context collapses them', async () => {
    await db.put('cart', 'base')
    const read = await db.get('cart')
    await db.put('cart', 'A', { context: read.context })
    await db.put('cart', 'B', { context: read.context })
    const conflicted = await db.get('cart', { r: 3 })
    expect(conflicted.value).toBeUndefined()
    expect(conflicted.siblings.map(text).sort()).toEqual(['A', 'B'])
    await db.put('cart', 'A+B', { context: conflicted.context })
    const resolved = await db.get('cart', { r: 3 })
    expect(resolved.siblings.map(text)).toEqual(['A+B'])
  })

  it('a put without a context never overwrites blindly: it becomes a sibling', async () => {
    await db.put('blind', 'one')
    const res = await db.put('blind', 'two')
    expect(res.conflict).toBe(true)
    expect(res.siblings.map(text).sort()).toEqual(['one', 'two'])
    expect((await db.get('blind')).siblings.map(text).sort()).toEqual(['one', 'two'])
  })

  it('calls merge on siblings, writes the result back, and the next read needs no merge', async () => {
    const calls: string[][] = []
    const carts = db.collection<string[]>({
      encoding: 'json',
      merge: (siblings) => {
        calls.push(siblings.flat().sort())
        return [...new Set(siblings.flat())].sort()
      },
    })
    const start = await carts.get('merge-cart')
    await carts.put('merge-cart', ['apple'], { context: start.context })
    await carts.put('merge-cart', ['pear'], { context: start.context })
    const merged = await carts.get('merge-cart')
    expect(calls).toEqual([['apple', 'pear']])
    expect(merged.merged).toBe(true)
    expect(merged.value).toEqual(['apple', 'pear'])
    expect(merged.siblings).toHaveLength(2)
    const again = await carts.get('merge-cart', { r: 3 })
    expect(calls).toHaveLength(1)
    expect(again.merged).toBe(false)
    expect(again.siblings).toEqual([['apple', 'pear']])
    // The context of the merged read descends the resolution: writing with it leaves one value.
    await carts.put('merge-cart', ['apple', 'pear', 'plum'], { context: merged.context })
    expect((await carts.get('merge-cart', { r: 3 })).siblings).toEqual([['apple', 'pear', 'plum']])
  })

  it('a write that lands while merge runs is never lost by the next write (merged context stays honest)', async () => {
    const other = await connect({ seeds: cluster.seeds, encoding: 'json' })
    try {
      const carts = db.collection<string[]>({
        encoding: 'json',
        merge: async (siblings) => {
          // Another client writes, acknowledged by all three replicas, while this one merges.
          await other.put('merge-race', ['concurrent'], { w: 3 })
          return [...new Set(siblings.flat())].sort()
        },
      })
      const start = await carts.get('merge-race')
      await carts.put('merge-race', ['x'], { context: start.context })
      await carts.put('merge-race', ['y'], { context: start.context })
      const merged = await carts.get('merge-race')
      expect(merged.value).toEqual(['x', 'y'])
      await carts.put('merge-race', ['x', 'y', 'z'], { context: merged.context })
      const all = await db.collection<string[]>({ encoding: 'json' }).get('merge-race', { r: 3 })
      expect(all.siblings).toContainEqual(['concurrent'])
      expect(all.siblings).toContainEqual(['x', 'y', 'z'])
    } finally {
      await other.close()
    }
  })

  it('a merge function that throws rejects with MergeError', async () => {
    const broken = db.collection<number>({ merge: () => { throw new Error('boom') } })
    await broken.put('bad-merge', 1)
    await broken.put('bad-merge', 2)
    await expect(broken.get('bad-merge')).rejects.toMatchObject({ code: 'ZH_MERGE_FAILED' })
    await expect(broken.get('bad-merge')).rejects.toBeInstanceOf(MergeError)
  })

  it('connect({ encoding: "json" }) stores objects', async () => {
    const jdb = await connect({ seeds: cluster.seeds, encoding: 'json' })
    try {
      await jdb.put('user:1', { name: 'Ada', langs: ['en'] })
      expect((await jdb.get('user:1')).value).toEqual({ name: 'Ada', langs: ['en'] })
    } finally {
      await jdb.close()
    }
  })

  it('delete without a context reads first and removes the value; with a context it removes what was read', async () => {
    await db.put('doomed', 'x')
    await db.delete('doomed')
    const gone = await db.get('doomed', { r: 3 })
    expect(gone.found).toBe(false)
    expect(gone.siblings).toEqual([])
    await db.put('doomed2', 'y')
    const read = await db.get('doomed2')
    await db.delete('doomed2', { context: read.context })
    expect((await db.get('doomed2')).found).toBe(false)
  })

  it('a delete that did not see a concurrent write leaves that write visible', async () => {
    await db.put('race', 'old')
    const read = await db.get('race')
    await db.put('race', 'concurrent', { context: read.context })
    await db.delete('race', { context: read.context })
    expect((await db.get('race', { r: 3 })).siblings.map(text)).toEqual(['concurrent'])
  })

  it('explain shows the preference list and every replica with equal digests after a W=3 write', async () => {
    await db.put('explained', 'v', { w: 3 })
    const info = await db.explain('explained')
    expect(info.partition).toBe(db.ring.partitionOf(Buffer.from('explained')))
    expect(info.preferenceList.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3'])
    expect(info.replicas).toHaveLength(3)
    for (const r of info.replicas) {
      expect(r.found).toBe(true)
      expect(r.siblings.map(text)).toEqual(['v'])
    }
    expect(new Set(info.replicas.map((r) => r.digest)).size).toBe(1)
    // The SDK's own view (zero-hop routing): primaries only in a 3-node cluster, all agreeing, no hints.
    expect(info.preferenceList.every((m) => m.role === 'primary' && m.up)).toBe(true)
    expect(info.agree).toBe(true)
    expect(info.hints).toEqual([])
    expect(info.unasked).toEqual([])
    expect(info.moving).toBeNull()
    expect(info.epoch).toBe(db.view.epoch)
  })
})

describe('errors', () => {
  it('rejects R or W outside 1..N with InvalidArgumentError', async () => {
    await expect(db.get('k', { r: 4 })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(db.get('k', { r: 0 })).rejects.toMatchObject({ code: 'ZH_INVALID_ARGUMENT' })
    await expect(db.put('k', 'v', { w: 4 })).rejects.toMatchObject({ code: 'ZH_INVALID_ARGUMENT', message: expect.stringMatching(/w must be an integer from 1 to N=3/) })
    await expect(connect({ seeds: cluster.seeds, r: 5 })).rejects.toMatchObject({ code: 'ZH_INVALID_ARGUMENT' })
  })

  it('validates options up front with messages that name the fix', async () => {
    await expect(connect({ seeds: [] })).rejects.toThrow(/seeds must be a non-empty array/)
    await expect(connect({ seeds: ['localhost:7001'] })).rejects.toThrow(/http:\/\/host:port|must use http/)
    await expect(connect({ seeds: cluster.seeds, timeoutMs: -1 })).rejects.toThrow(/timeoutMs/)
    await expect(connect({ seeds: cluster.seeds, merge: 'x' as never })).rejects.toThrow(/merge must be a function/)
  })

  it('rejects a damaged context with BadContextError', async () => {
    await expect(db.put('k', 'v', { context: 'not a context!' })).rejects.toBeInstanceOf(BadContextError)
    await expect(db.put('k', 'v', { context: 'AAAA' })).rejects.toMatchObject({ code: 'ZH_BAD_CONTEXT' })
  })

  it('rejects keys over the cluster limit before sending', async () => {
    await expect(db.put('x'.repeat(1025), 'v')).rejects.toBeInstanceOf(KeyTooLargeError)
    await expect(db.get('')).rejects.toMatchObject({ code: 'ZH_INVALID_ARGUMENT' })
    await expect(db.put(new Uint8Array(10), new Uint8Array(1024 * 1024 + 1))).rejects.toMatchObject({ code: 'ZH_VALUE_TOO_LARGE' })
  })

  it('an already-aborted signal rejects with AbortError', async () => {
    const ac = new AbortController()
    ac.abort()
    await expect(db.get('k', { signal: ac.signal })).rejects.toBeInstanceOf(AbortError)
    await expect(db.put('k', 'v', { signal: ac.signal })).rejects.toMatchObject({ code: 'ZH_ABORTED' })
  })

  it('connect fails with NoSeedReachableError naming each seed when none answers', async () => {
    const [dead] = await freePorts(1)
    const err = await connect({ seeds: [`http://127.0.0.1:${dead}`], connectTimeoutMs: 300 }).catch((e) => e)
    expect(err).toBeInstanceOf(NoSeedReachableError)
    expect(err.code).toBe('ZH_NO_SEED_REACHABLE')
    expect(err.message).toContain(`127.0.0.1:${dead}`)
  })

  it('connect skips a dead seed and uses a live one', async () => {
    const [dead] = await freePorts(1)
    const c = await connect({ seeds: [`http://127.0.0.1:${dead}`, cluster.seeds[1]] })
    try {
      expect(c.ring.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3'])
    } finally {
      await c.close()
    }
  })

  it('a closed client rejects with ClientClosedError', async () => {
    const c = await connect({ seeds: cluster.seeds })
    await c.close()
    await expect(c.get('k')).rejects.toBeInstanceOf(ClientClosedError)
  })
})
