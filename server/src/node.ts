// A storage node: LevelDB behind the replica endpoints, identity and incarnation kept on disk, gossip
// membership with failure detection, partition handoff when members join or leave, graceful
// shutdown (stop accepting, finish in-flight requests, close LevelDB).
import { readFileSync, statSync } from 'node:fs'
import { once } from 'node:events'
import { ClusterKeys, isRandom, InvalidArgumentError, MIN_SECRET_BYTES, pack, unpack, sleep, nextEventTime, parseMemberState, parseMembers, Paths, ZerohopError, ErrorCodes, HttpError, type Clock, type Random, type ClusterView, type HealthResponse, type NodeStats, type MemberState, type RingResponse } from '@zerohop/core'
import pino, { type Logger } from 'pino'
import { systemClock, systemRandom, FramesTransport, type Transport } from '@zerohop/client'
import { resolveNodeOptions, type NodeOptions, type ResolvedNodeOptions } from './config.js'
import { createHttpServer, framedConnectionsOf } from './http.js'
import type { RequestHandler } from './routes/request.js'
import type { Gossip } from './gossip.js'
import type { HintStore } from './hints.js'
import { LocalTransport } from './local-transport.js'
import { wire, type NodeParts } from './parts.js'
import { Actors, type ActorState } from './replica.js'
import { LevelStore } from './storage/level-store.js'
import type { Store } from './storage/store.js'
import { Auth } from './auth.js'
import { Users } from './users.js'

export interface NodeDeps {
  store?: Store
  logger?: Logger
  clock?: Clock
  /** Every random draw of the node: incarnation ids, gossip peers, anti-entropy order, multipart boundaries (default systemRandom). */
  random?: Random
  /** How the node reaches other nodes (default: undici pools). Requests to itself never use it. */
  transport?: Transport
  /**
   * Where the node's request handler is served (default: an HTTP server on --host and --port). A
   * simulator serves it on its own network; `close` ends serving once in-flight requests finish.
   */
  serve?: (handler: RequestHandler, url: string) => Promise<Listener>
}

export interface Listener {
  close(): Promise<void>
}

