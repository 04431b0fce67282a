// The nemesis: faults drawn from the seed while the workload runs. Partitions (one node isolated, the
// cluster split in two, one-way cuts), network weather (loss, delay, duplication; reordering follows
// from independent delays), process crashes (a kill keeps the page cache; a power loss keeps only
// what was synced), pauses (SIGSTOP), disk loss, and membership changes (joins, leaves, removes).
// Each fault ends by itself after a while; heal() ends those still under way.
//
// Zerohop's promise holds while, for every acknowledged write, one copy survives: so the faults that
// destroy data (a power loss on a node without --fsync, a lost disk, a removed node) hit at most
// `lossy` nodes per run (1 with W=2), and at most `maxDown` nodes are down or paused at once.
import type { NodeOptions } from '@zerohop/server'
import type { SimCluster, SimNode } from './cluster.js'
import type { NetworkFaults } from './network.js'

export interface NemesisOptions {
  /** Nodes crashed, paused or without a disk at one time, at most. */
  maxDown: number
  /** Nodes whose data may be destroyed in the run (power loss without fsync, disk loss, remove). */
  lossy: number
  /** Virtual ms between two faults: uniform in [min, max]. */
  everyMs: [number, number]
  /** Nodes that may join during the run. */
  joins: number
  /** Whether a member may leave (when at least four are normal). */
  leaves: boolean
  /** Options of the nodes that join (the cluster's seeds, secret, quorums). */
  nodeOptions: Partial<NodeOptions>
  /** Ids of the clients (partitions put each on one side). */
  clients: string[]
}

type Kind = 'isolate' | 'split' | 'one-way' | 'weather' | 'kill' | 'power' | 'pause' | 'disk' | 'join' | 'leave' | 'remove'

const KINDS: [Kind, number][] = [
  ['isolate', 3],
  ['split', 2],
  ['one-way', 2],
  ['weather', 3],
  ['kill', 3],
  ['power', 2],
  ['pause', 2],
  ['disk', 1],
  ['join', 1],
  ['leave', 1],
  ['remove', 1],
]
const TOTAL = KINDS.reduce((a, [, w]) => a + w, 0)

export class Nemesis {
  /** What was done, in order (the run's report). */
  readonly applied: string[] = []
  readonly #sim: SimCluster
  readonly #o: NemesisOptions
  /** Undo actions of the faults under way (a partition's cuts, a restart, a resume). */
  readonly #undo = new Map<number, () => void>()
  #next = 0
  #stopAt = 0
  #lossy = 0
  #joins = 0
  #joined = 0
  /** Nodes down, paused, or being removed. */
  readonly #down = new Set<string>()
  /** Removes and leaves under way: their loops end with the run. */
  readonly #pending = new Set<Promise<void>>()

  constructor(sim: SimCluster, options: NemesisOptions) {
    this.#sim = sim
    this.#o = options
  }

  /** Draw a fault every few seconds until virtual time `until` (ms since the run began). */
  start(until: number): void {
    this.#stopAt = until
    this.#schedule()
  }

  #schedule(): void {
    const sim = this.#sim
    const [lo, hi] = this.#o.everyMs
    const at = sim.now + sim.between(lo, hi)
    if (at >= this.#stopAt) return
    sim.scheduler.at(sim.scheduler.now + (at - sim.now), sim.owner, () => {
      this.#one()
      this.#schedule()
    })
  }

