// In-process simulation of membership gossip over up to 1000 nodes: the real `mergeMembers` and the real
// `PhiAccrualDetector` on virtual time with a seeded PRNG; no sockets, no timers, no Math.random.
// Run: node --import tsx test/bench/gossip-sim.ts   (prints markdown tables, writes
// bench-results/gossip-sim.json; about 2 min 45 s on 2 cores; a run that would end past SIM_BUDGET_S,
// 165 s, is skipped and reported as skipped).
//
// Model
// - Every node holds a Map<string, MemberState> (its view) and, for every other member it knows, the
//   highest heartbeat counter it has seen and a PhiAccrualDetector per configuration under study. A
//   round is SIM_ROUND_MS (1000) of virtual time. Founding members all know each other (heartbeat 0,
//   detectors not fed yet: phi 0).
// - Each live node gossips once per round, at round start + its phase + jitter: the phase is drawn once
//   per node, uniform in [J, round - J], the jitter each round, uniform in [-J, +J] (J = SIM_JITTER_MS,
//   100): timers started at different moments, and a loop that never fires exactly on time. A round's
//   events run in time order, so news can travel several hops within one round.
// - At its turn a node bumps its own heartbeat, then does a push-pull with one peer drawn uniformly from
//   those it believes alive (phi below the threshold under the first configuration; rejection sampling,
//   then a scan), and with probability SIM_SEED_PROB (0.1) also with one of the 3 seeds (any but itself,
//   whatever its phi); a node that believes no peer alive gossips with a seed. Push-pull: the peer merges
//   the initiator's full state, then the initiator merges the peer's (now the union): 2 messages,
//   delivered at once (a LAN round trip is noise next to a round). An exchange with a dead node costs 1
//   message and merges nothing.
// - Whenever a merge raises X's heartbeat counter in a node's view, that node feeds its detectors for X
//   `heartbeat(now)`: detection runs on gossip-propagated heartbeats, as the server's will. Discovering a
//   member counts as its first heartbeat.
// - False suspicion: when news of a live X reaches observer O, the phi O had for X just before (what
//   `heartbeat()` returns) is the peak of that silence, phi growing with silence; each silence whose peak
//   exceeds a threshold counts once. Detection: a node dies at a random moment; every 100 ms of virtual
//   time the smallest (and largest) phi the live nodes have for it is compared with each threshold.
//   The whole cluster cold-starts at once (every detector seeded at the same moment), so suspicions in
//   the first WARMUP_ROUNDS (30) are also reported apart: a real cluster's nodes start one by one.
// - Bytes: msgpackr `pack` (the node codec) of what each message carries, measured on about
//   SIM_BYTES_SAMPLES exchanges per round and extrapolated. Full state: request = the initiator's entries,
//   reply = the peer's. Digest-first (Cassandra's SYN/ACK/ACK2, estimated on the same exchanges; same
//   outcome): SYN = [id, version, heartbeat] per entry; ACK = the peer's entries newer than the digest +
//   the ids it wants; ACK2 = the initiator's entries wanted (sent only when some are).
//
// Cost: every node merges ~2 full views per round, so a round costs O(N²): ~15 ms at 100 nodes, ~110 ms
// at 300, ~1 s at 1000 (memory-bound: 10^6 view entries and detectors). The default run therefore
// does the joins at every size but the steady/death runs only at 100 and 300 nodes; the 1000-node
// detection run is opt-in (about 3 minutes alone):
//   SIM_SIZES=1000 SIM_JOIN_RUNS=0 SIM_STEADY_RUNS=1 SIM_BUDGET_S=400 node --import tsx test/bench/gossip-sim.ts
//
// Knobs (environment; "a,N:b" = a, but b for N nodes; "N:b" alone amends the default): SIM_SIZES (100,300,1000), SIM_JOIN_RUNS (5,1000:3),
// SIM_STEADY_RUNS (3,300:2,1000:0), SIM_STEADY_ROUNDS (300,1000:60), SIM_DEATHS (3,1000:2),
// SIM_SEED_PROB (0.1), SIM_JITTER_MS (100), SIM_ROUND_MS (1000), SIM_THRESHOLDS (6,8,10,12,16),
// SIM_CONFIGS (JSON [{label, options}]), SIM_SWEEP_MAX_SIZE (100: larger sizes run only the first
// SIM_BIG_CONFIGS=2 configurations), SIM_BYTES_SAMPLES (1), SIM_SEED (1), SIM_BUDGET_S (165).
import { mkdirSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { pack } from '../../packages/core/src/codec.js'
import { mergeMembers, type MemberState } from '../../packages/core/src/membership.js'
import { PhiAccrualDetector, type PhiAccrualOptions } from '../../packages/core/src/phi.js'
import { mulberry32 } from '../harness/prng.js'
import { mdTable, resultsDir } from './report.js'


const CHECK_MS = 100
const SEEDS = 3
const JOIN_WARMUP_ROUNDS = 5
const JOIN_ROUND_CAP = 60
const DEATH_ROUND_CAP = 60
const PICK_TRIES = 32
/** Rounds after a cold start of the whole cluster during which detectors still hold mostly their seeds. */
const WARMUP_ROUNDS = 30

// --- configuration -----------------------------------------------------------------------------------

function envRaw(name: string, dflt: string): string {
  return process.env[name] ?? dflt
}
function envNumber(name: string, dflt: number, ok: (x: number) => boolean): number {
  const raw = process.env[name]
  const x = raw === undefined ? dflt : Number(raw)
  if (!ok(x)) throw new Error(`${name} is out of range: ${raw}`)
  return x
}
function envList(name: string, dflt: string, ok: (x: number) => boolean): number[] {
  const raw = envRaw(name, dflt)
  const xs = raw.split(',').map((s) => Number(s.trim()))
  if (xs.some((x) => !ok(x))) throw new Error(`${name} must be a comma-separated list of valid numbers, got ${raw}`)
  return xs
}
/**
 * "3,1000:2": 3, but 2 for 1000 nodes. A value with a plain number replaces the default; one with only
 * "N:x" parts amends it ("1000:120" changes 1000 nodes only).
 */
function envBySize(name: string, dflt: string, ok: (x: number) => boolean): (n: number) => number {
  const raw = envRaw(name, dflt)
  const amends = raw.split(',').every((part) => part.includes(':'))
  let base = NaN
  const bySize = new Map<number, number>()
  for (const spec of amends ? [dflt, raw] : [raw]) {
    for (const part of spec.split(',')) {
      const [a, b] = part.split(':').map((s) => Number(s.trim()))
      if (b === undefined) base = a
      else bySize.set(a, b)
    }
  }
  if (!ok(base) || [...bySize.values()].some((x) => !ok(x))) throw new Error(`${name} must look like "3,1000:2" with valid numbers, got ${raw}`)
  return (n) => bySize.get(n) ?? base
}
const int = (lo: number, hi: number) => (x: number) => Number.isInteger(x) && x >= lo && x <= hi

interface SimConfig {
  label: string
  options: PhiAccrualOptions
}

const ROUND_MS = envNumber('SIM_ROUND_MS', 1000, int(100, 60_000))

// The first configuration drives every node's choice of peers; the others only watch the same arrivals.
const DEFAULT_CONFIGS: SimConfig[] = [
  { label: 'recommended', options: { firstIntervalMs: 2 * ROUND_MS, acceptablePauseMs: 2 * ROUND_MS } },
  { label: 'defaults', options: {} },
  { label: `firstInterval ${2 * ROUND_MS}`, options: { firstIntervalMs: 2 * ROUND_MS } },
  { label: `pause ${ROUND_MS}`, options: { acceptablePauseMs: ROUND_MS } },
  { label: `pause ${3 * ROUND_MS}`, options: { acceptablePauseMs: 3 * ROUND_MS } },
  { label: `firstInterval ${2 * ROUND_MS}, pause ${ROUND_MS / 2}`, options: { firstIntervalMs: 2 * ROUND_MS, acceptablePauseMs: ROUND_MS / 2 } },
  { label: `firstInterval ${2 * ROUND_MS}, pause ${ROUND_MS}`, options: { firstIntervalMs: 2 * ROUND_MS, acceptablePauseMs: ROUND_MS } },
]

function envConfigs(name: string, dflt: SimConfig[]): SimConfig[] {
  const raw = process.env[name]
  if (raw === undefined) return dflt
  const xs = JSON.parse(raw) as SimConfig[]
  if (!Array.isArray(xs) || xs.length === 0) throw new Error(`${name} must be a non-empty JSON array of {label, options}`)
  for (const x of xs) new PhiAccrualDetector(x.options) // throws on a bad option
  return xs
}

const cfg = {
  roundMs: ROUND_MS,
  sizes: envList('SIM_SIZES', '100,300,1000', int(SEEDS + 2, 5000)),
  joinRuns: envBySize('SIM_JOIN_RUNS', '5,1000:3', int(0, 100)),
  steadyRuns: envBySize('SIM_STEADY_RUNS', '3,300:2,1000:0', int(0, 100)),
  steadyRounds: envBySize('SIM_STEADY_ROUNDS', '300,1000:60', int(1, 10_000)),
  deaths: envBySize('SIM_DEATHS', '3,1000:2', int(0, 20)),
  seedProb: envNumber('SIM_SEED_PROB', 0.1, (x) => x >= 0 && x <= 1),
  jitterMs: envNumber('SIM_JITTER_MS', 100, (x) => x >= 0 && x < ROUND_MS / 2),
  thresholds: envList('SIM_THRESHOLDS', '6,8,10,12,16', (x) => x > 0 && Number.isFinite(x)).sort((a, b) => a - b),
  configs: envConfigs('SIM_CONFIGS', DEFAULT_CONFIGS),
  sweepMaxSize: envNumber('SIM_SWEEP_MAX_SIZE', 100, int(0, 5000)),
  bigConfigs: envNumber('SIM_BIG_CONFIGS', 2, int(1, 100)),
  bytesSamples: envNumber('SIM_BYTES_SAMPLES', 1, (x) => x >= 0),
  seed: envNumber('SIM_SEED', 1, Number.isInteger),
  budgetSeconds: envNumber('SIM_BUDGET_S', 165, (x) => x > 0),
}

// --- the simulated cluster ---------------------------------------------------------------------------

interface SimNode {
  index: number
  id: string
  phase: number
  members: Map<string, MemberState>
  /** By node index: highest heartbeat counter seen, -1 for a member not known. */
  heard: Float64Array
  /** [config][node index]: detectors, fed the same arrivals. */
  detectors: PhiAccrualDetector[][]
  /** Indices of the members known, for uniform draws. */
  known: number[]
}

interface ByteSample {
  full: number
  digest: number
  digestMessages: number
  entries: number
}

class Sim {
  readonly nodes: SimNode[] = []
  readonly idIndex = new Map<string, number>()
  readonly deathAt: Float64Array
  readonly rng: () => number
  readonly capacity: number
  now = 0
  messages = 0
  exchanges = 0
  byteSamples: ByteSample[] = []
  countSuspicions = true
  /** [config][threshold]: silences of a live node whose peak phi exceeded the threshold. */
  readonly falseSuspicions: number[][]
  /** [config][threshold]: those that ended after the warm-up (round WARMUP_ROUNDS on). */
  readonly falseSuspicionsWarm: number[][]
  /** [config][threshold]: distinct (observer, subject) pairs among them. */
  readonly suspectedPairs: Set<number>[][]
  /** [config]: highest phi any node reached for a live peer; after the warm-up. */
  readonly peakPhiLive: number[]
  readonly peakPhiLiveWarm: number[]
  onDiscover: ((observer: SimNode, subject: number) => void) | undefined

  constructor(
    readonly size: number,
    seed: number,
    readonly thresholds: number[],
    readonly configs: PhiAccrualOptions[],
    extra: number,
  ) {
    this.rng = mulberry32(seed)
    this.capacity = size + extra
    this.deathAt = new Float64Array(this.capacity).fill(Infinity)
    this.falseSuspicions = configs.map(() => thresholds.map(() => 0))
    this.falseSuspicionsWarm = configs.map(() => thresholds.map(() => 0))
    this.suspectedPairs = configs.map(() => thresholds.map(() => new Set<number>()))
    this.peakPhiLive = configs.map(() => 0)
    this.peakPhiLiveWarm = configs.map(() => 0)
    const founders = Array.from({ length: size }, (_, i) => this.#entry(i, 'normal', 0))
    for (let i = 0; i < size; i++) {
      const node = this.#node(i)
      for (const e of founders) node.members.set(e.id, { ...e })
      for (let j = 0; j < size; j++) if (j !== i) this.#know(node, j, 0)
    }
  }

  /** A node that knows only itself (and the seeds' addresses): it gossips with a seed first. */
  addJoiner(): SimNode {
    const node = this.#node(this.nodes.length)
    const e = this.#entry(node.index, 'joining', this.now)
    node.members.set(e.id, e)
    return node
  }

  #node(i: number): SimNode {
    const id = `node-${String(i).padStart(4, '0')}`
    const node: SimNode = {
      index: i,
      id,
      phase: cfg.jitterMs + this.rng() * (ROUND_MS - 2 * cfg.jitterMs),
      members: new Map(),
      heard: new Float64Array(this.capacity).fill(-1),
      detectors: this.configs.map(() => new Array<PhiAccrualDetector>(this.capacity)),
      known: [],
    }
    this.nodes.push(node)
    this.idIndex.set(id, i)
    return node
  }

  #entry(i: number, status: MemberState['status'], since: number): MemberState {
    return {
      id: `node-${String(i).padStart(4, '0')}`,
      url: `http://10.0.${i >> 8}.${i & 255}:7070`,
      zone: `zone-${i % 3}`,
      weight: 1,
      status,
      incarnation: Math.floor(this.rng() * 2 ** 32).toString(16).padStart(8, '0'),
      version: 1,
      heartbeat: 0,
      since,
      until: 0,
      removed: false,
      ready: '',
    }
  }

  #know(node: SimNode, j: number, heard: number): void {
    node.heard[j] = heard
    for (let c = 0; c < this.configs.length; c++) node.detectors[c][j] = new PhiAccrualDetector(this.configs[c])
    node.known.push(j)
  }

  alive(i: number): boolean {
    return this.now < this.deathAt[i]
  }

  /** Runs one round; `check(t)` is called every CHECK_MS of virtual time, in order with the events. */
  round(r: number, check?: (t: number) => void): void {
    const start = r * ROUND_MS
    const events: { t: number; node: SimNode }[] = []
    for (const node of this.nodes) {
      if (this.deathAt[node.index] <= start) continue
      events.push({ t: start + node.phase + (this.rng() * 2 - 1) * cfg.jitterMs, node })
    }
    events.sort((a, b) => a.t - b.t)
    let nextCheck = start
    for (const { t, node } of events) {
      while (check && nextCheck <= t) {
        this.now = nextCheck
        check(nextCheck)
        nextCheck += CHECK_MS
      }
      this.now = t
      if (this.alive(node.index)) this.#gossip(node)
    }
    while (check && nextCheck < start + ROUND_MS) {
      this.now = nextCheck
      check(nextCheck)
      nextCheck += CHECK_MS
    }
    this.now = start + ROUND_MS
  }

  #gossip(node: SimNode): void {
    node.members.get(node.id)!.heartbeat++
    const peer = this.#pickPeer(node)
    if (peer >= 0) this.#exchange(node, this.nodes[peer])
    if (peer < 0 || this.rng() < cfg.seedProb) {
      const self = node.index < SEEDS
      let s = Math.floor(this.rng() * (self ? SEEDS - 1 : SEEDS))
      if (self && s >= node.index) s++
      this.#exchange(node, this.nodes[s])
    }
  }

  #pickPeer(node: SimNode): number {
    const known = node.known
    if (known.length === 0) return -1
    const detectors = node.detectors[0]
    const now = this.now
    for (let i = 0; i < PICK_TRIES; i++) {
      const j = known[Math.floor(this.rng() * known.length)]
      if (detectors[j].isAvailable(now)) return j
    }
    // Most peers look dead: draw among those that do not (rare; a scan is fine then).
    const alive = known.filter((j) => detectors[j].isAvailable(now))
    return alive.length ? alive[Math.floor(this.rng() * alive.length)] : -1
  }

  #exchange(a: SimNode, b: SimNode): void {
    this.messages++
    if (!this.alive(b.index)) return
    this.messages++
    this.exchanges++
    if (this.rng() * this.size < cfg.bytesSamples) this.#sampleBytes(a, b)
    for (const r of mergeMembers(b.members, a.members.values())) this.#arrival(b, r)
    for (const r of mergeMembers(a.members, b.members.values())) this.#arrival(a, r)
  }

  #arrival(observer: SimNode, r: MemberState): void {
    const j = this.idIndex.get(r.id)!
    if (j === observer.index) return
    const now = this.now
    const heard = observer.heard[j]
    if (heard < 0) {
      this.#know(observer, j, r.heartbeat)
      for (const ds of observer.detectors) ds[j].heartbeat(now)
      this.onDiscover?.(observer, j)
      return
    }
    if (r.heartbeat <= heard) return
    observer.heard[j] = r.heartbeat
    const live = this.countSuspicions && now < this.deathAt[j]
    const warm = now >= WARMUP_ROUNDS * ROUND_MS
    for (let c = 0; c < observer.detectors.length; c++) {
      const peak = observer.detectors[c][j].heartbeat(now) // the phi this silence reached
      if (!live) continue
      if (peak > this.peakPhiLive[c]) this.peakPhiLive[c] = peak
      if (warm && peak > this.peakPhiLiveWarm[c]) this.peakPhiLiveWarm[c] = peak
      const T = this.thresholds
      for (let k = 0; k < T.length && peak > T[k]; k++) {
        this.falseSuspicions[c][k]++
        if (warm) this.falseSuspicionsWarm[c][k]++
        this.suspectedPairs[c][k].add(observer.index * this.capacity + j)
      }
    }
  }

  #sampleBytes(a: SimNode, b: SimNode): void {
    const full = pack([...a.members.values()]).length + pack([...b.members.values()]).length
    const digest: [string, number, number][] = []
    const peerNewer: MemberState[] = []
    const wanted: string[] = []
    const initiatorNewer: MemberState[] = []
    for (const e of a.members.values()) {
      digest.push([e.id, e.version, e.heartbeat])
      const theirs = b.members.get(e.id)
      if (!theirs || newer(e, theirs)) {
        wanted.push(e.id)
        initiatorNewer.push(e)
      }
    }
    for (const e of b.members.values()) {
      const mine = a.members.get(e.id)
      if (!mine || newer(e, mine)) peerNewer.push(e)
    }
    const syn = pack(digest).length
    const ack = pack({ entries: peerNewer, want: wanted }).length
    const ack2 = initiatorNewer.length ? pack(initiatorNewer).length : 0
    this.byteSamples.push({ full, digest: syn + ack + ack2, digestMessages: initiatorNewer.length ? 3 : 2, entries: a.members.size + b.members.size })
  }
}

