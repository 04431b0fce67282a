// The scan of a node's data at start-up (scan.ts): one pass shared by every part that asks in the same
// turn (anti-entropy's trees and the reaper's tombstones are built from one read of the store), a
// pass of its own for a later one, and a failing store failing every visitor of its pass.
import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { encodeSet } from '@zerohop/core'
import { AntiEntropy } from '../src/anti-entropy.js'
import { Actors, Replica, dataKey } from '../src/replica.js'
import { Reaper } from '../src/reaper.js'
import { DataScan } from '../src/scan.js'
import { MemoryStore, type Range, type Store } from '../src/storage/store.js'
import { VirtualClock } from '../../test/sim/scheduler.js'
import { replicaClientOf } from './replica-client-of.js'

/** A MemoryStore that counts the scans made of it (and can be told to fail them). */
class CountingStore extends MemoryStore {
  passes = 0
  fail = false
  override pages(range?: Range, size?: number): AsyncIterable<[Uint8Array, Uint8Array][]> {
    this.passes++
    if (this.fail) throw new Error('disk on fire')
    return super.pages(range, size)
  }
}

async function filled(n: number): Promise<CountingStore> {
  const store = new CountingStore()
  await store.open()
  for (let i = 0; i < n; i++) await store.put(dataKey(i % 7, Buffer.from(`k${i}`)), encodeSet([['a~1', 1, [i % 10 === 0 ? null : Buffer.from(`v${i}`)]]]))
  // Not data: never visited.
  await store.put(Buffer.from('hint'), Buffer.from('x'))
  return store
}

const unreachable = replicaClientOf(async () => ({ status: 500, body: Buffer.alloc(0) }))

describe('DataScan', () => {
  it('visits every data key once, with its partition and stored set, in key order', async () => {
    const store = await filled(2500)
    const seen: string[] = []
    await new DataScan(store, 100).visit((p, k, set) => seen.push(`${p}/${Buffer.from(k).toString()}/${set.byteLength > 0}`))
    expect(seen).toHaveLength(2500)
    expect(new Set(seen).size).toBe(2500)
    expect(seen.every((s) => s.endsWith('/true'))).toBe(true)
    expect(seen.filter((s) => s.startsWith('3/'))).toHaveLength(357)
    expect(store.passes).toBe(1)
  })

  it('one pass for the visitors that ask in the same turn; a later one gets a pass of its own', async () => {
    const store = await filled(300)
    const scan = new DataScan(store)
    let a = 0
    let b = 0
    await Promise.all([scan.visit(() => a++), scan.visit(() => b++)])
    expect([a, b, store.passes]).toEqual([300, 300, 1])
    let c = 0
    await scan.visit(() => c++)
    expect([c, store.passes]).toEqual([300, 2])
  })

  it('a store that fails fails every visitor of the pass', async () => {
    const store = await filled(10)
    store.fail = true
    const scan = new DataScan(store)
    const both = [scan.visit(() => undefined), scan.visit(() => undefined)]
    for (const p of both) await expect(p).rejects.toThrow(/disk on fire/)
  })

  it("a node's anti-entropy and reaper, given one scan, build their state from one pass", async () => {
    const store = await filled(500)
    const scan = new DataScan(store)
    const clock = new VirtualClock(1_000_000)
    const log = pino({ level: 'silent' })
    const replica = new Replica(store, new Actors('n1~1'))
    const ae = new AntiEntropy({ store, scan, clock, storeSet: async () => false, replicaClient: unreachable, partitions: () => [], peers: () => [] })
    const reaper = new Reaper({ store, scan, replica, clock, log, graceMs: 1000, intervalMs: 1000, plan: () => undefined, replicaClient: unreachable })
    await Promise.all([ae.build(), reaper.start()])
    await reaper.stop()
    expect(store.passes).toBe(1)
    expect(ae.ready && reaper.scanned).toBe(true)
    expect(reaper.count).toBe(50)
    expect(Array.from({ length: 7 }, (_, p) => ae.keyCount(p)).reduce((x, y) => x + y, 0)).toBe(500)
    // The same trees as a scan of its own builds.
    const alone = new AntiEntropy({ store, clock, storeSet: async () => false, replicaClient: unreachable, partitions: () => [], peers: () => [] })
    await alone.build()
    for (let p = 0; p < 7; p++) expect(alone.root(p)).toEqual(ae.root(p))
    expect(store.passes).toBe(2)
  })

  it('is an option checked up front: a scan of another store is refused', async () => {
    const store = await filled(1)
    const other: Store = await filled(1)
    const clock = new VirtualClock()
    expect(() => new AntiEntropy({ store, scan: new DataScan(other), clock, storeSet: async () => false, replicaClient: unreachable, partitions: () => [], peers: () => [] })).toThrow(/DataScan of the same store/)
    const replica = new Replica(store, new Actors('n1~1'))
    expect(() => new Reaper({ store, scan: new DataScan(other), replica, clock, log: pino({ level: 'silent' }), graceMs: 1, intervalMs: 1, plan: () => undefined, replicaClient: unreachable })).toThrow(/DataScan of the same store/)
  })
})