const IDENTITY_KEY = Buffer.from('midentity')
/** The actor epoch and per-partition floors (see Actors in replica.ts). */
const ACTORS_KEY = Buffer.from('mactors')
const MEMBERS_KEY = Buffer.from('mgossip')
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
  readonly #random: Random
  readonly #transport: LocalTransport
  readonly #auth: Auth
  readonly #serve?: NodeDeps['serve']
  #listener?: Listener
  #parts?: NodeParts
  #identity?: Identity
  /** Serving replica requests: every seed (or a majority, after a grace) heard from in a new cluster, or the cluster to join answered. */
  #ready = false
  /** When a new cluster's node first heard from a majority of the seeds. */
  #majoritySince?: number
  #discovery?: ReturnType<Clock['setTimeout']>
  #stopping = false
  #stopped?: Promise<void>
  #persisting: Promise<void> = Promise.resolve()
  #resolveLeft!: () => void
  /** Resolves when this node has handed off everything and left the cluster. */
  readonly left = new Promise<void>((r) => (this.#resolveLeft = r))

  constructor(options: NodeOptions, deps: NodeDeps = {}) {
    this.options = resolveNodeOptions(options)
    this.log = deps.logger ?? pino({ level: this.options.logLevel, base: { node: this.options.id } })
    this.#store = deps.store ?? new LevelStore(this.options.data, { sync: this.options.fsync })
    this.#clock = deps.clock ?? systemClock
    this.#random = deps.random ?? systemRandom
    if (!isRandom(this.#random)) throw new TypeError('deps.random must implement next() and bytes(n) (see systemRandom)')
    // Other nodes are reached over the framed protocol, one connection each (https:// nodes over TLS:
    // with --tls-ca the node verifies its peers with the cluster's CA and shows them its own certificate).
    const tls = this.options.tls
    const transport = deps.transport ?? new FramesTransport({ connections: 4, connectTimeoutMs: 1000, tls: tls?.ca ? { ca: tls.ca, cert: tls.cert, key: tls.key } : undefined })
    if (typeof transport.post !== 'function' || typeof transport.get !== 'function' || typeof transport.close !== 'function') {
      throw new TypeError('deps.transport must implement post(), get() and close() (see FramesTransport)')
    }
    const keys = this.options.clusterSecretFile === undefined ? undefined : new ClusterKeys(readSecret(this.options.clusterSecretFile, this.log))
    const now = () => this.#clock.now()
    const users = this.options.usersFile === undefined ? undefined : new Users({ path: this.options.usersFile, now })
    this.#auth = new Auth({ keys, users, now, mutualTls: this.options.tls?.ca !== undefined, self: this.options.advertise })
    // The node's requests to itself (coordinating a key it replicates) stay in the process; those to
    // other nodes are signed.
    this.#serve = deps.serve
    if (this.#serve !== undefined && typeof this.#serve !== 'function') throw new TypeError('deps.serve must be a function (handler, url) => Promise<{ close() }>')
    this.#transport = new LocalTransport(this.options.advertise, transport, this.options.maxBodyBytes, keys && { keys, now })
  }

  /** The membership view, once this node serves. */
  get view(): ClusterView | undefined {
    return this.#ready ? this.#parts?.gossip.view : undefined
  }

  get gossip(): Gossip | undefined {
    return this.#parts?.gossip
  }

  /** The hints this node holds for others (once started). */
  get hints(): HintStore | undefined {
    return this.#parts?.hints
  }

  /** This node's figures, as GET /v1/stats gives them (once started). */
  stats(): Promise<NodeStats> | undefined {
    return this.#parts?.stats()
  }

  get actor(): string | undefined {
    return this.#parts?.replica.actor
  }

  /** Open storage, listen, and gossip; replica requests are served once the membership is known. */
  async start(): Promise<void> {
    // A damaged users file stops the node before it opens anything.
    await this.#auth.users?.load()
    await this.#store.open()
    const known = await this.#loadMembers()
    const o = this.options
    let prev = known.find((m) => m.id === o.id)
    // A node that left refuses to start before it touches its identity: the data stays as it was.
    if (prev && (prev.status === 'left' || prev.removed)) await this.#refuseDeparted(prev)
    this.#identity = await this.#loadIdentity()
    // A founding seed that finds a seed already serving (it was down, or slow, while the others formed
    // the cluster) takes the cluster's entries: it joins like --join, or, if it had announced itself
    // before it died, carries on with its own entry.
    let cluster: { url: string; members: MemberState[] } | undefined
    if (!prev && !o.join) {
      cluster = await this.#servingSeed()
      prev = cluster?.members.find((m) => m.id === o.id)
    }
    if (prev && (prev.status === 'left' || prev.removed)) await this.#refuseDeparted(prev)
    // A joiner stamps its join after every event the cluster has recorded, so it must hear from the
    // cluster before it introduces itself.
    let since = prev?.since ?? 0
    if (o.join && !prev) {
      const members = await this.#fetchMembers(o.join)
      if (!members) {
        await this.#store.close()
        throw new ZerohopError(ErrorCodes.NO_SEED_REACHABLE, 'stopped before the cluster to join answered')
      }
      const clash = members.find((m) => m.id === o.id)
      if (clash) {
        await this.#store.close()
        throw new ZerohopError(ErrorCodes.CONFLICT, `the cluster at ${o.join} already has a member ${o.id} (${clash.status}); a new node needs a new --id`)
      }
      cluster = { url: o.join, members }
    }
    const joining = cluster !== undefined && !prev
    if (joining) since = nextEventTime(cluster!.members, this.#clock.now())
    if (cluster) known.push(...cluster.members)
    const self: MemberState = {
      id: o.id,
      url: o.advertise,
      zone: o.zone,
      weight: o.weight,
      status: prev?.status ?? (joining ? 'joining' : 'normal'),
      incarnation: this.#identity.incarnation,
      // Every start is a new version, so peers take this entry over the one they remember even though
      // the heartbeat counter starts again.
      version: (prev?.version ?? 0) + 1,
      heartbeat: 0,
      since,
      until: prev?.until ?? 0,
      removed: false,
      ready: prev?.ready ?? '',
      dropped: prev?.dropped ?? '',
    }
    const actorState = await this.#store.get(ACTORS_KEY)
    const actors = new Actors(
      `${this.#identity.id}~${this.#identity.incarnation}`,
      (state) => this.#store.put(ACTORS_KEY, pack(state), { sync: true }),
      actorState ? (unpack(actorState) as ActorState) : undefined,
    )
    const parts = wire({
      options: o,
      store: this.#store,
      transport: this.#transport,
      clock: this.#clock,
      random: this.#random,
      log: this.log,
      actors,
      self,
      known,
      view: () => this.view,
      ready: () => this.#ready,
      stopping: () => this.#stopping,
      onChange: (view) => this.#onChange(view),
      onLeft: () => void this.#announceLeft(),
      health: () => this.health(),
      leave: () => this.leave(),
      remove: (id) => this.remove(id),
      nextChange: (ms) => this.#nextChange(ms),
      auth: this.#auth,
    })
    this.#parts = parts
    await parts.hints.open()
    try {
      this.#listener = await (this.#serve ?? ((handler) => this.#listenHttp(handler)))(parts.handler, o.advertise)
    } catch (err) {
      await this.#store.close()
      throw err
    }
    this.log.info({ url: o.advertise, data: o.data, actor: parts.replica.actor, status: self.status }, 'listening')
    // A restarted node uses the membership it knew, so it serves even while other seeds are down.
    if (cluster && !o.join) this.#becomeReady(joining ? `a seed missing from the cluster's forming: joining through ${cluster.url}` : `rejoined the cluster of ${cluster.url}`)
    else if (known.length > 1 || (prev && !o.join)) this.#becomeReady(joining ? `joined through ${o.join}` : 'membership from the previous run')
    else this.#discover()
    parts.gossip.start()
    parts.hints.start()
    void parts.antiEntropy.start().catch((err) => this.log.error({ err }, 'anti-entropy could not start'))
    void parts.reaper.start().catch((err) => this.log.error({ err }, 'tombstone reaping could not start'))
  }

  /** The HTTP server; closing it gives in-flight requests a grace period, then cuts what is left. */
  async #listenHttp(handler: RequestHandler): Promise<Listener> {
    const o = this.options
    const server = createHttpServer({ handler, maxBodyBytes: o.maxBodyBytes, log: this.log, stopping: () => this.#stopping, tls: o.tls, limits: o })
    server.listen(o.port, o.host)
    await once(server, 'listening')
    return {
      close: async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()))
        server.closeIdleConnections()
        const frames = framedConnectionsOf(server)
        frames?.close()
        const force = setTimeout(() => {
          server.closeAllConnections()
          frames?.destroy()
        }, 10_000)
        await closed
        clearTimeout(force)
      },
    }
  }

  async #refuseDeparted(prev: MemberState): Promise<never> {
    await this.#store.close()
    throw new ZerohopError(ErrorCodes.CONFLICT, `node ${prev.id} ${prev.removed ? 'was removed from' : 'has left'} the cluster; to join again, start it with an empty --data directory and --join`)
  }

  /**
   * Until the membership is known, ask every seed often (gossip proper runs once a second). A new
   * cluster serves once every seed has answered (directly or through another seed's gossip); or, once
   * a majority has, after `seedGraceMs` more: a seed that died at birth must not keep the others
   * unavailable, and the grace lets a seed that is merely slower to start be in the first ring. Any
   * two majorities share a seed, so the seeds never form two clusters. A seed missing from the first
   * ring joins when it starts (see start()).
   */
  #discover(): void {
    if (this.#ready || this.#stopping) return
    const gossip = this.#parts!.gossip
    const o = this.options
    void Promise.all(o.seeds.filter((s) => s !== o.advertise).map((s) => gossip.exchange(s, 2000))).then(() => {
      if (this.#stopping) return
      const urls = new Set([...gossip.states.values()].map((m) => m.url))
      const heard = o.seeds.filter((s) => urls.has(s)).length
      if (o.join ? gossip.heardFrom.has(o.join) : heard === o.seeds.length) {
        this.#becomeReady(o.join ? `joined through ${o.join}` : 'every seed answered')
        return
      }
      if (!o.join && heard > o.seeds.length / 2) {
        this.#majoritySince ??= this.#clock.now()
        if (this.#clock.now() - this.#majoritySince >= o.seedGraceMs) {
          this.#becomeReady(`${heard} of ${o.seeds.length} seeds answered (a majority, for ${o.seedGraceMs} ms); the others join when they start`)
          return
        }
      }
      this.#discovery = this.#clock.setTimeout(() => this.#discover(), o.discoveryIntervalMs)
    })
  }

  /**
   * The members of a seed that already serves, asked once each at start: a founding seed that finds
   * one missed the cluster's forming. Undefined when none serves yet (the seeds are starting together).
   */
  async #servingSeed(): Promise<{ url: string; members: MemberState[] } | undefined> {
    const o = this.options
    const answers = await Promise.all(o.seeds.filter((s) => s !== o.advertise).map(async (url) => ({ url, members: await this.#ringOf(url, 1000) })))
    const found = answers.find((a) => a.members !== undefined)
    return found ? { url: found.url, members: found.members! } : undefined
  }

  #becomeReady(why: string): void {
    if (this.#ready) return
    this.#ready = true
    const view = this.#parts!.gossip.view
    this.log.info({ why, epoch: view.epoch, members: view.current.members.map((m) => m.id), transition: view.transition }, 'serving')
    this.#onChange(view)
  }

  readonly #watchers = new Set<() => void>()

  #nextChange(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        this.#clock.clearTimeout(timer)
        this.#watchers.delete(done)
        resolve()
      }
      const timer = this.#clock.setTimeout(done, ms)
      this.#watchers.add(done)
    })
  }

  #wakeWatchers(): void {
    for (const w of [...this.#watchers]) w()
  }

  #onChange(view: ClusterView): void {
    this.#wakeWatchers()
    if (!this.#ready || this.#stopping) return
    const self = this.#parts!.gossip.self
    const states = [...this.#parts!.gossip.states.values()]
    // Persisted first, a removal too: a removed node restarted on this directory refuses to start.
    this.#persisting = this.#persisting.then(() => this.#store.put(MEMBERS_KEY, pack(states))).catch((err) => this.log.error({ err }, 'could not persist the membership'))
    if (self.removed) {
      this.log.error('an operator removed this node from the cluster; it stops serving')
      void this.stop()
      return
    }
    this.log.info({ epoch: view.epoch, transition: view.transition, members: Object.fromEntries(states.map((m) => [m.id, m.status])) }, 'membership changed')
    this.#parts!.handoff.kick()
  }

  /**
   * The member entries of the node at `url` if it serves (one request), else undefined; throws if
   * its cluster runs with another N or Q.
   */
  async #ringOf(url: string, timeoutMs = 2000): Promise<MemberState[] | undefined> {
    let ring: RingResponse
    try {
      const reply = await this.#transport.get(url, Paths.ring, { timeoutMs })
      if (reply.status !== 200) return undefined
      ring = JSON.parse(reply.body.toString('utf8')) as RingResponse
    } catch {
      // not reachable (a TransportError), or not a ring
      return undefined
    }
    if (ring?.n !== this.options.n || ring.partitions !== this.options.partitions) {
      throw new ZerohopError(ErrorCodes.CLUSTER_MISMATCH, `the cluster at ${url} runs with n=${ring?.n} partitions=${ring?.partitions}; start this node with --n ${ring?.n} --partitions ${ring?.partitions}`)
    }
    // Rebuilt field by field (see parseMembers): nothing unknown from the network is kept.
    const members = parseMembers(ring.members)
    return typeof members === 'string' ? undefined : members
  }

  /** The member entries of the node at `url`, retried until it answers (undefined if stopped first). */
  async #fetchMembers(url: string): Promise<MemberState[] | undefined> {
    let warned = 0
    while (!this.#stopping) {
      const members = await this.#ringOf(url)
      if (members) return members
      if (this.#clock.now() - warned > 5000) {
        warned = this.#clock.now()
        this.log.info({ join: url }, 'waiting for the cluster to join')
      }
      await sleep(this.#clock, this.options.discoveryIntervalMs)
    }
    return undefined
  }

  async #loadMembers(): Promise<MemberState[]> {
    const raw = await this.#store.get(MEMBERS_KEY)
    if (!raw) return []
    // Rebuilt like gossip's entries: a membership persisted by an older version may hold fields it
    // copied from a peer (a BigInt that GET /v1/ring could not write).
    const out: MemberState[] = []
    const stored = unpack(raw)
    for (const x of Array.isArray(stored) ? stored : []) {
      const m = parseMemberState(x)
      if (typeof m === 'string') this.log.warn(`dropped a persisted member entry: ${m}`)
      else out.push(m)
    }
    return out
  }

  /** Operator: hand off this node's partitions and leave the cluster (`changed` false if it already was). */
  leave(): { member: MemberState; changed: boolean } {
    const gossip = this.#parts?.gossip
    if (!gossip || !this.#ready) throw new HttpError(503, ErrorCodes.NOT_READY, 'this node is not serving yet')
    const self = gossip.self
    if (self.status === 'leaving' || self.status === 'left') return { member: self, changed: false }
    if (self.status === 'joining') throw new HttpError(409, ErrorCodes.CONFLICT, `node ${self.id} is still joining; leave it once its join is complete`)
    const others = [...gossip.states.values()].filter((m) => m.id !== self.id && (m.status === 'normal' || m.status === 'joining'))
    if (others.length === 0) throw new HttpError(409, ErrorCodes.CONFLICT, `node ${self.id} is the last member; there is no one to hand its data to`)
    this.log.info('leaving: handing off every partition')
    return { member: gossip.updateSelf({ status: 'leaving', until: gossip.nextEventTime() }), changed: true }
  }

  /** Operator: remove a dead member; the others re-replicate its partitions (`changed` false if it already was removed). */
  remove(id: string): { member: MemberState; changed: boolean } {
    const gossip = this.#parts?.gossip
    if (!gossip || !this.#ready) throw new HttpError(503, ErrorCodes.NOT_READY, 'this node is not serving yet')
    const m = gossip.states.get(id)
    if (!m) throw new HttpError(404, ErrorCodes.NOT_FOUND, `no member ${id}; see zerohop status`)
    if (id === gossip.self.id) throw new HttpError(409, ErrorCodes.CONFLICT, `node ${id} is the node you asked; use zerohop leave for a live node`)
    if (m.status === 'left') {
      throw new HttpError(409, ErrorCodes.CONFLICT, `node ${id} ${m.removed ? 'was removed and its data re-replicated' : 'has left the cluster'} already; there is nothing to remove`)
    }
    if (m.removed) return { member: m, changed: false }
    if (gossip.isUp(id)) throw new HttpError(409, ErrorCodes.CONFLICT, `node ${id} is alive as far as ${gossip.self.id} can tell; use zerohop leave --node ${m.url}, or stop it first`)
    const entry: MemberState = { ...m, status: 'leaving', removed: true, until: m.until || gossip.nextEventTime(), version: m.version + 1 }
    this.log.warn({ member: id }, 'removing a dead member: its partitions are re-replicated from the others')
    gossip.put(entry)
    return { member: gossip.states.get(id)!, changed: true }
  }

  /**
   * Tell a few peers that this node has left, then resolve `left` (and the process may exit). Not before
   * one of them has taken the entry: a node that completed its leave while cut off from the others and
   * then stopped would stay 'leaving' in everyone's view for good, holding the ring in transition and
   * every later join or leave waiting to pull from it. Peers believed up are asked first.
   */
  async #announceLeft(): Promise<void> {
    const gossip = this.#parts!.gossip
    let warned = false
    while (!this.#stopping) {
      const peers = [...gossip.states.values()].filter((m) => m.id !== gossip.self.id && m.status !== 'left')
      if (peers.length === 0) break
      peers.sort((a, b) => Number(gossip.isUp(b.id)) - Number(gossip.isUp(a.id)))
      const answers = await Promise.all(peers.slice(0, 8).map((m) => gossip.exchange(m.url, 2000)))
      if (answers.some(Boolean)) break
      if (!warned) this.log.warn('left the cluster, but no member has answered to hear it yet; asking again until one does')
      warned = true
      await sleep(this.#clock, this.options.gossipIntervalMs)
    }
    this.#resolveLeft()
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
    return Buffer.from(this.#random.bytes(6)).toString('hex')
  }

  health(): HealthResponse {
    return {
      status: this.#stopping ? 'stopping' : this.#ready ? 'ok' : 'starting',
      id: this.options.id,
      url: this.options.advertise,
      weight: this.options.weight,
      n: this.options.n,
      partitions: this.options.partitions,
      actor: this.#parts?.replica.actor ?? '',
      epoch: this.view?.epoch ?? null,
      member: this.#parts?.gossip.self.status,
    }
  }

  /** Stop accepting, let in-flight requests finish, close LevelDB. Safe to call twice. */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      this.#stopping = true
      this.#wakeWatchers()
      if (this.#discovery) this.#clock.clearTimeout(this.#discovery)
      this.#parts?.gossip.stop()
      await this.#parts?.handoff.stop()
      await this.#parts?.hints.stop()
      await this.#parts?.antiEntropy.stop()
      await this.#parts?.reaper.stop()
      await this.#listener?.close()
      // Synced: on disk only after every write before it.
      if (this.#identity) await this.#store.put(CLEAN_KEY, Buffer.from([1]), { sync: true })
      await this.#persisting
      await this.#transport.close()
      await this.#store.close()
      this.log.info('stopped')
    })()
    return this.#stopped
  }
}

/** The cluster secret from its file (surrounding whitespace dropped), refused when too short. */
function readSecret(path: string, log: Logger): Buffer {
  let text: string
  try {
    text = readFileSync(path, 'utf8')
  } catch (err) {
    throw new InvalidArgumentError(`cannot read --cluster-secret-file ${path}: ${(err as Error).message}`)
  }
  const secret = Buffer.from(text.trim(), 'utf8')
  if (secret.byteLength < MIN_SECRET_BYTES) {
    throw new InvalidArgumentError(`--cluster-secret-file ${path} holds ${secret.byteLength} bytes; a cluster secret needs at least ${MIN_SECRET_BYTES} (make one with: openssl rand -base64 32 > ${path})`)
  }
  // Like ssh with a private key: a secret others on the machine can read is no secret.
  if ((statSync(path).mode & 0o077) !== 0) log.warn({ path }, 'the cluster secret file is readable by other users; chmod 600 it')
  return secret
}