/** What a digest of (version, heartbeat) can tell: the owner bumps `version` on every change but the heartbeat. */
function newer(x: MemberState, y: MemberState): boolean {
  return x.version > y.version || (x.version === y.version && x.heartbeat > y.heartbeat)
}

// --- experiments -------------------------------------------------------------------------------------

interface JoinResult {
  rounds: number
  seconds: number
  converged: boolean
}

/** A new member gossips with one seed; rounds until every live node has its entry. */
function joinRun(size: number, seed: number): JoinResult {
  const sim = new Sim(size, seed, cfg.thresholds, [cfg.configs[0].options], 1)
  sim.countSuspicions = false
  for (let r = 0; r < JOIN_WARMUP_ROUNDS; r++) sim.round(r)
  const joiner = sim.addJoiner()
  let joinAt = -1 // when a seed learns of it: the joiner's first gossip
  let knowers = 0
  let doneAt = -1
  sim.onDiscover = (_observer, subject) => {
    if (subject !== joiner.index) return
    if (++knowers === 1) joinAt = sim.now
    if (knowers === size && doneAt < 0) doneAt = sim.now
  }
  let r = JOIN_WARMUP_ROUNDS
  for (; r < JOIN_WARMUP_ROUNDS + JOIN_ROUND_CAP && doneAt < 0; r++) sim.round(r)
  if (doneAt < 0) return { rounds: Infinity, seconds: Infinity, converged: false }
  return { rounds: r - JOIN_WARMUP_ROUNDS, seconds: (doneAt - joinAt) / 1000, converged: true }
}

