// The simulator itself, and scenarios it runs on purpose: a seed replays exactly; the seeds that
// once caught a bug stay in the suite; the scheduler and the network keep their contracts.
import { describe, expect, it } from 'vitest'
import { TransportError } from '@zerohop/core'
import { SimCluster, type SimNode } from './cluster.js'
import { Owner, Scheduler } from './scheduler.js'
import { simulate } from './simulation.js'
import { regressions } from './regressions.js'

describe('a seed', () => {
  it('replays exactly: the same event log, byte for byte', async () => {
    const a = await simulate(11, { keepLog: true })
    const b = await simulate(11, { keepLog: true })
    expect(a.log!.length).toBeGreaterThan(1000)
    expect(b.log).toEqual(a.log)
    expect(b.digest).toBe(a.digest)
    // Another seed is another run.
    expect((await simulate(12)).digest).not.toBe(a.digest)
  }, 60_000)
})

describe('regression seeds', () => {
  for (const r of regressions) {
    it(`seed ${r.seed}: ${r.caught}`, async () => {
      const result = await simulate(r.seed)
      expect(result.violations).toEqual([])
    }, 60_000)
  }
})

describe('the scheduler', () => {
  it('runs events in time order, ties in the order scheduled, on virtual time', async () => {
    const s = new Scheduler()
    const o = new Owner('o')
    const clock = s.clock(o)
    const seen: string[] = []
    const t0 = clock.now()
    clock.setTimeout(() => seen.push(`b@${clock.now() - t0}`), 20)
    clock.setTimeout(() => seen.push(`a@${clock.now() - t0}`), 10)
    clock.setTimeout(() => seen.push(`c@${clock.now() - t0}`), 20)
    const cancelled = clock.setTimeout(() => seen.push('never'), 5)
    clock.clearTimeout(cancelled)
    const started = performance.now()
    await s.run(s.now + 60_000)
    expect(seen).toEqual(['a@10', 'b@20', 'c@20'])
    expect(performance.now() - started).toBeLessThan(1000)
  })

  it('holds a paused owner\'s events until it resumes, and drops a dead one\'s', async () => {
    const s = new Scheduler()
    const paused = new Owner('paused')
    const dead = new Owner('dead')
    const seen: string[] = []
    s.clock(paused).setTimeout(() => seen.push(`paused ran at ${s.now}`), 10)
    s.clock(dead).setTimeout(() => seen.push('dead ran'), 10)
    s.pause(paused)
    dead.dead = true
    await s.run(s.now + 1000)
    expect(seen).toEqual([])
    const resumedAt = s.now
    s.resume(paused)
    await s.run(s.now + 1000)
    expect(seen).toEqual([`paused ran at ${resumedAt}`])
  })
})

describe('the simulated network', () => {
  it('refuses a request to an address where nothing listens (certainly not delivered), and loses one across a cut (maybe delivered)', async () => {
    const sim = new SimCluster(1)
    const owner = new Owner('c')
    const t = sim.network.transport('c', owner)
    const refused = sim.settle(t.get('http://nobody.sim:7000', '/v1/health', { timeoutMs: 500 }), 5000)
    await expect(refused).rejects.toSatisfy((e: TransportError) => e instanceof TransportError && e.kind === 'refused' && e.delivered === false)
    sim.network.listen('http://n.sim:7000', 'n', new Owner('n'), async () => ({ status: 200, body: 'hi' }), 1024)
    expect((await sim.settle(t.get('http://n.sim:7000', '/x'), 5000)).body.toString()).toBe('hi')
    sim.network.cut('c', 'n')
    const lost = sim.settle(t.get('http://n.sim:7000', '/x', { timeoutMs: 500 }), 5000)
    await expect(lost).rejects.toSatisfy((e: TransportError) => e instanceof TransportError && e.kind === 'timeout' && e.delivered === true)
    sim.network.uncut('c', 'n')
    expect((await sim.settle(t.get('http://n.sim:7000', '/x'), 5000)).status).toBe(200)
  })
})

