// The coordinator against a scripted transport that speaks the replica protocol with the core's DVV
// functions, for what real nodes never answer (garbage, connect timeouts that sent nothing, refused
// signatures, a node stopping) and for the batching of requests. The engine against real nodes (where
// writes are minted and stored, hints, read repair, quorum failures) is in test/sim/engine.test.ts.
import { describe, expect, it } from 'vitest'
import {
  ClusterView,
  Paths,
  TransportError,
  decodeSet,
  encodeContext,
  encodeSet,
  pack,
  siblings,
  sync,
  unpack,
  update,
  type DvvSet,
  type VersionVector,
} from '@zerohop/core'
import { Engine } from '../src/engine.js'
import { RingWatch } from '../src/membership.js'
import { systemClock } from '../src/clock.js'
import { resolveClientOptions } from '../src/options.js'
import type { Reply, SendOptions, Transport } from '../src/transport.js'
import { waitFor } from '../../../test/harness/wait.js'

type Mode = 'up' | 'refuse' | 'unconnectable' | 'garbage' | 'stopping' | 'starting' | 'unauthenticated'

class FakeNode {
  data = new Map<string, DvvSet>()
  mode: Mode = 'up'
  calls: string[] = []
  /** Body size of every request. */
  sizes: number[] = []
  /** Targets of the hints stored here, in arrival order. */
  hints: string[] = []
  /** Hints held here, as /v1/replica/hints answers them: key (hex) → [target, set] pairs. */
  held = new Map<string, [string, Uint8Array][]>()
  /** Stores still to refuse with 409 ZH_STALE_RING (a node on a newer ring than the caller's). */
  staleStores = 0
  /** The keys of each read request, in arrival order. */
  reads: string[][] = []
  /** While set, requests are answered only once it resolves (a request in flight). */
  hold?: Promise<void>
  constructor(readonly id: string) {}
}

class FakeTransport implements Transport {
  nodes = new Map<string, FakeNode>()
  constructor(ids: string[]) {
    for (const id of ids) this.nodes.set(`http://${id}`, new FakeNode(id))
  }
  node(id: string): FakeNode {
    return this.nodes.get(`http://${id}`)!
  }
  async get(): Promise<Reply> {
    throw new Error('not used')
  }
  async close(): Promise<void> {}
  async post(url: string, path: string, body: Uint8Array, options: SendOptions = {}): Promise<Reply> {
    const node = this.nodes.get(url)!
    node.calls.push(path)
    node.sizes.push(body.byteLength)
    if (path === Paths.read) node.reads.push((unpack(body) as { keys: [number, Uint8Array][] }).keys.map(([, k]) => Buffer.from(k).toString()))
    if (node.hold) await node.hold
    if (node.mode === 'refuse') throw new TransportError('refused', 'connection refused', { delivered: false })
    if (node.mode === 'unconnectable') throw new TransportError('timeout', 'connect timeout', { delivered: false })
    if (node.mode === 'stopping') return { status: 503, body: Buffer.from(JSON.stringify({ error: { code: 'ZH_SHUTTING_DOWN', message: 'stopping' } })) }
    if (node.mode === 'unauthenticated') return { status: 401, body: Buffer.from(JSON.stringify({ error: { code: 'ZH_UNAUTHENTICATED', message: 'the request signature does not match' } })) }
    if (node.mode === 'starting') return { status: 503, body: Buffer.from(JSON.stringify({ error: { code: 'ZH_NOT_READY', message: 'this node has not heard from its seeds yet' } })) }
    if (path === Paths.store && node.staleStores > 0) {
      node.staleStores--
      return { status: 409, body: Buffer.from(JSON.stringify({ error: { code: 'ZH_STALE_RING', message: 'this request was made with an older ring' } })) }
    }
    const req = unpack(body) as Record<string, any>
    const keyOf = (k: Uint8Array) => Buffer.from(k).toString('hex')
    let out: unknown
    if (path === Paths.read && node.mode === 'garbage') {
      out = { sets: req.keys.map(() => pack([['a', 0, []]])) }
    } else if (path === Paths.read) {
      out = { sets: req.keys.map(([, k]: [number, Uint8Array]) => (node.data.has(keyOf(k)) ? encodeSet(node.data.get(keyOf(k))!) : null)) }
    } else if (path === Paths.hints) {
      out = { hints: node.held.get(keyOf(req.key)) ?? [] }
    } else if (path === Paths.coordinate) {
      // The SDK sends coordinations as a batch (`items` → `results`).
      const results = (req.items as Record<string, any>[]).map((item) => {
        const set = update(item.context as VersionVector, node.data.get(keyOf(item.key)) ?? [], `${node.id}~1`, item.value)
        node.data.set(keyOf(item.key), set)
        return { set: encodeSet(set) }
      })
      out = { results }
    } else {
      for (const [, k, s, hintFor] of req.items) {
        if (hintFor !== undefined) node.hints.push(hintFor)
        else node.data.set(keyOf(k), sync(node.data.get(keyOf(k)) ?? [], decodeSet(s)))
      }
      out = { changed: req.items.length }
    }
    return { status: 200, body: pack(out) }
  }
}