interface DeathResult {
  /** [config][threshold]: seconds from the death until every live node's phi for it exceeds the threshold (Infinity: not within the cap). */
  allSeconds: number[][]
  /** [config][threshold]: seconds until the first live node's phi exceeds it. */
  firstSeconds: number[][]
}

interface ConfigResult {
  label: string
  options: PhiAccrualOptions
  /** [threshold]: silences of a live node whose peak phi exceeded it, during the steady run. */
  falseSuspicions: number[]
  /** [threshold]: those of them that ended after the cold start's warm-up (WARMUP_ROUNDS). */
  falseSuspicionsWarm: number[]
  /** [threshold]: distinct (observer, subject) pairs among them. */
  suspectedPairs: number[]
  /** [threshold]: the same count while the deaths were being followed (live nodes only). */
  falseSuspicionsDuringDeaths: number[]
  peakPhiLive: number
  peakPhiLiveWarm: number
  /** Medians over a sample of detectors at the end of the steady run. */
  meanIntervalMs: number
  stdDevMs: number
}

interface SteadyResult {
  rounds: number
  configs: ConfigResult[]
  deaths: DeathResult[]
  messagesPerNodeRound: number
  exchangesPerNodeRound: number
  fullBytesPerNodeRound: number
  digestBytesPerNodeRound: number
  digestMessagesPerNodeRound: number
  bytesPerEntry: number
  byteSamples: number
}

