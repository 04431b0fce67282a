// A storage node: LevelDB behind the replica endpoints, identity and incarnation kept on disk,
// static membership, graceful shutdown (stop accepting, finish in-flight requests, close LevelDB).
import { randomBytes } from 'node:crypto'
import type http from 'node:http'
import { once } from 'node:events'
import { pack, unpack, Ring, ZerohopError, ErrorCodes, type Clock, type HealthResponse, type Member } from '@zerohop/core'
import pino, { type Logger } from 'pino'
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './config.js'
import { createHttpServer } from './http.js'
import { discoverRing } from './membership.js'
import { systemClock } from '@zerohop/client'
import { Replica } from './replica.js'
import { LevelStore } from './storage/level-store.js'
import type { Store } from './storage/store.js'

export interface NodeDeps {
  store?: Store
  logger?: Logger
  clock?: Clock
  /** Source of randomness for the incarnation id. */
  random?: (bytes: number) => Uint8Array
}

const IDENTITY_KEY = Buffer.from('midentity')
const MEMBERS_KEY = Buffer.from('mmembers')
/** Present only while the node is stopped after a graceful shutdown. */
const CLEAN_KEY = Buffer.from('mclean')

interface Identity {
  id: string
  incarnation: string
  /** Whether the run that used this incarnation fsynced every write. */
  fsync?: boolean
}

export class StorageNode {
  readonly options: ResolvedNodeOptions
  readonly log: Logger
  readonly #store: Store
  readonly #clock: Clock
  readonly #random: (bytes: number) => Uint8Array
  readonly #abort = new AbortController()
  #server?: http.Server
  #replica?: Replica
  #ring?: Ring
  #identity?: Identity
  #stopping = false
  #stopped?: Promise<void>

  constructor(options: NodeOptions, deps: NodeDeps = {}) {
    this.options = resolveNodeOptions(options)
    this.log = deps.logger ?? pino({ level: this.options.logLevel, base: { node: this.options.id } })
    this.#store = deps.store ?? new LevelStore(this.options.data, { sync: this.options.fsync })
    this.#clock = deps.clock ?? systemClock
    this.#random = deps.random ?? ((n) => randomBytes(n))
  }

  get ring(): Ring | undefined {
    return this.#ring
  }

  get actor(): string | undefined {
    return this.#replica?.actor
  }