  #say(what: string): void {
    this.applied.push(what)
    this.#sim.log(`nemesis ${what}`)
  }

  /** A fault that ends by itself after `ms` (or at heal()). */
  #lasting(ms: number, undo: () => void): void {
    const id = this.#next++
    this.#undo.set(id, undo)
    this.#sim.scheduler.at(this.#sim.scheduler.now + ms, this.#sim.owner, () => {
      const u = this.#undo.get(id)
      this.#undo.delete(id)
      u?.()
    })
  }

  /** Members that are up (running, not paused, not leaving or removed). */
  #up(): SimNode[] {
    return this.#sim.live().filter((s) => !this.#down.has(s.id) && !s.owner?.paused && s.started)
  }

  #pickKind(): Kind {
    let r = this.#sim.random.next() * TOTAL
    for (const [k, w] of KINDS) {
      if (r < w) return k
      r -= w
    }
    return 'kill'
  }

  #one(): void {
    const sim = this.#sim
    const kind = this.#pickKind()
    const up = this.#up()
    const canDown = this.#down.size < this.#o.maxDown && up.length >= 3
    const ids = () => [...sim.nodes.values()].filter((s) => !s.departed).map((s) => s.id)
    const lasting = () => sim.between(500, 8000)
    switch (kind) {
      case 'isolate': {
        if (up.length === 0) return
        const victim = sim.pick(up).id
        const others = [...ids(), ...this.#o.clients].filter((x) => x !== victim)
        this.#partition(`isolate ${victim}`, [victim], others, lasting())
        return
      }
      case 'split': {
        const all = [...ids(), ...this.#o.clients]
        const side = all.filter(() => sim.chance(0.5))
        if (side.length === 0 || side.length === all.length) return
        this.#partition(`split ${side.join(',')} | ${all.filter((x) => !side.includes(x)).join(',')}`, side, all.filter((x) => !side.includes(x)), lasting())
        return
      }
      case 'one-way': {
        const all = ids()
        if (all.length < 2) return
        const from = sim.pick(all)
        const to = sim.pick(all.filter((x) => x !== from))
        sim.network.cut(from, to)
        this.#say(`one-way ${from} -/-> ${to}`)
        this.#lasting(lasting(), () => {
          sim.network.uncut(from, to)
          sim.log(`nemesis heal one-way ${from} -/-> ${to}`)
        })
        return
      }
      case 'weather': {
        const w: NetworkFaults = {
          loss: sim.chance(0.5) ? sim.random.next() * 0.1 : 0,
          duplicate: sim.chance(0.5) ? sim.random.next() * 0.05 : 0,
          delay: { min: 0.2, max: 1 + sim.random.next() * 20, slow: sim.random.next() * 0.1, slowMs: sim.between(50, 1500) },
        }
        sim.network.faults = w
        this.#say(`weather loss ${w.loss.toFixed(3)} duplicate ${w.duplicate.toFixed(3)} delay ${w.delay.min}-${w.delay.max.toFixed(1)} ms, ${(w.delay.slow * 100).toFixed(1)}% slow by up to ${w.delay.slowMs} ms`)
        this.#lasting(sim.between(2000, 15000), () => {
          sim.network.faults = { loss: 0, duplicate: 0, delay: { min: 0.2, max: 1, slow: 0, slowMs: 0 } }
          sim.log('nemesis calm')
        })
        return
      }
      case 'kill':
      case 'power': {
        if (!canDown) return
        const victim = sim.pick(up)
        const lossy = kind === 'power' && !victim.fsync
        if (lossy && this.#lossy >= this.#o.lossy) return
        if (lossy) this.#lossy++
        this.#down.add(victim.id)
        this.#say(`${kind} ${victim.id}${lossy ? ' (unsynced writes may be lost)' : ''}`)
        sim.crash(victim, kind)
        this.#lasting(sim.between(300, 10_000), () => this.#restart(victim))
        return
      }
      case 'pause': {
        if (!canDown) return
        const victim = sim.pick(up)
        this.#down.add(victim.id)
        this.#say(`pause ${victim.id}`)
        sim.pause(victim)
        this.#lasting(sim.between(300, 8000), () => {
          sim.resume(victim)
          this.#down.delete(victim.id)
        })
        return
      }
      case 'disk': {
        if (!canDown || this.#lossy >= this.#o.lossy) return
        const victim = sim.pick(up)
        this.#lossy++
        this.#down.add(victim.id)
        this.#say(`disk lost ${victim.id}`)
        sim.loseDisk(victim)
        this.#lasting(sim.between(300, 5000), () => this.#restart(victim))
        return
      }
      case 'join': {
        if (this.#joins >= this.#o.joins || up.length === 0) return
        this.#joins++
        const id = `j${++this.#joined}`
        const through = sim.pick(up)
        const joiner = sim.define(id, { ...this.#o.nodeOptions, join: through.url }, sim.chance(0.5))
        this.#say(`join ${id} through ${through.id}${joiner.fsync ? ' (fsync)' : ''}`)
        sim.start(joiner)
        return
      }
      case 'leave': {
        if (!this.#o.leaves) return
        const normal = up.filter((s) => s.node?.gossip?.self.status === 'normal')
        if (normal.length < 4) return
        const victim = sim.pick(normal)
        let answer
        try {
          answer = victim.node!.leave()
        } catch (err) {
          sim.log(`nemesis leave ${victim.id} refused: ${(err as Error).message}`)
          return
        }
        if (!answer.changed) return
        this.#down.add(victim.id)
        this.#say(`leave ${victim.id}`)
        const node = victim.node!
        const done = node.left.then(async () => {
          if (victim.node !== node) return
          victim.departed = true
          await sim.stop(victim)
          sim.log(`nemesis ${victim.id} has left and stopped`)
        })
        this.#track(done)
        return
      }
      case 'remove': {
        if (!canDown || this.#lossy >= this.#o.lossy) return
        const members = [...sim.nodes.values()].filter((s) => !s.departed && s.node?.gossip?.self.status === 'normal')
        if (members.length < 4) return
        const victim = sim.pick(up.filter((s) => members.includes(s)))
        if (!victim) return
        this.#lossy++
        this.#down.add(victim.id)
        this.#say(`remove ${victim.id} (crashed for good, then removed)`)
        sim.crash(victim, 'kill')
        victim.departed = true
        this.#track(this.#remove(victim))
        return
      }
    }
  }

  #track(p: Promise<void>): void {
    this.#pending.add(p)
    void p.finally(() => this.#pending.delete(p))
  }

  /** Ask a live member to remove a dead one, once a second until one agrees it is down. */
  async #remove(victim: SimNode): Promise<void> {
    const sim = this.#sim
    for (let tries = 0; tries < 300; tries++) {
      await new Promise<void>((r) => sim.scheduler.at(sim.scheduler.now + 1000, sim.owner, r))
      const asked = this.#up().filter((s) => s.node?.view)
      if (asked.length === 0) continue
      const by = sim.pick(asked)
      try {
        by.node!.remove(victim.id)
        sim.log(`nemesis ${by.id} removed ${victim.id}`)
        return
      } catch (err) {
        sim.log(`nemesis remove ${victim.id} through ${by.id} refused: ${(err as Error).message}`)
      }
    }
  }

  #partition(what: string, a: string[], b: string[], ms: number): void {
    const sim = this.#sim
    for (const x of a) for (const y of b) {
      sim.network.cut(x, y)
      sim.network.cut(y, x)
    }
    this.#say(what)
    this.#lasting(ms, () => {
      for (const x of a) for (const y of b) {
        sim.network.uncut(x, y)
        sim.network.uncut(y, x)
      }
      sim.log(`nemesis heal ${what}`)
    })
  }

  #restart(victim: SimNode): void {
    this.#down.delete(victim.id)
    if (victim.departed || victim.node) return
    // A machine that was down may come back with its clock set otherwise.
    if (this.#sim.chance(0.2)) victim.skewMs = this.#sim.between(-3000, 3000)
    this.#sim.log(`nemesis restart ${victim.id}`)
    this.#sim.start(victim)
  }

  /** End every fault under way: links heal, paused nodes resume, crashed ones restart. */
  heal(): void {
    const undo = [...this.#undo.values()]
    this.#undo.clear()
    for (const u of undo) u()
    this.#sim.network.heal()
    for (const s of this.#sim.nodes.values()) {
      this.#sim.resume(s)
      if (!s.node && !s.departed) this.#restart(s)
    }
    this.#sim.log('nemesis healed everything')
  }

  /** Removes and leaves still under way. */
  get pending(): number {
    return this.#pending.size
  }
}
