// A simulated cluster: real StorageNodes (gossip, failure detector, hints, handoff, anti-entropy,
// reaper) over MemoryStores on modelled disks, real SDK clients, one SimNetwork and one Scheduler. The
// driver (simulation.ts) is the only caller of run(): nodes start, crash and restart as events, and
// everything they do runs on virtual time. Every random draw comes from the run's seed, and the event
// log records what happened, in order.
import { createHash } from 'node:crypto'
import { seededRandom, type Random } from '@zerohop/core'
import { connect, type Client, type ClientOptions } from '@zerohop/client'
import { MemoryDisk, MemoryStore, StorageNode, type NodeOptions } from '@zerohop/server'
import pino from 'pino'
import { SimNetwork } from './network.js'
import { Owner, Scheduler, EPOCH_MS } from './scheduler.js'

/** Node options of every simulated node: the defaults scaled down so that a run's minutes are eventful. */
export const simNodeOptions: Partial<NodeOptions> = {
  n: 3,
  partitions: 16,
  gossipIntervalMs: 1000,
  phiThreshold: 8,
  seedGraceMs: 2000,
  discoveryIntervalMs: 200,
  hintIntervalMs: 1000,
  hintTtlMs: 15_000,
  tombstoneGraceMs: 25_000,
  reapIntervalMs: 1000,
  aeIntervalMs: 2000,
  dropDelayMs: 5000,
  handoffPageItems: 50,
  timeoutMs: 2000,
  logLevel: 'warn',
}

export interface SimNode {
  id: string
  url: string
  disk: MemoryDisk
  fsync: boolean
  /** The current run (undefined while crashed or stopped). */
  node?: StorageNode
  owner?: Owner
  /** Its start has finished (it listens; it may still be discovering its seeds). */
  started: boolean
  /** Options it was first started with (restarts reuse them, without --join). */
  options: NodeOptions
  /** It left or was removed, or its start was refused: it never starts again. */
  departed: boolean
  /** How many times it was started. */
  runs: number
  /** Its clock's offset from virtual time, from its next start on. */
  skewMs: number
}

export interface SimClient {
  id: string
  db: Client<any>
  owner: Owner
  routing: 'zero-hop' | 'load-balancer'
}

export class SimCluster {
  readonly scheduler = new Scheduler()
  readonly random: Random
  readonly network: SimNetwork
  readonly nodes = new Map<string, SimNode>()
  /** The owner of the simulation's own events (faults, the workload's pacing). */
  readonly owner = new Owner('sim')
  readonly #log: string[] = []
  readonly #hash = createHash('sha256')
  #lines = 0
  /** Keep the lines of the log (for printing a replay); the hash covers them either way. */
  readonly keepLog: boolean

  constructor(readonly seed: number, options: { keepLog?: boolean } = {}) {
    this.random = seededRandom(seed)
    this.keepLog = options.keepLog ?? false
    this.network = new SimNetwork(this.scheduler, seededRandom((seed ^ 0x5bd1e995) >>> 0), (line) => this.log(line))
  }

  log(line: string): void {
    const l = `${this.scheduler.now - EPOCH_MS} ${line}`
    this.#hash.update(l + '\n')
    this.#lines++
    if (this.keepLog) this.#log.push(l)
  }

  get lines(): number {
    return this.#lines
  }

  get logLines(): readonly string[] {
    return this.#log
  }

  /** SHA-256 of the event log: equal for two runs of a seed when the simulation is deterministic. */
  digest(): string {
    return this.#hash.copy().digest('hex')
  }