const ids = ['a', 'b', 'c']
let transport: FakeTransport
function engine(options: Record<string, unknown> = {}, maxBodyBytes = 16 << 20): Engine {
  transport = new FakeTransport(ids)
  const members = ids.map((id) => ({ id, url: `http://${id}`, zone: 'z', weight: 1, status: 'normal' as const, incarnation: '1', version: 1, heartbeat: 0, since: 0, until: 0, removed: false, ready: '' }))
  const view = new ClusterView(members, { partitions: 8, n: 3 })
  const ring = { epoch: view.epoch, partitions: 8, n: 3, spares: 2, members, down: [], limits: { maxKeyBytes: 1024, maxValueBytes: 1 << 20, maxBodyBytes } }
  const membership = RingWatch.from(transport, systemClock, ring, { refreshIntervalMs: 60_000, refreshDebounceMs: 200, backoffMs: 1000 })
  membership.close()
  return new Engine(resolveClientOptions({ seeds: ['http://a'], readRepairWaitMs: 20, timeoutMs: 200, ...options }), transport, membership)
}

/** The key's replicas in preference order. */
const replicasOf = (e: Engine, k: Uint8Array) => e.plan(k, 1).current
const key = Buffer.from('k')
const hexKey = key.toString('hex')
const v = (s: string) => Buffer.from(s)

