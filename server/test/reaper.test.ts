// Tombstone reaping (reaper.ts) and the actor epochs that keep writes to reaped keys safe
// (Actors in replica.ts): three replicas over MemoryStores in one process, their reap requests passed
// straight to each other's handlers, on the simulator's virtual clock, stepped by hand.
import { describe, expect, it } from 'vitest'
import pino from 'pino'
import { TransportError, decodeSet, encodeSet, join, pack, siblings, unpack, type DvvSet } from '@zerohop/core'
import { Actors, Replica, dataKey } from '../src/replica.js'
import { Reaper, parseReapRequest, type ReapPeer } from '../src/reaper.js'
import { MemoryStore } from '../src/storage/store.js'
import { VirtualClock } from '../../test/sim/scheduler.js'
import { replicaClientOf } from './replica-client-of.js'

const P = 3
const GRACE = 10_000
const log = pino({ level: 'silent' })
const key = (i: number) => Buffer.from(`k${i}`)
const text = (set: DvvSet) => siblings(set).map((v) => Buffer.from(v).toString())

interface Node {
  id: string
  store: MemoryStore
  replica: Replica
  reaper: Reaper
}

/** Three replicas of partition P; `a` reaps, `b` and `c` answer. `cut` holds ids whose requests fail. */
async function trio(clock = new VirtualClock(1_000_000)) {
  const cut = new Set<string>()
  /** Runs before a peer serves a phase (to interleave writes). */
  const before: { fn?: (id: string, phase: string) => Promise<void> } = {}
  const nodes = new Map<string, Node>()
  for (const id of ['a', 'b', 'c']) {
    const store = new MemoryStore()
    await store.open()
    let reaper!: Reaper
    const replica = new Replica(store, new Actors(`${id}~1`), (p, k, _b, _a, dead) => reaper.onWrite(p, k, dead))
    reaper = new Reaper({
      store,
      replica,
      clock,
      log,
      graceMs: GRACE,
      intervalMs: 1000,
      plan: () => (id === 'a' ? { epoch: 'e', peers: ['b', 'c'].map((x): ReapPeer => ({ id: x, url: x })) } : undefined),
      replicaClient: replicaClientOf(async (url, _path, body) => {
        const req = unpack(body) as Record<string, unknown>
        await before.fn?.(url, req.phase as string)
        if (cut.has(url)) throw new TransportError('refused', `${url} unreachable`, { delivered: false })
        return { status: 200, body: pack(await nodes.get(url)!.reaper.handle(parseReapRequest(req))) }
      }),
    })
    nodes.set(id, { id, store, replica, reaper })
  }
  const [a, b, c] = ['a', 'b', 'c'].map((id) => nodes.get(id)!)
  /** A write coordinated by `on`, stored on the others (all of them unless `to` says). */
  const write = async (on: Node, k: Uint8Array, context: DvvSet | undefined, value: string | null, to: Node[] = [a, b, c]) => {
    const set = await on.replica.coordinate(P, k, context ? join(context) : [], value === null ? null : Buffer.from(value))
    for (const n of to) if (n !== on) await n.replica.store(P, k, set)
    return decodeSet(set)
  }
  const held = async (n: Node, k: Uint8Array) => {
    const raw = await n.store.get(dataKey(P, k))
    return raw ? decodeSet(raw) : undefined
  }
  return { clock, cut, before, a, b, c, write, held }
}