/** Four real nodes on the simulated network, serving. */
async function fourNodes(seed: number): Promise<{ sim: SimCluster; nodes: SimNode[] }> {
  const sim = new SimCluster(seed)
  const ids = ['n1', 'n2', 'n3', 'n4']
  const seeds = ids.map((id) => `http://${id}.sim:7000`)
  const nodes = ids.map((id) => sim.define(id, { seeds }, false))
  for (const n of nodes) sim.start(n)
  expect(await sim.runUntil(() => nodes.every((n) => n.node?.view !== undefined), 30_000)).toBe(true)
  return { sim, nodes }
}

describe('scenarios', () => {
  it('a removal made by a node that missed the removed node\'s latest entries stands', async () => {
    const { sim, nodes } = await fourNodes(4)
    const [n1, n2, n3, n4] = nodes
    // n3 is cut off while n1 restarts twice: the others hear n1's entry two versions on.
    for (const o of [n1, n2, n4]) {
      sim.network.cut('n3', o.id)
      sim.network.cut(o.id, 'n3')
    }
    for (let i = 0; i < 2; i++) {
      sim.crash(n1, 'kill')
      sim.start(n1)
      expect(await sim.runUntil(() => n1.node?.view !== undefined, 30_000)).toBe(true)
      await sim.run(3000)
    }
    const latest = n2.node!.gossip!.states.get('n1')!.version
    expect(latest).toBeGreaterThan(n3.node!.gossip!.states.get('n1')!.version + 1)
    // n1 dies for good; n3, which holds everyone down, removes it with the entry it knows.
    sim.crash(n1, 'kill')
    n1.departed = true
    expect(await sim.runUntil(() => !n3.node!.gossip!.isUp('n1'), 30_000)).toBe(true)
    expect(n3.node!.remove('n1').changed).toBe(true)
    for (const o of [n2, n4]) {
      sim.network.uncut('n3', o.id)
      sim.network.uncut(o.id, 'n3')
    }
    // Every member takes the removal, re-replicates n1's partitions, and the change completes.
    const done = () => [n2, n3, n4].every((s) => { const e = s.node!.gossip!.states.get('n1')!; return e.removed && e.status === 'left' && !s.node!.view!.transition })
    expect(await sim.runUntil(done, 60_000)).toBe(true)
  }, 60_000)

  it('a node that completes its leave while nobody can hear it does not stop until a member has heard', async () => {
    const { sim, nodes } = await fourNodes(3)
    const [n1, n2, n3, n4] = nodes
    const others = [n1, n2, n3]
    n4.node!.leave()
    let left = false
    void n4.node!.left.then(() => (left = true))
    // Every other member pulls what it gains and says it is ready; then n4's messages (its requests
    // and its answers) are lost, while it still hears the others' gossip: it learns that they are
    // ready and completes its leave where nobody hears it.
    const ready = () => others.every((s) => { const v = s.node!.gossip!.view; return v.transition && s.node!.gossip!.self.ready === v.next.epoch })
    expect(await sim.runUntil(ready, 30_000)).toBe(true)
    for (const o of others) sim.network.cut('n4', o.id)
    expect(await sim.runUntil(() => n4.node!.gossip!.self.status === 'left', 30_000)).toBe(true)
    await sim.run(20_000)
    expect(left).toBe(false)
    expect(others.every((s) => s.node!.gossip!.states.get('n4')!.status === 'leaving')).toBe(true)
    // Once n4 can be heard, one member takes its entry, `left` resolves, and the change completes everywhere.
    for (const o of others) sim.network.uncut('n4', o.id)
    expect(await sim.runUntil(() => left, 10_000)).toBe(true)
    const settled = () => others.every((s) => s.node!.gossip!.states.get('n4')!.status === 'left' && !s.node!.view!.transition)
    expect(await sim.runUntil(settled, 30_000)).toBe(true)
  }, 60_000)
})
