// The SDK's coordinator engine against three real nodes on the simulated network and virtual clock:
// where a write is minted and stored, what happens when a replica is silent or dead, read repair, and
// the context a put hands back. (packages/client/test/engine.test.ts keeps a scripted transport for
// what real nodes never answer: garbage, connect timeouts that sent nothing, refused signatures.)
import { describe, expect, it } from 'vitest'
import { Paths, decodeContext, decodeSet, encodeContext, fromUtf8, siblings, utf8 } from '@zerohop/core'
import type { Client } from '@zerohop/client'
import { SimCluster, type SimNode } from './cluster.js'
import { readKey } from './checker.js'

const KEY = 'k'

/** Three real nodes serving, and an SDK client connected to them. */
async function trio(options: { hintIntervalMs?: number } = {}): Promise<{ sim: SimCluster; nodes: SimNode[]; db: Client<any>; byRank: SimNode[] }> {
  const sim = new SimCluster(5)
  const ids = ['n1', 'n2', 'n3']
  const seeds = ids.map((id) => `http://${id}.sim:7000`)
  // Anti-entropy idle: what repairs a replica here is the engine.
  const nodes = ids.map((id) => sim.define(id, { seeds, aeIntervalMs: 3_600_000, ...options }, false))
  for (const n of nodes) sim.start(n)
  expect(await sim.runUntil(() => nodes.every((n) => n.node?.view !== undefined), 30_000)).toBe(true)
  const { db } = await sim.settle(sim.client('c1', { seeds, readRepairWaitMs: 20 }), 30_000)
  const view = nodes[0].node!.view!
  const byRank = view.replicas(view.current.partitionOf(utf8(KEY))).current.map((m) => sim.nodes.get(m.id)!)
  sim.network.recording = true
  return { sim, nodes, db, byRank }
}

const coordinations = (sim: SimCluster) => sim.network.delivered.filter((r) => r.path === Paths.coordinate)

/** The live values each of `nodes` holds for KEY on its disk. */
function held(sim: SimCluster, nodes: SimNode[]): unknown[][] {
  const state = readKey(sim, nodes[0].node!.view!, KEY)
  return nodes.map((n) => {
    const bytes = state.replicas.get(n.id)
    return bytes ? siblings(decodeSet(bytes)).map((v) => JSON.parse(fromUtf8(v))) : []
  })
}