describe('tombstone reaping', () => {
  it('reaps a tombstone every replica has held for the grace period, on every replica, and not before', async () => {
    const { clock, a, b, c, write, held } = await trio()
    for (let i = 0; i < 5; i++) {
      const v = await write(a, key(i), undefined, `v${i}`)
      await write(a, key(i), v, null)
    }
    expect(a.reaper.count).toBe(5)
    clock.t += GRACE - 1
    await a.reaper.round()
    for (const n of [a, b, c]) expect(await held(n, key(0))).toBeDefined()
    clock.t += 1
    await a.reaper.round()
    for (const n of [a, b, c]) for (let i = 0; i < 5; i++) expect(await held(n, key(i))).toBeUndefined()
    expect([a, b, c].map((n) => n.reaper.metrics.reaped)).toEqual([5, 5, 5])
    expect([a, b, c].map((n) => n.reaper.count)).toEqual([0, 0, 0])
  })

  it('keeps a tombstone while one replica still holds the old value, or got the tombstone only lately', async () => {
    const { clock, a, b, c, write, held } = await trio()
    const v = await write(a, key(1), undefined, 'old')
    await write(a, key(1), v, null, [a, b]) // c missed the delete
    const v2 = await write(a, key(2), undefined, 'old')
    const t2 = await write(a, key(2), v2, null, [a, b])
    clock.t += GRACE
    await c.replica.store(P, key(2), encodeSet(t2)) // c gets it now: its grace starts now
    await a.reaper.round()
    expect(text((await held(c, key(1)))!)).toEqual(['old'])
    for (const n of [a, b]) expect(await held(n, key(1))).toBeDefined()
    for (const n of [a, b, c]) expect(await held(n, key(2))).toBeDefined()
    clock.t += GRACE
    await a.reaper.round()
    for (const n of [a, b, c]) expect(await held(n, key(2))).toBeUndefined()
    expect(await held(a, key(1))).toBeDefined()
  })

  it('reaps nothing when a replica cannot be asked', async () => {
    const { clock, cut, a, b, c, write, held } = await trio()
    const v = await write(a, key(1), undefined, 'x')
    await write(a, key(1), v, null)
    clock.t += GRACE
    cut.add('c')
    await a.reaper.round()
    for (const n of [a, b, c]) expect(await held(n, key(1))).toBeDefined()
  })

  it('a write that lands between the check and the reap keeps its key on that replica, and the others get it back', async () => {
    const { clock, before, a, b, c, write, held } = await trio()
    const v = await write(a, key(1), undefined, 'x')
    const t = await write(a, key(1), v, null)
    clock.t += GRACE
    before.fn = async (id, phase) => {
      if (id === 'b' && phase === 'reap') await write(b, key(1), t, 'new', [b])
    }
    await a.reaper.round()
    expect(await held(a, key(1))).toBeUndefined()
    expect(await held(c, key(1))).toBeUndefined()
    const onB = (await held(b, key(1)))!
    expect(text(onB)).toEqual(['new'])
    // Anti-entropy copies b's set to the others: the new value, and no old one.
    for (const n of [a, c]) await n.replica.store(P, key(1), encodeSet(onB))
    for (const n of [a, c]) expect(text((await held(n, key(1)))!)).toEqual(['new'])
  })

  it('a write to a key reaped here but not on a replica whose reap failed survives that replica (no dot reuse)', async () => {
    const { clock, before, a, b, c, write, held } = await trio()
    const v = await write(a, key(1), undefined, 'x')
    await write(a, key(1), v, null)
    clock.t += GRACE
    before.fn = async (id, phase) => {
      if (id === 'c' && phase === 'reap') throw new Error('c crashed')
    }
    await a.reaper.round()
    expect(await held(a, key(1))).toBeUndefined()
    const stale = (await held(c, key(1)))!
    expect(siblings(stale)).toEqual([])
    // A blind write coordinated by a, which no longer holds the key.
    const fresh = await write(a, key(1), undefined, 'after', [a, b, c])
    expect(fresh.map((e) => e[0])).toEqual(['a~1.1'])
    for (const n of [a, b, c]) expect(text((await held(n, key(1)))!)).toEqual(['after'])
    // The tombstone c kept, synced back by anti-entropy, does not shadow it either.
    await a.replica.store(P, key(1), encodeSet(stale))
    expect(text((await held(a, key(1)))!)).toEqual(['after'])
  })

  it('finds the tombstones already stored when it starts, counting their grace from the start', async () => {
    const { clock, a, b, c, write } = await trio()
    for (let i = 0; i < 3; i++) {
      const v = await write(a, key(i), undefined, 'x')
      await write(a, key(i), v, null)
    }
    await write(a, key(9), undefined, 'live')
    clock.t += 5 * GRACE
    const restarted = new Reaper({ store: b.store, replica: b.replica, clock, log, graceMs: GRACE, intervalMs: 1000, plan: () => undefined, replicaClient: replicaClientOf(async () => ({ status: 500, body: Buffer.alloc(0) })) })
    await restarted.start()
    await restarted.stop()
    expect(restarted.count).toBe(3)
    const sets = await b.replica.snapshot(P, [key(0)])
    const ask = () => restarted.handle({ partition: P, phase: 'check', items: [[key(0), sets[0]!]] })
    expect((await ask()).ok).toEqual([false])
    clock.t += GRACE
    expect((await ask()).ok).toEqual([true])
    expect(a.reaper.count + c.reaper.count).toBe(6)
  })

  it('a reap request deletes only tombstones this node has held for the grace period, whatever it names', async () => {
    const { clock, a, b, write, held } = await trio()
    const live = await write(a, key(1), undefined, 'live')
    const v = await write(a, key(2), undefined, 'x')
    const tomb = await write(a, key(2), v, null)
    const reap = (k: Uint8Array, set: DvvSet) => b.reaper.handle({ partition: P, phase: 'reap', items: [[k, encodeSet(set)]] })
    expect((await reap(key(1), live)).ok).toEqual([false])
    expect((await reap(key(2), tomb)).ok).toEqual([false])
    clock.t += GRACE
    expect((await reap(key(1), live)).ok).toEqual([false])
    expect(await held(b, key(1))).toBeDefined()
    expect((await reap(key(2), tomb)).ok).toEqual([true])
    expect(await held(b, key(2))).toBeUndefined()
  })

  it('refuses a malformed request with a typed 400', () => {
    expect(() => parseReapRequest({ partition: P, phase: 'drop', items: [[key(1), key(2)]] })).toThrow(expect.objectContaining({ status: 400, code: 'ZH_BAD_BODY' }))
    expect(() => parseReapRequest({ partition: P, phase: 'check', items: [[1, 2]] })).toThrow(expect.objectContaining({ status: 400, code: 'ZH_BAD_BODY' }))
    expect(() => parseReapRequest({ partition: P, phase: 'check', items: [] })).toThrow(expect.objectContaining({ status: 400, code: 'ZH_BAD_BODY' }))
  })
})