  /** A random integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.random.next() * n)
  }

  /** A random integer in [lo, hi]. */
  between(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1)
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.int(xs.length)]
  }

  chance(p: number): boolean {
    return this.random.next() < p
  }

  /** Virtual milliseconds since the run began. */
  get now(): number {
    return this.scheduler.now - EPOCH_MS
  }

  /** Run the simulation for `ms` of virtual time. */
  run(ms: number): Promise<boolean> {
    return this.scheduler.run(this.scheduler.now + ms)
  }

  /** Run until `done()` holds (checked after every event) or `limitMs` of virtual time pass; whether it held. */
  runUntil(done: () => boolean, limitMs: number): Promise<boolean> {
    return this.scheduler.run(this.scheduler.now + limitMs, done)
  }

  /** Run until `p` settles, or throw once `limitMs` of virtual time pass. */
  async settle<T>(p: Promise<T>, limitMs: number): Promise<T> {
    let result: { ok: true; value: T } | { ok: false; error: unknown } | undefined
    p.then((value) => (result = { ok: true, value }), (error) => (result = { ok: false, error }))
    await this.runUntil(() => result !== undefined, limitMs)
    if (!result) throw new Error(`did not settle within ${limitMs} ms of virtual time`)
    if (!result.ok) throw result.error
    return result.value
  }

  define(id: string, options: Partial<NodeOptions>, fsync: boolean): SimNode {
    const url = `http://${id}.sim:7000`
    const sim: SimNode = {
      id, url, disk: new MemoryDisk(), fsync, departed: false, runs: 0, skewMs: 0, started: false,
      options: { ...simNodeOptions, ...options, id, advertise: url, data: `/sim/${id}`, fsync } as NodeOptions,
    }
    this.nodes.set(id, sim)
    return sim
  }

  /**
   * Start (or restart) a node as a new process: a new owner for its events, its disk as the crash
   * left it. Returns at once; the start runs on virtual time (see `started`).
   */
  start(sim: SimNode): void {
    if (sim.node || sim.departed) return
    const owner = new Owner(`${sim.id}#${sim.runs}`)
    owner.skewMs = sim.skewMs
    const options = sim.runs > 0 ? { ...sim.options, join: undefined } : sim.options
    sim.runs++
    const logger = pino({ level: sim.options.logLevel ?? 'warn', base: { node: sim.id }, timestamp: false }, { write: (s: string) => this.log(`log ${s.trimEnd()}`) })
    const node: StorageNode = new StorageNode(options, {
      store: new MemoryStore({ disk: sim.disk, sync: sim.fsync }),
      logger,
      clock: this.scheduler.clock(owner),
      random: seededRandom(this.int(2 ** 31)),
      transport: this.network.transport(sim.id, owner),
      serve: async (handler, url) => this.network.listen(url, sim.id, owner, handler, node.options.maxBodyBytes),
    })
    sim.node = node
    sim.owner = owner
    sim.started = false
    this.log(`start ${sim.id} run ${sim.runs}${sim.skewMs ? ` skew ${sim.skewMs} ms` : ''}`)
    node.start().then(() => {
      if (sim.node === node) sim.started = true
    }, (err: Error) => {
      if (sim.node !== node || owner.dead) return
      this.log(`start ${sim.id} refused: ${err.message}`)
      owner.dead = true
      sim.node = undefined
      sim.owner = undefined
      // A node that refuses to start (it left, or was removed) is not started again.
      sim.departed = true
      this.network.unlisten(sim.url)
    })
  }

  /** Kill the node's process: its timers and requests in flight vanish; with `power`, so do its unsynced writes. */
  crash(sim: SimNode, how: 'kill' | 'power'): void {
    if (!sim.node || !sim.owner) return
    sim.owner.dead = true
    this.network.unlisten(sim.url)
    if (how === 'power') {
      const unsynced = sim.disk.unsynced
      const kept = this.int(unsynced + 1)
      sim.disk.powerLoss(kept)
      this.log(`crash ${sim.id} power loss: ${unsynced - kept} of ${unsynced} unsynced writes lost`)
    } else {
      sim.disk.crash()
      this.log(`crash ${sim.id} kill`)
    }
    sim.node = undefined
    sim.owner = undefined
    sim.started = false
  }

  /** Crash, and replace the disk with an empty one. */
  loseDisk(sim: SimNode): void {
    this.crash(sim, 'kill')
    sim.disk.wipe()
    this.log(`disk lost ${sim.id}`)
  }

  /** A graceful stop (after a leave): in-flight requests finish, the disk is closed cleanly. */
  async stop(sim: SimNode): Promise<void> {
    const node = sim.node
    if (!node) return
    this.log(`stop ${sim.id}`)
    await node.stop()
    if (sim.node !== node) return
    sim.owner!.dead = true
    sim.node = undefined
    sim.owner = undefined
    sim.started = false
  }

  pause(sim: SimNode): void {
    if (!sim.owner || sim.owner.paused) return
    this.scheduler.pause(sim.owner)
    this.log(`pause ${sim.id}`)
  }

  resume(sim: SimNode): void {
    if (!sim.owner?.paused) return
    this.scheduler.resume(sim.owner)
    this.log(`resume ${sim.id}`)
  }

  /** A real SDK client over the simulated network; resolves once connected (the caller runs the simulation). */
  async client(id: string, options: Partial<ClientOptions> & { seeds: string[] }): Promise<SimClient> {
    const owner = new Owner(id)
    const db = await connect({
      encoding: 'json',
      timeoutMs: 2000,
      connectTimeoutMs: 20_000,
      ...options,
      clock: this.scheduler.clock(owner),
      random: seededRandom(this.int(2 ** 31)),
      transport: this.network.transport(id, owner),
    })
    return { id, db, owner, routing: options.routing ?? 'zero-hop' }
  }

  /** Nodes running now (started or starting). */
  live(): SimNode[] {
    return [...this.nodes.values()].filter((s) => s.node !== undefined)
  }
}