function steadyRun(size: number, seed: number, configs: SimConfig[]): SteadyResult {
  const sim = new Sim(size, seed, cfg.thresholds, configs.map((c) => c.options), 0)
  const T = cfg.thresholds
  const rounds = cfg.steadyRounds(size)
  for (let r = 0; r < rounds; r++) sim.round(r)
  const samples = sim.byteSamples
  const avg = (f: (s: ByteSample) => number) => (samples.length ? samples.reduce((a, s) => a + f(s), 0) / samples.length : NaN)
  const pairs = Array.from({ length: 2000 }, () => {
    const o = sim.nodes[Math.floor(sim.rng() * size)]
    return { o, j: o.known[Math.floor(sim.rng() * o.known.length)] }
  })
  const perNodeRound = (x: number) => x / size / rounds // nobody died yet: every node took part in every round
  const result: SteadyResult = {
    rounds,
    configs: configs.map((c, i) => ({
      label: c.label,
      options: c.options,
      falseSuspicions: [...sim.falseSuspicions[i]],
      falseSuspicionsWarm: [...sim.falseSuspicionsWarm[i]],
      suspectedPairs: sim.suspectedPairs[i].map((s) => s.size),
      falseSuspicionsDuringDeaths: [],
      peakPhiLive: sim.peakPhiLive[i],
      peakPhiLiveWarm: sim.peakPhiLiveWarm[i],
      meanIntervalMs: median(pairs.map(({ o, j }) => o.detectors[i][j].meanIntervalMs ?? NaN)),
      stdDevMs: median(pairs.map(({ o, j }) => o.detectors[i][j].stdDevMs ?? NaN)),
    })),
    deaths: [],
    messagesPerNodeRound: perNodeRound(sim.messages),
    exchangesPerNodeRound: perNodeRound(sim.exchanges),
    fullBytesPerNodeRound: perNodeRound(avg((s) => s.full) * sim.exchanges),
    digestBytesPerNodeRound: perNodeRound(avg((s) => s.digest) * sim.exchanges),
    digestMessagesPerNodeRound: perNodeRound(avg((s) => s.digestMessages) * sim.exchanges),
    bytesPerEntry: samples.length ? samples.reduce((a, s) => a + s.full, 0) / samples.reduce((a, s) => a + s.entries, 0) : NaN,
    byteSamples: samples.length,
  }

  // Deaths, one at a time, each at a random moment of a round, followed until every live node's phi
  // for it exceeds the highest threshold under every configuration (or the cap).
  const before = sim.falseSuspicions.map((xs) => [...xs])
  let r = rounds
  for (let d = 0; d < cfg.deaths(size); d++) {
    const candidates = sim.nodes.filter((n) => n.index >= SEEDS && sim.alive(n.index))
    const victim = candidates[Math.floor(sim.rng() * candidates.length)].index
    const deathAt = r * ROUND_MS + sim.rng() * ROUND_MS
    sim.deathAt[victim] = deathAt
    const all = configs.map(() => T.map(() => Infinity))
    const first = configs.map(() => T.map(() => Infinity))
    const check = (t: number) => {
      if (t < deathAt) return
      for (let c = 0; c < configs.length; c++) {
        let min = Infinity
        let max = -Infinity
        for (const o of sim.nodes) {
          if (!sim.alive(o.index)) continue
          const phi = o.detectors[c][victim].phi(t)
          if (phi < min) min = phi
          if (phi > max) max = phi
        }
        for (let k = 0; k < T.length; k++) {
          if (all[c][k] === Infinity && min > T[k]) all[c][k] = (t - deathAt) / 1000
          if (first[c][k] === Infinity && max > T[k]) first[c][k] = (t - deathAt) / 1000
        }
      }
    }
    const done = () => all.every((xs) => xs[T.length - 1] !== Infinity)
    const cap = r + DEATH_ROUND_CAP
    for (; r < cap && !done(); r++) sim.round(r, check)
    result.deaths.push({ allSeconds: all, firstSeconds: first })
  }
  result.configs.forEach((c, i) => (c.falseSuspicionsDuringDeaths = sim.falseSuspicions[i].map((x, k) => x - before[i][k])))
  return result
}