describe('actor epochs', () => {
  it('reuses the actor a key already holds, takes the current epoch for a key it does not hold, and respects partition floors', async () => {
    const persisted: unknown[] = []
    const actors = new Actors('n1~ab', async (s) => void persisted.push(s))
    expect(actors.current).toBe('n1~ab')
    const set: DvvSet = [['n1~ab', 4, [null]], ['n2~cd', 1, [Buffer.from('x')]]]
    await actors.retire()
    expect(actors.current).toBe('n1~ab.1')
    expect(actors.pick(set, 0)).toBe('n1~ab')
    expect(actors.pick([], 0)).toBe('n1~ab.1')
    // A look-alike id of another node is not ours.
    expect(actors.pick([['n1~abc', 9, []], ['n1~ab.x', 2, []]], 0)).toBe('n1~ab.1')
    await actors.retire([0])
    expect(actors.pick(set, 0)).toBe('n1~ab.2')
    expect(actors.pick(set, 1)).toBe('n1~ab')
    expect(persisted).toEqual([{ base: 'n1~ab', epoch: 1, floors: [] }, { base: 'n1~ab', epoch: 2, floors: [[0, 2]] }])
    // Concurrent retirements are saved in order, and a new epoch is used only once it is saved.
    const saves: { epoch: number; release: () => void }[] = []
    const slow = new Actors('n9~aa', (s) => new Promise<void>((release) => saves.push({ epoch: s.epoch, release })))
    const first = slow.retire()
    const second = slow.retire()
    await new Promise((r) => setImmediate(r))
    expect(saves.map((s) => s.epoch)).toEqual([1])
    expect(slow.current).toBe('n9~aa')
    saves[0].release()
    await first
    expect(slow.current).toBe('n9~aa.1')
    await new Promise((r) => setImmediate(r))
    expect(saves.map((s) => s.epoch)).toEqual([1, 2])
    saves[1].release()
    await second
    expect(slow.current).toBe('n9~aa.2')
    // State survives a restart of the same incarnation, not a new one.
    expect(new Actors('n1~ab', undefined, actors.state()).pick(set, 0)).toBe('n1~ab.2')
    expect(new Actors('n1~ef', undefined, actors.state()).current).toBe('n1~ef')
  })
})
