// The gossip scenario of the simulator: a cluster of real StorageNodes (the real Gossip, its phi
// accrual detectors, seeds, the ring each node derives) with the node's gossip defaults, on the
// simulated network and virtual time, everything else (anti-entropy, hints, reaping) idle. It measures
// what gossip promises: how fast a cluster forms, how fast a joiner becomes known to every node, how
// fast every node holds a dead one down, how many live peers are held down by mistake, and the bytes
// gossip costs.
import { nodeDefaults } from '@zerohop/server'
import { SimCluster, type SimNode } from './cluster.js'

export interface GossipScenarioOptions {
  nodes: number
  seed: number
  /** Rounds (gossip intervals) of steady state watched for false suspicions. */
  steadyRounds: number
  /** Chance that a message is lost, during the steady rounds. */
  loss?: number
}

export interface GossipFigures {
  nodes: number
  /** Virtual ms until every founding node served. */
  formMs: number
  /** Virtual ms from a join's start until every node knew the joiner. */
  joinKnownMs: number
  /** Virtual ms from a crash until the first, and the last, live node held the dead one down. */
  deathFirstMs: number
  deathAllMs: number
  /** Times a node held a live peer down during the steady rounds (each episode once). */
  falseSuspicions: number
  /** Gossip bytes (both ways) per node per round, in the steady rounds. */
  bytesPerNodeRound: number
  /** Real ms the scenario took. */
  ms: number
}

/** How often the scenario looks at every node's detectors (virtual ms). */
const LOOK_MS = 100

export async function gossipScenario(o: GossipScenarioOptions): Promise<GossipFigures> {
  const started = performance.now()
  const sim = new SimCluster(o.seed)
  const round = nodeDefaults.gossipIntervalMs
  const ids = Array.from({ length: o.nodes }, (_, i) => `n${i + 1}`)
  const seeds = ids.slice(0, 3).map((id) => `http://${id}.sim:7000`)
  // The gossip of a real node; the rest of it idle, and a small ring so that building it stays cheap.
  const options = {
    partitions: 64, gossipIntervalMs: round, phiThreshold: nodeDefaults.phiThreshold, seedProbability: nodeDefaults.seedProbability,
    aeIntervalMs: 3_600_000, hintIntervalMs: 3_600_000, reapIntervalMs: 3_600_000, seedGraceMs: 2000,
  }
  const founders: SimNode[] = ids.map((id) => sim.define(id, { ...options, seeds: ids.map((x) => `http://${x}.sim:7000`) }, false))
  for (const s of founders) sim.scheduler.at(sim.scheduler.now + sim.random.next() * round, sim.owner, () => sim.start(s))
  if (!(await sim.runUntil(() => founders.every((s) => s.node?.view !== undefined), 120_000))) throw new Error(`${o.nodes} nodes did not form a cluster within 120 s`)
  const formMs = sim.now
  // Settle: every node has heard from every other.
  await sim.run(10 * round)

  // Steady state: count the live peers held down.
  const before = gossipBytes(sim)
  const lossBefore = sim.network.faults
  if (o.loss) sim.network.faults = { ...lossBefore, loss: o.loss }
  let falseSuspicions = 0
  const down = new Set<string>()
  const steadyEnd = sim.now + o.steadyRounds * round
  while (sim.now < steadyEnd) {
    await sim.run(LOOK_MS)
    for (const s of founders) {
      for (const peer of s.node!.gossip!.down()) {
        const k = `${s.id}>${peer}`
        if (!down.has(k)) falseSuspicions++
        down.add(k)
      }
    }
    for (const k of [...down]) {
      const [observer, peer] = k.split('>')
      if (sim.nodes.get(observer)!.node!.gossip!.isUp(peer)) down.delete(k)
    }
  }
  const bytesPerNodeRound = (gossipBytes(sim) - before) / o.nodes / o.steadyRounds
  sim.network.faults = lossBefore

  // A join through one node: until every node knows the joiner.
  const joinStart = sim.now
  const joiner = sim.define('joiner', { ...options, seeds, join: founders[0].url }, false)
  sim.start(joiner)
  const everyone = () => [...founders, joiner]
  const known = await sim.runUntil(() => everyone().every((s) => s.node?.gossip?.states.has('joiner')), 120_000)
  const joinKnownMs = known ? sim.now - joinStart : Infinity
  await sim.run(5 * round)

  // A crash: until the first and the last live node hold it down.
  const victim = founders[founders.length - 1]
  const live = everyone().filter((s) => s !== victim)
  sim.crash(victim, 'kill')
  const crashAt = sim.now
  let deathFirstMs = Infinity
  let deathAllMs = Infinity
  while (sim.now - crashAt < 120_000 && deathAllMs === Infinity) {
    await sim.run(LOOK_MS)
    const holding = live.filter((s) => !s.node!.gossip!.isUp(victim.id)).length
    if (holding > 0 && deathFirstMs === Infinity) deathFirstMs = sim.now - crashAt
    if (holding === live.length) deathAllMs = sim.now - crashAt
  }
  return { nodes: o.nodes, formMs, joinKnownMs, deathFirstMs, deathAllMs, falseSuspicions, bytesPerNodeRound, ms: performance.now() - started }
}

function gossipBytes(sim: SimCluster): number {
  return sim.network.paths.get('/v1/gossip')?.bytes ?? 0
}