describe('the engine against real nodes', () => {
  it('mints a write on the replica its context names and stores it on the others', async () => {
    const { sim, nodes, db } = await trio()
    await sim.settle(db.put(KEY, '1', { w: 3 }), 5000)
    let read = await sim.settle(db.get(KEY), 5000)
    for (const named of nodes) {
      const context = encodeContext({ ...decodeContext(read.context), coordinator: named.id })
      sim.network.delivered.length = 0
      await sim.settle(db.put(KEY, `by ${named.id}`, { context, w: 3 }), 5000)
      expect(coordinations(sim).map((r) => r.to)).toEqual([named.id])
      // Every replica holds the new value alone (it superseded what the context saw).
      expect(new Set(held(sim, nodes).map((v) => JSON.stringify(v)))).toEqual(new Set([JSON.stringify([`by ${named.id}`])]))
      read = await sim.settle(db.get(KEY), 5000)
    }
  }, 30_000)

  it('coordinations to one node that wait while one is in flight travel together, each minted on its own', async () => {
    const { sim, db } = await trio()
    sim.network.delivered.length = 0
    const keys = Array.from({ length: 40 }, (_, i) => `many-${i}`)
    await sim.settle(Promise.all(keys.map((key) => db.put(key, key, { w: 3 }))), 5000)
    const requests = coordinations(sim).length
    expect(requests).toBeGreaterThanOrEqual(3)
    expect(requests).toBeLessThan(keys.length / 2)
    for (const key of keys) expect((await sim.settle(db.get(key, { r: 3 }), 5000)).siblings).toEqual([key])
  }, 30_000)

  it('does not mint a second version elsewhere when the coordinator does not answer (the write may have landed)', async () => {
    const { sim, db, byRank } = await trio()
    const read = await sim.settle(db.get(KEY), 5000)
    const [first] = byRank
    sim.pause(first)
    sim.network.delivered.length = 0
    const context = encodeContext({ ...decodeContext(read.context), coordinator: first.id })
    const err = await sim.settle(db.put(KEY, 'x', { context, w: 2, timeoutMs: 500 }).catch((e: unknown) => e), 5000)
    expect(err).toMatchObject({ code: 'ZH_QUORUM_NOT_MET' })
    expect((err as { replicas: unknown[] }).replicas).toEqual([expect.objectContaining({ id: first.id, cause: 'timeout' })])
    // Asked once (the pause holds the request), and nobody else minted.
    expect(coordinations(sim).map((r) => r.to)).toEqual([])
    sim.resume(first)
    await sim.run(100)
    expect(coordinations(sim).map((r) => r.to)).toEqual([first.id])
  }, 30_000)

  it('a replica silent for half the deadline gets its copy as a hint; the write answers at W meanwhile', async () => {
    const { sim, db, byRank } = await trio()
    const [, , third] = byRank
    sim.pause(third)
    const started = sim.now
    let answeredAt = -1
    void db.put(KEY, 'x', { w: 2, timeoutMs: 2000 }).then(() => (answeredAt = sim.now - started))
    expect(await sim.runUntil(() => answeredAt >= 0, 5000)).toBe(true)
    expect(answeredAt).toBeLessThan(100)
    // With 3 nodes there is no spare: a live replica keeps the hint, at half the deadline (1000 ms),
    // well before the silent store gives up at 2000 ms.
    const hinted = () => byRank.slice(0, 2).some((n) => (n.node!.hints!.counts()[third.id] ?? 0) > 0)
    expect(await sim.runUntil(hinted, 5000)).toBe(true)
    expect(sim.now - started).toBeGreaterThanOrEqual(1000)
    expect(sim.now - started).toBeLessThan(1800)
    // Once it is back, the hint is delivered and the replicas agree.
    sim.resume(third)
    expect(await sim.runUntil(() => readKey(sim, byRank[0].node!.view!, KEY).replicas.get(third.id) !== undefined && !byRank.some((n) => n.node!.hints!.counts()[third.id]), 10_000)).toBe(true)
    expect(held(sim, byRank)).toEqual([['x'], ['x'], ['x']])
  }, 30_000)

  it('read repair sends the synced set to the replica that answered with an older version, and only to it', async () => {
    // Hints wait an hour here: what brings the restarted replica up to date is the read.
    const { sim, db, byRank } = await trio({ hintIntervalMs: 3_600_000 })
    await sim.settle(db.put(KEY, 'old', { w: 3 }), 5000)
    const stale = byRank[2]
    sim.crash(stale, 'kill')
    const read = await sim.settle(db.get(KEY), 5000)
    await sim.settle(db.put(KEY, 'new', { context: read.context, w: 2 }), 5000)
    // The write keeps trying its third store until its deadline: let it give up first.
    await sim.run(2500)
    sim.start(stale)
    expect(await sim.runUntil(() => stale.node?.view !== undefined && db.isUp(stale.id), 20_000)).toBe(true)
    expect(held(sim, byRank)).toEqual([['new'], ['new'], ['old']])
    sim.network.delivered.length = 0
    const res = await sim.settle(db.get(KEY, { r: 3 }), 5000)
    expect(res.siblings).toEqual(['new'])
    expect(await sim.runUntil(() => JSON.stringify(held(sim, byRank)) === JSON.stringify([['new'], ['new'], ['new']]), 2000)).toBe(true)
    expect(sim.network.delivered.filter((r) => r.path === Paths.store).map((r) => r.to)).toEqual([stale.id])
  }, 30_000)

  it('a read asks R replicas, and the third once one of them has not answered for 50 ms', async () => {
    const { sim, db, byRank } = await trio()
    await sim.settle(db.put(KEY, 'v', { w: 3 }), 5000)
    await sim.run(200)
    sim.network.delivered.length = 0
    await sim.settle(db.get(KEY, { r: 2 }), 5000)
    const reads = () => sim.network.delivered.filter((r) => r.path === Paths.read).map((r) => r.to).sort()
    expect(reads()).toEqual([byRank[0].id, byRank[1].id].sort())
    // The first replica is paused: the read asks the third after 50 ms and answers then, not at its deadline.
    sim.pause(byRank[0])
    sim.network.delivered.length = 0
    const started = sim.now
    let answeredAt = -1
    void db.get(KEY, { r: 2, timeoutMs: 2000 }).then((r) => {
      expect(r.siblings).toEqual(['v'])
      answeredAt = sim.now - started
    })
    expect(await sim.runUntil(() => answeredAt >= 0, 5000)).toBe(true)
    expect(answeredAt).toBeGreaterThanOrEqual(50)
    expect(answeredAt).toBeLessThan(100)
    expect(reads()).toEqual([byRank[1].id, byRank[2].id].sort())
  }, 30_000)

  it('fails a read with each replica\'s cause when R cannot be met', async () => {
    const { sim, db, byRank } = await trio()
    sim.crash(byRank[0], 'kill')
    sim.pause(byRank[1])
    const err = await sim.settle(db.get(KEY, { r: 2, timeoutMs: 500 }).catch((e: unknown) => e), 5000)
    expect(err).toMatchObject({ code: 'ZH_QUORUM_NOT_MET' })
    const causes = Object.fromEntries((err as { replicas: { id: string; cause: string }[] }).replicas.map((r) => [r.id, r.cause]))
    expect(causes).toEqual({ [byRank[0].id]: 'refused', [byRank[1].id]: 'timeout' })
  }, 30_000)

  it('a put whose coordinator holds a concurrent value hands back the caller\'s context, not one that covers the unseen value', async () => {
    const { sim, db } = await trio()
    await sim.settle(db.put(KEY, 'theirs', { w: 3 }), 5000)
    const mine = await sim.settle(db.put(KEY, 'mine', { w: 3 }), 5000)
    expect(mine.conflict).toBe(true)
    expect([...mine.siblings].sort()).toEqual(['mine', 'theirs'])
    expect(decodeContext(mine.context).vector).toEqual([])
    // Writing on with that context keeps 'theirs' (a sibling) instead of silently replacing it.
    await sim.settle(db.put(KEY, 'mine-2', { context: mine.context, w: 3 }), 5000)
    expect((await sim.settle(db.get(KEY, { r: 3 }), 5000)).siblings).toContain('theirs')
  }, 30_000)
})