// --- the runs, within the time budget ----------------------------------------------------------------

function median(xs: number[]): number {
  const s = xs.filter((x) => !Number.isNaN(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}
const max = (xs: number[]) => (xs.length ? xs.reduce((a, b) => Math.max(a, b), -Infinity) : NaN)
const sum = (xs: number[]) => xs.reduce((a, b) => a + b, 0)

const started = performance.now()
const elapsed = () => (performance.now() - started) / 1000
const seedFor = (size: number, run: number, kind: number) => cfg.seed * 1_000_003 + size * 1009 + run * 31 + kind

interface SizeReport {
  size: number
  configs: string[]
  join: JoinResult[]
  steady: SteadyResult[]
  /** Runs not started because they would have overrun SIM_BUDGET_S. */
  skipped: { join: number; steady: number }
  seconds: number
}

// Cost model for the budget: rounds × N² × configs, calibrated on the runs already done.
let secondsPerUnit = 0
const units = (size: number, rounds: number, configs: number) => rounds * size * size * (1 + 0.35 * (configs - 1))
function timed<T>(work: number, run: () => T): T | undefined {
  const guess = secondsPerUnit > 0 ? secondsPerUnit * work : 0
  if (elapsed() + guess > cfg.budgetSeconds) return undefined
  const t0 = performance.now()
  const result = run()
  const s = (performance.now() - t0) / 1000
  secondsPerUnit = Math.max(secondsPerUnit, s / work)
  return result
}

const reports: SizeReport[] = cfg.sizes.map((size) => ({
  size,
  configs: (size <= cfg.sweepMaxSize ? cfg.configs : cfg.configs.slice(0, cfg.bigConfigs)).map((c) => c.label),
  join: [],
  steady: [],
  skipped: { join: 0, steady: 0 },
  seconds: 0,
}))
// Joins first (cheap, and the figure every size must have), then the steady runs, smallest first.
for (const rep of reports) {
  const t0 = performance.now()
  for (let run = 0; run < cfg.joinRuns(rep.size); run++) {
    const j = timed(units(rep.size, JOIN_WARMUP_ROUNDS + 10, 1), () => joinRun(rep.size, seedFor(rep.size, run, 1)))
    if (j) rep.join.push(j)
    else rep.skipped.join++
  }
  rep.seconds += (performance.now() - t0) / 1000
}
for (const rep of reports) {
  const t0 = performance.now()
  const configs = cfg.configs.filter((c) => rep.configs.includes(c.label))
  const rounds = cfg.steadyRounds(rep.size) + 15 * cfg.deaths(rep.size)
  for (let run = 0; run < cfg.steadyRuns(rep.size); run++) {
    const s = timed(units(rep.size, rounds, configs.length), () => steadyRun(rep.size, seedFor(rep.size, run, 2), configs))
    if (s) rep.steady.push(s)
    else rep.skipped.steady++
  }
  rep.seconds += (performance.now() - t0) / 1000
  process.stderr.write(`gossip-sim: ${rep.size} nodes done (${elapsed().toFixed(0)} s)\n`)
}

// --- report ------------------------------------------------------------------------------------------

const fmt = (x: number, digits = 1) => (Number.isFinite(x) ? x.toFixed(digits) : x === Infinity ? 'cap' : '–')
const kib = (x: number) => (Number.isFinite(x) ? `${(x / 1024).toFixed(1)} KiB` : '–')
const mm = (xs: number[], digits = 1) => (xs.length ? `${fmt(median(xs), digits)} / ${fmt(max(xs), digits)}` : '–')

const T = cfg.thresholds
const k8 = Math.max(0, T.indexOf(8))
const primary = cfg.configs[0]
const cols = reports.map((r) => `${r.size} nodes`)
const deaths = (r: SizeReport) => r.steady.flatMap((s) => s.deaths)
const rows: string[][] = []
const row = (label: string, f: (r: SizeReport) => string) => rows.push([label, ...reports.map(f)])
row('runs: join / steady (deaths) [skipped for time]', (r) => `${r.join.length} / ${r.steady.length} (${deaths(r).length})${r.skipped.join + r.skipped.steady ? ` [${r.skipped.join} / ${r.skipped.steady}]` : ''}`)
row('join via one seed → known by all: rounds (median / max)', (r) => mm(r.join.map((j) => j.rounds), 0))
row('… seconds from its first gossip (median / max)', (r) => mm(r.join.map((j) => j.seconds)))
row('steady run length (rounds, no deaths)', (r) => (r.steady.length ? String(cfg.steadyRounds(r.size)) : '–'))
row(`death → every live node's phi > ${T[k8]}: seconds (median / max)`, (r) => mm(deaths(r).map((d) => d.allSeconds[0][k8])))
row(`death → every live node's phi > ${T[k8]}: rounds (median / max)`, (r) => mm(deaths(r).map((d) => Math.ceil((d.allSeconds[0][k8] * 1000) / ROUND_MS)), 0))
row(`death → first live node's phi > ${T[k8]}: seconds (median / max)`, (r) => mm(deaths(r).map((d) => d.firstSeconds[0][k8])))
row(`false suspicions (phi > ${T[k8]} for a live node), steady run: silences (median / max per run)`, (r) => mm(r.steady.map((s) => s.configs[0].falseSuspicions[k8]), 0))
row(`… of which after the cold start's first ${WARMUP_ROUNDS} rounds`, (r) => mm(r.steady.map((s) => s.configs[0].falseSuspicionsWarm[k8]), 0))
row('… while deaths were followed (median / max per run)', (r) => mm(r.steady.map((s) => s.configs[0].falseSuspicionsDuringDeaths[k8]), 0))
row('highest phi a node had for a live peer (median / max per run)', (r) => mm(r.steady.map((s) => s.configs[0].peakPhiLive), 2))
row(`… after the first ${WARMUP_ROUNDS} rounds`, (r) => mm(r.steady.map((s) => s.configs[0].peakPhiLiveWarm), 2))
row('gossiped heartbeat inter-arrival in the window: mean / std dev (ms, median)', (r) => `${fmt(median(r.steady.map((s) => s.configs[0].meanIntervalMs)), 0)} / ${fmt(median(r.steady.map((s) => s.configs[0].stdDevMs)), 0)}`)
row('push-pull exchanges / node / round', (r) => fmt(median(r.steady.map((s) => s.exchangesPerNodeRound)), 2))
row('full state: messages / node / round', (r) => fmt(median(r.steady.map((s) => s.messagesPerNodeRound)), 2))
row('full state: bytes / node / round', (r) => kib(median(r.steady.map((s) => s.fullBytesPerNodeRound))))
row('digest-first: messages / node / round', (r) => fmt(median(r.steady.map((s) => s.digestMessagesPerNodeRound)), 2))
row('digest-first: bytes / node / round', (r) => kib(median(r.steady.map((s) => s.digestBytesPerNodeRound))))
row('msgpack bytes per member entry', (r) => fmt(median(r.steady.map((s) => s.bytesPerEntry)), 0))
row('simulation wall time (s)', (r) => fmt(r.seconds))
const table = mdTable(['figure', ...cols], rows, ['---', ...cols.map(() => '---:')])

// Every configuration × threshold: detection (every live node) and false suspicions over all runs.
const sweepRows: string[][] = []
for (const conf of cfg.configs) {
  if (!reports.some((r) => r.steady.length > 0 && r.configs.includes(conf.label))) continue
  for (const [k, t] of T.entries()) {
    sweepRows.push([
      conf.label,
      String(t),
      ...reports.map((r) => {
        const c = r.configs.indexOf(conf.label)
        if (c < 0 || r.steady.length === 0) return 'not run'
        const fs = sum(r.steady.map((s) => s.configs[c].falseSuspicions[k] + s.configs[c].falseSuspicionsDuringDeaths[k]))
        const warm = sum(r.steady.map((s) => s.configs[c].falseSuspicionsWarm[k] + s.configs[c].falseSuspicionsDuringDeaths[k]))
        return `${mm(deaths(r).map((d) => d.allSeconds[c][k]))} · ${fs} (${warm})`
      }),
    ])
  }
}
const sweepTable = mdTable(['detector', 'threshold', ...cols.map((c) => `${c}: s until all suspect (median / max) · false suspicions (after warm-up)`)], sweepRows, ['---', '---:', ...cols.map(() => '---')])

const wall = elapsed()
console.log(
  `## Gossip simulation (seed ${cfg.seed}; round ${ROUND_MS} ms, jitter ±${cfg.jitterMs} ms, seed gossip p=${cfg.seedProb}; ` +
    `peers chosen with "${primary.label}" ${JSON.stringify(primary.options)})\n`,
)
console.log(table)
console.log(`\n### Detector configurations × thresholds (same runs: one detector per configuration per pair, fed the same arrivals)\n`)
console.log(cfg.configs.map((c) => `- ${c.label}: ${JSON.stringify(c.options)}`).join('\n') + '\n')
console.log(sweepTable)
console.log(`\nwall time ${wall.toFixed(1)} s`)

mkdirSync(resultsDir, { recursive: true })
const json = {
  date: new Date().toISOString(),
  config: {
    ...cfg,
    joinRuns: Object.fromEntries(cfg.sizes.map((n) => [n, cfg.joinRuns(n)])),
    steadyRuns: Object.fromEntries(cfg.sizes.map((n) => [n, cfg.steadyRuns(n)])),
    steadyRounds: Object.fromEntries(cfg.sizes.map((n) => [n, cfg.steadyRounds(n)])),
    deaths: Object.fromEntries(cfg.sizes.map((n) => [n, cfg.deaths(n)])),
    checkMs: CHECK_MS,
    seeds: SEEDS,
    joinWarmupRounds: JOIN_WARMUP_ROUNDS,
    joinRoundCap: JOIN_ROUND_CAP,
    deathRoundCap: DEATH_ROUND_CAP,
  },
  wallSeconds: wall,
  sizes: reports,
}
// Infinity (not reached within a cap) becomes null in JSON.
writeFileSync(path.join(resultsDir, 'gossip-sim.json'), JSON.stringify(json, (_k, v) => (v === Infinity ? null : v), 2) + '\n')