describe('Engine', () => {
  it('refused credentials are the caller\'s in the SDK (UnauthenticatedError), but a node\'s own in node placement (QuorumError, 503)', async () => {
    const sdk = engine()
    for (const id of ids) transport.node(id).mode = 'unauthenticated'
    await expect(sdk.get(key)).rejects.toMatchObject({ name: 'UnauthenticatedError', code: 'ZH_UNAUTHENTICATED' })
    await expect(sdk.put(key, v('x'))).rejects.toMatchObject({ name: 'UnauthenticatedError' })
    const node = engine({ local: 'a' })
    for (const id of ids) transport.node(id).mode = 'unauthenticated'
    const err = await node.get(key).catch((x) => x)
    expect(err).toMatchObject({ name: 'QuorumError', code: 'ZH_QUORUM_NOT_MET' })
    // The quorum is lost once two of three refused: each cause is named.
    expect(err.replicas.length).toBeGreaterThanOrEqual(2)
    expect(err.replicas.every((r: { code?: string }) => r.code === 'ZH_UNAUTHENTICATED')).toBe(true)
  })

  for (const [mode, what] of [['refuse', 'refuses the connection'], ['unconnectable', 'never gets a connection up (nothing was sent)']] as const) {
    it(`moves the coordination to the next replica when the first ${what}`, async () => {
      const e = engine()
      const first = replicasOf(e, key)[0].id
      transport.node(first).mode = mode
      const res = await e.put(key, v('x'), { w: 2 })
      expect(res.coordinator).not.toBe(first)
    })
  }

  /** Hold every node's answers until the returned function is called. */
  function holdAnswers(): () => void {
    let release!: () => void
    const hold = new Promise<void>((r) => (release = r))
    for (const id of ids) transport.node(id).hold = hold
    return () => {
      for (const id of ids) transport.node(id).hold = undefined
      release()
    }
  }
  const turn = () => new Promise<void>((r) => setImmediate(r))

  it('sends the reads of one burst to a node in one request, a lone get in the same turn, and those issued while a request is in flight together in the next', async () => {
    const e = engine()
    const keys = Array.from({ length: 10 }, (_, i) => Buffer.from(`key-${i}`))
    for (const k of keys) await e.put(k, v(k.toString()), { w: 3 })
    const asked = (k: Uint8Array) => e.plan(k, 2, true).targets.map((m) => m.id)
    const expected = (ks: Buffer[], id: string) => ks.filter((k) => asked(k).includes(id)).map(String)
    // 10 gets issued together: one request per node, carrying every key that node is asked for.
    for (const id of ids) transport.node(id).reads = []
    const results = await Promise.all(keys.map((k) => e.get(k, { r: 2 })))
    expect(results.map((r) => String(r.siblings[0]))).toEqual(keys.map(String))
    for (const id of ids) expect(transport.node(id).reads).toEqual(expected(keys, id).length > 0 ? [expected(keys, id)] : [])
    // A lone get: its requests leave in the turn it was made (held here, so they are seen in flight).
    for (const id of ids) transport.node(id).reads = []
    const release = holdAnswers()
    const lone = e.get(keys[0], { r: 2 })
    await turn()
    for (const id of ids) expect(transport.node(id).reads).toEqual(asked(keys[0]).includes(id) ? [[String(keys[0])]] : [])
    // Issued while those are in flight: to a node with a request in flight they go together in one
    // request at the end of the turn; to an idle node at the end of the burst, as before.
    const rest = keys.slice(1).map((k) => e.get(k, { r: 2 }))
    await turn()
    release()
    expect((await Promise.all([lone, ...rest])).map((r) => String(r.siblings[0]))).toEqual(keys.map(String))
    for (const id of ids) {
      const first = asked(keys[0]).includes(id) ? [[String(keys[0])]] : []
      const then = expected(keys.slice(1), id)
      expect(transport.node(id).reads).toEqual(then.length > 0 ? [...first, then] : first)
    }
  })

  it('a get that is aborted inside a shared batch fails alone and at once; the others are answered', async () => {
    const e = engine()
    await e.put(Buffer.from('x'), v('x'), { w: 3 })
    await e.put(Buffer.from('y'), v('y'), { w: 3 })
    for (const id of ids) transport.node(id).reads = []
    const release = holdAnswers()
    const ac = new AbortController()
    const first = e.get(Buffer.from('x'), { r: 2 })
    await turn()
    // Issued while the first is in flight: they share one request per node.
    const aborted = e.get(Buffer.from('y'), { r: 2, signal: ac.signal })
    const fine = e.get(Buffer.from('x'), { r: 2 })
    await turn()
    ac.abort()
    // Its batch is still held: the aborted get does not wait for it.
    await expect(aborted).rejects.toMatchObject({ code: 'ZH_ABORTED' })
    release()
    expect((await fine).siblings.map(String)).toEqual(['x'])
    expect((await first).siblings.map(String)).toEqual(['x'])
    const ofX = e.plan(Buffer.from('x'), 2, true).targets.map((m) => m.id)
    for (const id of ofX) expect(transport.node(id).reads[0]).toEqual(['x'])
    for (const id of ofX) expect(transport.node(id).reads[1]).toContain('x')
  })

  it('a get aborted before its requests leave is not sent at all', async () => {
    const e = engine()
    await e.put(Buffer.from('x'), v('x'), { w: 3 })
    for (const id of ids) transport.node(id).reads = []
    const ac = new AbortController()
    const aborted = e.get(Buffer.from('y'), { r: 2, signal: ac.signal })
    const fine = e.get(Buffer.from('x'), { r: 2 })
    ac.abort()
    await expect(aborted).rejects.toMatchObject({ code: 'ZH_ABORTED' })
    expect((await fine).siblings.map(String)).toEqual(['x'])
    for (const id of ids) expect(transport.node(id).reads.flat()).not.toContain('y')
  })

  it('a replica answering with an undecodable set is ignored by repair and never crashes the process', async () => {
    const e = engine({ readRepairWaitMs: 50 })
    await e.put(key, v('ok'), { w: 3 })
    const bad = replicasOf(e, key)[2].id
    transport.node(bad).mode = 'garbage'
    const unhandled: unknown[] = []
    const onUnhandled = (err: unknown) => unhandled.push(err)
    process.on('unhandledRejection', onUnhandled)
    try {
      const res = await e.get(key, { r: 2 })
      expect(res.siblings.map(String)).toEqual(['ok'])
      await new Promise((r) => setTimeout(r, 120)) // past the repair window (a bounded wait, not a condition)
      expect(unhandled).toEqual([])
    } finally {
      process.off('unhandledRejection', onUnhandled)
    }
  })

  it('stores refused for a stale ring are sent again after each refresh, while the deadline allows (a ring that moves twice during a join)', async () => {
    const e = engine({ timeoutMs: 2000 })
    const [first, ...others] = replicasOf(e, key).map((m) => m.id)
    // Both other replicas refuse the first two stores: a single retry would leave the put at 1 of W=2.
    for (const id of others) transport.node(id).staleStores = 2
    const res = await e.put(key, v('moved'), { w: 2 })
    expect(res.coordinator).toBe(first)
    for (const id of others) {
      expect(transport.node(id).staleStores).toBe(0)
      await waitFor(() => transport.node(id).data.has(hexKey), { timeoutMs: 2000, intervalMs: 5, what: 'the stored copy' })
      expect(siblings(transport.node(id).data.get(hexKey)!).map((b) => Buffer.from(b).toString())).toEqual(['moved'])
    }
  })

  it('a coordinator that answers 503 ZH_SHUTTING_DOWN did nothing: the write goes to the next replica', async () => {
    const e = engine()
    const order = replicasOf(e, key).map((m) => m.id)
    transport.node(order[0]).mode = 'stopping'
    const res = await e.put(key, v('x'), { w: 2 })
    expect(res.coordinator).not.toBe(order[0])
  })

  describe('a replica that answers 503 ZH_NOT_READY (starting: it did nothing) is asked again within the deadline', () => {
    /** The node answers as starting until `ms` from now, then serves (the scenario's clock, not a wait for a condition). */
    function startingFor(id: string, ms: number): void {
      transport.node(id).mode = 'starting'
      setTimeout(() => (transport.node(id).mode = 'up'), ms)
    }

    it('a store and a read that need the starting replica succeed once it serves', async () => {
      const e = engine({ timeoutMs: 2000 })
      const [, second] = replicasOf(e, key).map((m) => m.id)
      startingFor(second, 150)
      const started = Date.now()
      await e.put(key, v('x'), { w: 3 })
      expect(Date.now() - started).toBeGreaterThanOrEqual(100)
      expect(siblings(transport.node(second).data.get(hexKey)!).map(String)).toEqual(['x'])
      expect(transport.node(second).calls.filter((p) => p === Paths.store).length).toBeGreaterThan(1)
      startingFor(second, 150)
      const read = await e.get(key, { r: 3 })
      expect(read.siblings.map(String)).toEqual(['x'])
    })

    it('a write whose every replica is starting is coordinated once they serve, and minted once', async () => {
      const e = engine({ timeoutMs: 2000 })
      for (const id of ids) startingFor(id, 150)
      const res = await e.put(key, v('x'), { w: 2 })
      expect(res.siblings.map(String)).toEqual(['x'])
      // One version: the refused coordinations minted nothing.
      const sets = ids.map((id) => transport.node(id).data.get(hexKey)).filter((d) => d !== undefined)
      expect(new Set(sets.map((d) => JSON.stringify(d![0][0])))).toEqual(new Set([JSON.stringify(sets[0]![0][0])]))
      expect(ids.reduce((n, id) => n + transport.node(id).calls.filter((p) => p === Paths.coordinate).length, 0)).toBeGreaterThan(3)
    })

    it('fails with QuorumError near the deadline, naming ZH_NOT_READY, when the replica never serves', async () => {
      const e = engine({ timeoutMs: 400 })
      const [, second] = replicasOf(e, key).map((m) => m.id)
      transport.node(second).mode = 'starting'
      const started = Date.now()
      const err = await e.put(key, v('x'), { w: 3 }).catch((x) => x)
      const took = Date.now() - started
      expect(err.code).toBe('ZH_QUORUM_NOT_MET')
      expect(err.replicas).toEqual([expect.objectContaining({ id: second, cause: 'http', status: 503, code: 'ZH_NOT_READY' })])
      expect(took).toBeGreaterThanOrEqual(300)
      expect(took).toBeLessThan(600)
      expect(transport.node(second).calls.filter((p) => p === Paths.store).length).toBeGreaterThan(3)
      const readErr = await e.get(key, { r: 3 }).catch((x) => x)
      expect(readErr.code).toBe('ZH_QUORUM_NOT_MET')
      expect(readErr.replicas).toEqual([expect.objectContaining({ id: second, code: 'ZH_NOT_READY' })])
    })

    it('a replica shutting down is not asked again: it will not come back', async () => {
      const e = engine({ timeoutMs: 400 })
      const [, second] = replicasOf(e, key).map((m) => m.id)
      transport.node(second).mode = 'stopping'
      const err = await e.put(key, v('x'), { w: 3 }).catch((x) => x)
      expect(err.code).toBe('ZH_QUORUM_NOT_MET')
      expect(transport.node(second).calls.filter((p) => p === Paths.store)).toHaveLength(1)
    })
  })


  it('coalesces replica stores of concurrent puts into fewer requests, and every replica gets every write', async () => {
    const e = engine()
    const keys = Array.from({ length: 10 }, (_, i) => Buffer.from(`put-${i}`))
    await Promise.all(keys.map((k) => e.put(k, v(k.toString()), { w: 3 })))
    const storeRequests = ids.reduce((n, id) => n + transport.node(id).calls.filter((p) => p === Paths.store).length, 0)
    // 10 puts at W=3 send 20 replica stores; coalesced, they take fewer requests.
    expect(storeRequests).toBeLessThan(20)
    for (const id of ids) for (const k of keys) expect(siblings(transport.node(id).data.get(k.toString('hex'))!).map(String)).toEqual([k.toString()])
  })

  it('cuts coalesced batches by size, so a batch never exceeds the node body limit', async () => {
    const e = engine({}, 4096)
    const keys = Array.from({ length: 10 }, (_, i) => Buffer.from(`big-${i}`))
    await Promise.all(keys.map((k) => e.put(k, Buffer.alloc(1500, 7), { w: 3 })))
    for (const id of ids) {
      const node = transport.node(id)
      node.calls.forEach((p, i) => p === Paths.store && expect(node.sizes[i]).toBeLessThanOrEqual(4096))
      for (const k of keys) expect(siblings(node.data.get(k.toString('hex'))!)).toHaveLength(1)
    }
  })

  it('one replica answering with an undecodable set does not fail a read that R sound replicas can serve', async () => {
    const e = engine()
    await e.put(key, v('ok'), { w: 3 })
    for (const bad of replicasOf(e, key).map((m) => m.id)) {
      for (const id of ids) transport.node(id).mode = id === bad ? 'garbage' : 'up'
      expect((await e.get(key, { r: 2 })).siblings.map(String)).toEqual(['ok'])
      const err = await e.get(key, { r: 3 }).catch((x) => x)
      expect(err.code).toBe('ZH_QUORUM_NOT_MET')
      expect(err.replicas).toEqual([expect.objectContaining({ id: bad, cause: 'invalid-response' })])
    }
  })

  it('explain: primaries in preference order, whether they agree, the hints any member holds, what it could not ask', async () => {
    const e = engine()
    await e.put(key, v('x'), { w: 3 })
    const order = replicasOf(e, key).map((m) => m.id)
    const first = await e.explain(key)
    expect(first.preferenceList.map((m) => [m.id, m.role, m.up])).toEqual(order.map((id) => [id, 'primary', true]))
    expect(first.replicas.map((r) => [r.id, r.role, r.found])).toEqual(order.map((id) => [id, 'primary', true]))
    expect(first.agree).toBe(true)
    expect(first.hints).toEqual([])
    expect(first.moving).toBeNull()

    // One replica behind, a hint held for it elsewhere, one member not answering.
    const [a, b, c] = order
    transport.node(b).data.set(hexKey, update([], [], 'other~1', v('old')))
    transport.node(a).held.set(hexKey, [[b, encodeSet(transport.node(a).data.get(hexKey)!)]])
    transport.node(c).mode = 'refuse'
    const second = await e.explain(key)
    expect(second.agree).toBe(false)
    expect(second.replicas.find((r) => r.id === b)?.siblings.map((x) => Buffer.from(x).toString())).toEqual(['old'])
    expect(second.replicas.find((r) => r.id === c)?.error?.cause).toBe('refused')
    expect(second.hints).toEqual([expect.objectContaining({ holder: a, target: b, tombstone: false, siblings: [v('x')] })])
    expect(second.unasked).toEqual([c])
    // Explain repairs nothing.
    expect(siblings(transport.node(b).data.get(hexKey)!).map((x) => Buffer.from(x).toString())).toEqual(['old'])
  })
})
