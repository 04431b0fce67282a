// The hint store (hints.ts) over a MemoryStore with a recording transport: expiry after --hint-ttl-ms,
// merging, and delivery.
import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { decodeSet, encodeSet, pack, siblings, unpack, type DvvSet } from '@zerohop/core'
import { ReplicaClient, type Reply, type Transport } from '@zerohop/client'
import { HintStore, hintKey } from '../src/hints.js'
import { MemoryStore } from '../src/storage/store.js'
import { VirtualClock } from '../../test/sim/scheduler.js'
import { waitFor } from '../../test/harness/wait.js'

const TTL = 5000

class Recorder implements Transport {
  sent: { url: string; items: [number, Uint8Array, Uint8Array][] }[] = []
  /** Error answers by node URL (the others store). */
  refusals = new Map<string, Reply>()
  async post(url: string, _path: string, body: Uint8Array): Promise<Reply> {
    const { items } = unpack(body) as { items: [number, Uint8Array, Uint8Array][] }
    this.sent.push({ url, items })
    return this.refusals.get(url) ?? { status: 200, body: pack({ changed: items.length }) }
  }
  async get(): Promise<Reply> { throw new Error('unused') }
  async close() {}
}

const set = (actor: string, n: number, v: string): Uint8Array => encodeSet([[actor, n, [Buffer.from(v)]]] as DvvSet)
const text = (b: Uint8Array) => siblings(decodeSet(b)).map((x) => Buffer.from(x).toString()).sort()

/** A hint store over `store` (a new one by default), opened; the target n3 is up. */
async function hintStore(store = new MemoryStore(), clock = new VirtualClock(1_000_000), transport = new Recorder(), replicasOf = () => [] as { id: string; url: string }[]) {
  await store.open()
  const hints = new HintStore({
    store, replicaClient: new ReplicaClient(transport), clock, log: pino({ level: 'silent' }), maxBytesPerTarget: 1 << 20, intervalMs: 100, batchItems: 100, ttlMs: TTL,
    locate: () => ({ url: 'http://n3', up: true }),
    replicasOf,
  })
  await hints.open()
  return { store, clock, transport, hints }
}