  /** Open storage, listen, and discover the membership in the background. */
  async start(): Promise<void> {
    await this.#store.open()
    this.#identity = await this.#loadIdentity()
    this.#replica = new Replica(this.#store, `${this.#identity.id}~${this.#identity.incarnation}`)
    this.#server = createHttpServer({
      options: this.options,
      log: this.log,
      replica: () => (this.#ring ? this.#replica : undefined),
      ring: () => this.#ring,
      health: () => this.health(),
      stopping: () => this.#stopping,
    })
    this.#server.listen(this.options.port, this.options.host)
    try {
      await once(this.#server, 'listening')
    } catch (err) {
      await this.#store.close()
      throw err
    }
    this.log.info({ url: this.options.advertise, data: this.options.data, actor: this.#replica.actor }, 'listening')
    // A restarted node uses the membership it discovered before, so it serves even while other seeds are down.
    const known = await this.#loadMembers()
    if (known) {
      this.#setRing(known)
      return
    }
    void discoverRing({
      self: { id: this.options.id, url: this.options.advertise, weight: this.options.weight },
      seeds: this.options.seeds,
      n: this.options.n,
      partitions: this.options.partitions,
      intervalMs: this.options.discoveryIntervalMs,
      log: this.log,
      clock: this.#clock,
      signal: this.#abort.signal,
    }).then(async (ring) => {
      if (!ring || this.#stopping) return
      await this.#store.put(MEMBERS_KEY, pack(ring.members))
      this.#setRing(ring)
    })
  }

  #setRing(ring: Ring): void {
    this.#ring = ring
    this.log.info({ epoch: ring.epoch, members: ring.members.map((m) => m.id), ownership: Object.fromEntries(ring.ownership()) }, 'ring ready')
  }

  /** The stored membership, if it matches this node's seed list and parameters. */
  async #loadMembers(): Promise<Ring | undefined> {
    const raw = await this.#store.get(MEMBERS_KEY)
    if (!raw) return undefined
    const members = unpack(raw) as Member[]
    const urls = new Set(members.map((m) => m.url))
    const self = members.find((m) => m.id === this.options.id)
    const same = urls.size === this.options.seeds.length && this.options.seeds.every((s) => urls.has(s)) &&
      self?.url === this.options.advertise && self.weight === this.options.weight
    if (!same) {
      this.log.info('seed list or own address changed since the last start: discovering the membership again')
      return undefined
    }
    return new Ring(members, { partitions: this.options.partitions, n: this.options.n })
  }

  /**
   * A new incarnation (so a new actor id) whenever storage starts empty, so dots minted before a disk
   * loss are never minted again for other values. Without --fsync, an unclean stop (crash, SIGKILL,
   * power loss) may have lost the last writes while storage is not empty; that takes a new
   * incarnation too, since the lost dots' counters could otherwise be reused.
   */
  async #loadIdentity(): Promise<Identity> {
    const raw = await this.#store.get(IDENTITY_KEY)
    let identity: Identity
    if (raw) {
      const stored = unpack(raw) as Identity
      if (stored.id !== this.options.id) {
        throw new ZerohopError(ErrorCodes.INVALID_ARGUMENT, `data directory ${this.options.data} belongs to node ${stored.id}, not ${this.options.id}; use --data to point at this node's own directory`)
      }
      const clean = (await this.#store.get(CLEAN_KEY)) !== undefined
      // What matters is how the previous run wrote, not how this one will.
      if (clean || stored.fsync) {
        identity = { ...stored, fsync: this.options.fsync }
      } else {
        identity = { id: this.options.id, incarnation: this.#newIncarnation(), fsync: this.options.fsync }
        this.log.warn({ previous: stored.incarnation, incarnation: identity.incarnation }, 'unclean shutdown without --fsync: new incarnation')
      }
    } else {
      identity = { id: this.options.id, incarnation: this.#newIncarnation(), fsync: this.options.fsync }
      this.log.info({ incarnation: identity.incarnation }, 'empty storage: new incarnation')
    }
    // The clean marker goes first; the synced identity write then puts both on disk before this node
    // mints anything, so a crash during this run can never be mistaken for a clean stop.
    await this.#store.del(CLEAN_KEY)
    await this.#store.put(IDENTITY_KEY, pack(identity), { sync: true })
    return identity
  }

  #newIncarnation(): string {
    return Buffer.from(this.#random(6)).toString('hex')
  }

  health(): HealthResponse {
    return {
      status: this.#stopping ? 'stopping' : this.#ring ? 'ok' : 'starting',
      id: this.options.id,
      url: this.options.advertise,
      weight: this.options.weight,
      n: this.options.n,
      partitions: this.options.partitions,
      actor: this.#replica?.actor ?? '',
      epoch: this.#ring?.epoch ?? null,
    }
  }

  /** Stop accepting, let in-flight requests finish, close LevelDB. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true
      this.#abort.abort()
      const server = this.#server
      if (server) {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        // In-flight requests get a grace period; then whatever is left is cut.
        const force = this.#clock.setTimeout(() => server.closeAllConnections(), 10_000)
        await closed
        this.#clock.clearTimeout(force)
      }
      // Synced: on disk only after every write before it.
      if (this.#identity) await this.#store.put(CLEAN_KEY, Buffer.from([1]), { sync: true })
      await this.#store.close()
      this.log.info('stopped')
    })()
    return this.#stopped
  }
}