describe('hint store', () => {
  it('a target that is up but never answers holds only its own hints: another target gets its hints meanwhile', async () => {
    const store = new MemoryStore()
    await store.open()
    const held: (() => void)[] = []
    const sent: string[] = []
    const transport: Transport = {
      async post(url, _path, body) {
        sent.push(url)
        const { items } = unpack(body) as { items: unknown[] }
        // n3 is paused: its answer comes only when the test lets it.
        if (url === 'http://n3') await new Promise<void>((r) => held.push(r))
        return { status: 200, body: pack({ changed: items.length }) }
      },
      async get() { throw new Error('unused') },
      async close() {},
    }
    const hints = new HintStore({
      store, replicaClient: new ReplicaClient(transport), clock: new VirtualClock(1_000_000), log: pino({ level: 'silent' }), maxBytesPerTarget: 1 << 20, intervalMs: 100, batchItems: 100, ttlMs: TTL,
      locate: (target) => ({ url: `http://${target}`, up: true }),
      replicasOf: () => [],
    })
    await hints.open()
    await hints.put('n3', 1, Buffer.from('k3'), set('a', 1, 'x'))
    await hints.put('n4', 1, Buffer.from('k4'), set('a', 1, 'y'))
    const delivering = hints.deliver()
    await waitFor(() => hints.counts().n4 === undefined, { timeoutMs: 2000, intervalMs: 5, what: "n4's hint delivered" })
    expect(hints.counts()).toEqual({ n3: 1 })
    expect(sent).toContain('http://n4')
    expect(held).toHaveLength(1)
    for (const release of held) release()
    await delivering
    expect(hints.counts()).toEqual({})
    expect(hints.metrics.delivered).toBe(2)
  })

  it('merges hints for one key and delivers the merge to the target', async () => {
    const { transport, hints } = await hintStore()
    await hints.put('n3', 1, Buffer.from('k'), set('a', 1, 'x'))
    await hints.put('n3', 1, Buffer.from('k'), set('b', 1, 'y'))
    expect(hints.counts()).toEqual({ n3: 1 })
    await hints.deliver()
    expect(transport.sent).toHaveLength(1)
    expect(text(transport.sent[0].items[0][2])).toEqual(['x', 'y'])
    expect(hints.counts()).toEqual({})
    expect(hints.metrics.delivered).toBe(1)
  })

  it('drops a hint not delivered within the TTL instead of delivering it, and survives a restart with its first time', async () => {
    const { store, clock, transport, hints } = await hintStore()
    await hints.put('n3', 1, Buffer.from('old'), set('a', 1, 'x'))
    clock.t += TTL / 2
    await hints.put('n3', 1, Buffer.from('new'), set('a', 1, 'y'))
    // Merging more into a hint does not extend its life.
    await hints.put('n3', 1, Buffer.from('old'), set('b', 1, 'z'))
    clock.t += TTL / 2 + 1
    // A restarted node reads each hint's first time back from storage.
    const { hints: again } = await hintStore(store, clock, transport)
    await again.deliver()
    expect(transport.sent.flatMap((s) => s.items.map((i) => Buffer.from(i[1]).toString()))).toEqual(['new'])
    expect(again.metrics.expired).toBe(1)
    expect(again.counts()).toEqual({})
  })

  it('delivers a hint stored by an earlier version (a bare set), counting its TTL from start-up', async () => {
    const { store, clock, transport } = await hintStore()
    await store.put(hintKey('n3', 1, Buffer.from('legacy')), set('a', 1, 'x'))
    const { hints } = await hintStore(store, clock, transport)
    clock.t += TTL - 1
    await hints.deliver()
    expect(transport.sent.map((s) => text(s.items[0][2]))).toEqual([['x']])
    expect(hints.metrics.expired).toBe(0)
  })

  it('counts a hint stored "in the future" (the clock stepped back) as expired', async () => {
    const { clock, transport, hints } = await hintStore()
    await hints.put('n3', 1, Buffer.from('k'), set('a', 1, 'x'))
    clock.t -= 1000
    await hints.deliver()
    expect(transport.sent).toEqual([])
    expect(hints.metrics.expired).toBe(1)
  })

  it('replaces an expired hint rather than merging into it, so nothing older than the TTL travels on', async () => {
    const { clock, transport, hints } = await hintStore()
    // No delivery pass has run yet, so neither has the expiry pass.
    await hints.put('n3', 1, Buffer.from('k'), set('a', 1, 'stale'))
    clock.t += TTL + 1
    await hints.put('n3', 1, Buffer.from('k'), set('b', 1, 'fresh'))
    await hints.deliver()
    expect(transport.sent).toHaveLength(1)
    expect(text(transport.sent[0].items[0][2])).toEqual(['fresh'])
  })

  it('a hint its target has not taken by half its lifetime is copied to the key\'s other replicas, once, and kept for the target', async () => {
    const transport = new Recorder()
    const replicas = [{ id: 'n1', url: 'http://n1' }, { id: 'n2', url: 'http://n2' }, { id: 'n3', url: 'http://n3' }]
    const { clock, hints } = await hintStore(undefined, undefined, transport, () => replicas)
    // n3 does not take it (it answers 503); the others do.
    transport.refusals.set('http://n3', { status: 503, body: Buffer.from(JSON.stringify({ error: { code: 'ZH_SHUTTING_DOWN', message: 'no' } })) })
    await hints.put('n3', 1, Buffer.from('k'), set('a', 1, 'x'))
    await hints.deliver()
    expect(transport.sent.map((s) => s.url)).toEqual(['http://n3'])
    clock.t += TTL / 2
    // A write merged into the hint now shares its lifetime: it is copied at the next pass.
    await hints.put('n3', 1, Buffer.from('k'), set('b', 1, 'y'))
    transport.sent = []
    await hints.deliver()
    expect(transport.sent.map((s) => s.url).sort()).toEqual(['http://n1', 'http://n2', 'http://n3'])
    for (const s of transport.sent) expect(text(s.items[0][2])).toEqual(['x', 'y'])
    expect(hints.counts()).toEqual({ n3: 1 })
    // Copied once: later passes offer it to its target only.
    transport.sent = []
    await hints.deliver()
    expect(transport.sent.map((s) => s.url)).toEqual(['http://n3'])
    // A copy that fails is tried again at the next pass.
    await hints.put('n3', 1, Buffer.from('k'), set('c', 1, 'z'))
    transport.refusals.set('http://n2', transport.refusals.get('http://n3')!)
    transport.sent = []
    await hints.deliver()
    transport.refusals.delete('http://n2')
    transport.sent = []
    await hints.deliver()
    expect(transport.sent.map((s) => s.url).sort()).toEqual(['http://n1', 'http://n2', 'http://n3'])
  })

  it('a target that answers it no longer replicates the partition: the hint goes to the replicas that do', async () => {
    const transport = new Recorder()
    const refuse = (status: number, code: string) => ({ status, body: Buffer.from(JSON.stringify({ error: { code, message: 'no' } })) })
    const { hints } = await hintStore(undefined, undefined, transport, () => [{ id: 'n4', url: 'http://n4' }])
    await hints.put('n3', 1, Buffer.from('k'), set('a', 1, 'x'))
    // Any other refusal keeps the hint for the next round.
    transport.refusals.set('http://n3', refuse(503, 'ZH_SHUTTING_DOWN'))
    await hints.deliver()
    expect(transport.sent.map((s) => s.url)).toEqual(['http://n3'])
    expect(hints.counts()).toEqual({ n3: 1 })
    transport.refusals.set('http://n3', refuse(409, 'ZH_NOT_REPLICA'))
    await hints.deliver()
    expect(transport.sent.map((s) => s.url)).toEqual(['http://n3', 'http://n3', 'http://n4'])
    expect(hints.counts()).toEqual({})
  })
})
