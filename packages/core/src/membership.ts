// Cluster membership as gossiped state: one entry per node, owned and versioned by that node, merged
// monotonically (the newer entry wins), so gossip in any order converges. From the entries follow two
// rings: `current` (who holds the data now) and `next` (who will once every transfer is done). While
// they differ, reads and writes need their quorum in both, so a quorum of either side always overlaps.
import { ID_PATTERN, md5, Ring, type Departed, type Member } from './ring.js'

export type MemberStatus = 'joining' | 'normal' | 'leaving' | 'left'

export const MEMBER_STATUSES: readonly MemberStatus[] = ['joining', 'normal', 'leaving', 'left']

export interface MemberState {
  id: string
  /** Base URL peers and clients use. */
  url: string
  /** Failure domain label (informational for now). */
  zone: string
  weight: number
  status: MemberStatus
  /** Changes when the node loses its disk or stops uncleanly without fsync (the actor id suffix). */
  incarnation: string
  /** Bumped by the owner on every change but the heartbeat; by an operator's node for a removal. */
  version: number
  /** Bumped by the owner every gossip round: arrivals feed the failure detector. */
  heartbeat: number
  /** When the node joined (ms since 1970; 0 for the founding members). Orders the ring's history. */
  since: number
  /** When the node started leaving (ms), 0 while it is not leaving. */
  until: number
  /** Set when an operator removed the node (it was dead): others transfer its data on its behalf. */
  removed: boolean
  /** Epoch of the `next` ring whose gained partitions this node holds, '' if none. */
  ready: string
  /**
   * Epoch of the `current` ring once this node has dropped every partition it handed off (it holds no
   * data outside that ring); '' or absent before. Tombstones are reaped only when every member says so.
   */
  dropped?: string
}

const STATUS_RANK: Record<MemberStatus, number> = { joining: 0, normal: 1, leaving: 2, left: 3 }

/**
 * Total order on two versions of one member's entry: a removal, then the higher version, then the
 * later status, then the higher heartbeat. Ties on all of these only occur between equal content,
 * except for fields compared last so that every node picks the same winner. A removal wins over any
 * version: the node that writes it may not have heard of the removed node's latest entries (it was
 * cut off from them, or they were written after), and a removed id never comes back.
 */
export function compareMemberStates(a: MemberState, b: MemberState): number {
  return (
    Number(a.removed) - Number(b.removed) ||
    a.version - b.version ||
    STATUS_RANK[a.status] - STATUS_RANK[b.status] ||
    a.heartbeat - b.heartbeat ||
    a.until - b.until ||
    cmp(a.ready, b.ready) ||
    cmp(a.dropped ?? '', b.dropped ?? '') ||
    cmp(a.url, b.url) ||
    cmp(a.incarnation, b.incarnation) ||
    a.weight - b.weight ||
    a.since - b.since ||
    cmp(a.zone, b.zone)
  )
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0
}

/**
 * Merge remote entries into `local` (mutated). Returns the entries that changed here, so callers can
 * tell a heartbeat from a change of the ring.
 */
export function mergeMembers(local: Map<string, MemberState>, remote: Iterable<MemberState>): MemberState[] {
  const changed: MemberState[] = []
  for (const r of remote) {
    const l = local.get(r.id)
    if (!l || compareMemberStates(r, l) > 0) {
      local.set(r.id, { ...r })
      changed.push(r)
    }
  }
  return changed
}

/** Whether two versions of an entry differ in anything but the heartbeat (so the rings may differ). */
export function memberChanged(a: MemberState | undefined, b: MemberState): boolean {
  return !a || compareMemberStates({ ...a, heartbeat: 0 }, { ...b, heartbeat: 0 }) !== 0
}

/** Bounds of a node's weight (--weight), for the node's own options and for entries received. */
export const MIN_WEIGHT = 0.001
export const MAX_WEIGHT = 1000
/** Most member entries one gossip message or ring may carry, and one node keeps. */
export const MAX_MEMBERS = 4096
/** Largest version or heartbeat an entry may carry: bumping it stays a safe integer for ages. */
export const MAX_MEMBER_COUNTER = 2 ** 48
/** Largest join or leave time (ms since 1970): the latest a Date can hold, below 2^53. */
export const MAX_MEMBER_TIME = 8.64e15
const MAX_URL_LENGTH = 256
/** A ring's epoch (Ring.epoch: 16 hex digits) or '' (ready, dropped). */
const RING_EPOCH_PATTERN = /^(?:[0-9a-f]{16})?$/

/**
 * One member entry received from the network (gossip, a ring, the node's own disk), rebuilt from its
 * known fields only, each checked for type and range; or why it is not one. Unknown fields are dropped,
 * not copied: whatever a peer adds (a 64-bit integer decodes as a BigInt, which JSON cannot write) must
 * never reach the entries this node serves in GET /v1/ring.
 */
export function parseMemberState(x: unknown): MemberState | string {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) return 'not an object'
  const m = x as Record<string, unknown>
  const { id, url, zone, weight, status, incarnation, version, heartbeat, since, until, removed, ready, dropped } = m
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) return 'bad id'
  const bad = (field: string) => `member ${id}: bad ${field}`
  if (typeof url !== 'string' || !isOrigin(url)) return bad('url')
  if (typeof zone !== 'string' || !ID_PATTERN.test(zone)) return bad('zone')
  if (typeof weight !== 'number' || !(weight >= MIN_WEIGHT && weight <= MAX_WEIGHT)) return bad('weight')
  if (typeof status !== 'string' || !Object.hasOwn(STATUS_RANK, status)) return bad('status')
  if (typeof incarnation !== 'string' || !ID_PATTERN.test(incarnation)) return bad('incarnation')
  if (!isCount(version, MAX_MEMBER_COUNTER)) return bad('version')
  if (!isCount(heartbeat, MAX_MEMBER_COUNTER)) return bad('heartbeat')
  if (!isCount(since, MAX_MEMBER_TIME)) return bad('since')
  if (!isCount(until, MAX_MEMBER_TIME)) return bad('until')
  if (typeof removed !== 'boolean') return bad('removed')
  if (typeof ready !== 'string' || !RING_EPOCH_PATTERN.test(ready)) return bad('ready')
  if (dropped !== undefined && (typeof dropped !== 'string' || !RING_EPOCH_PATTERN.test(dropped))) return bad('dropped')
  const entry: MemberState = { id, url, zone, weight, status: status as MemberStatus, incarnation, version, heartbeat, since, until, removed, ready }
  if (dropped !== undefined) entry.dropped = dropped
  return entry
}

/** Validate one entry received from the network; returns a reason or undefined (see parseMemberState). */
export function invalidMemberState(x: unknown): string | undefined {
  const m = parseMemberState(x)
  return typeof m === 'string' ? m : undefined
}

/**
 * A list of member entries received from the network, each rebuilt (parseMemberState): at most
 * MAX_MEMBERS, one entry per id. Any bad entry refuses the whole list, so nothing is half applied.
 */
export function parseMembers(x: unknown): MemberState[] | string {
  if (!Array.isArray(x)) return 'members must be an array of member entries'
  if (x.length > MAX_MEMBERS) return `members holds ${x.length} entries; at most ${MAX_MEMBERS}`
  const out: MemberState[] = []
  const ids = new Set<string>()
  for (const e of x as unknown[]) {
    const m = parseMemberState(e)
    if (typeof m === 'string') return m
    if (ids.has(m.id)) return `member ${m.id} is listed twice`
    ids.add(m.id)
    out.push(m)
  }
  return out
}

function isCount(x: unknown, max: number): x is number {
  return typeof x === 'number' && Number.isSafeInteger(x) && x >= 0 && x <= max
}

/** An http(s) origin exactly as URL writes it (what config.ts makes of --advertise): no path, user or query. */
function isOrigin(s: string): boolean {
  if (s.length > MAX_URL_LENGTH || !(s.startsWith('http://') || s.startsWith('https://'))) return false
  try {
    return new URL(s).origin === s
  } catch {
    return false
  }
}

/**
 * The time to stamp a join or leave with: now, but after every event in the history. The ring replays
 * joins and leaves in time order; an event stamped before recorded ones would reshuffle most of it.
 */
export function nextEventTime(states: Iterable<MemberState>, now: number): number {
  let latest = 0
  for (const m of states) latest = Math.max(latest, m.since, m.until)
  return Math.max(now, latest + 1)
}

export interface RingParams {
  partitions: number
  n: number
  spares?: number
}

function asMember(s: MemberState): Member {
  return { id: s.id, url: s.url, weight: s.weight, since: s.since }
}

function asDeparted(s: MemberState): Departed {
  return { id: s.id, weight: s.weight, since: s.since, until: s.until }
}

/**
 * The rings a set of member entries implies. `current` counts normal and leaving members (left ones
 * are its history); `next` counts joining and normal members (leaving and left ones are its history).
 * A change completes when its joiners and leavers rewrite their own status (`normal`, `left`), which
 * each does only once every member of `next` reports that it holds its share of `next` (`ready`): so
 * a completed change can never be undone by what a node learns later.
 */
export class ClusterView {
  readonly current: Ring
  readonly next: Ring
  /** True while `current` and `next` differ: quorums are needed in both. */
  readonly transition: boolean
  /** Sum of entry versions: grows with every change any node learns (informational; not an order). */
  readonly version: number
  /** `${version}-${digest of both rings}`: sent on every request and response. */
  readonly epoch: string
  readonly members: ReadonlyMap<string, MemberState>

  constructor(states: Iterable<MemberState>, params: RingParams) {
    const all = [...states].sort((a, b) => cmp(a.id, b.id))
    this.members = new Map(all.map((s) => [s.id, s]))
    this.version = all.reduce((sum, s) => sum + s.version, 0)
    const options = { partitions: params.partitions, n: params.n, spares: params.spares }
    const inCurrent = all.filter((s) => s.status === 'normal' || s.status === 'leaving')
    const inNext = all.filter((s) => s.status === 'joining' || s.status === 'normal')
    // Only joiners known (this node has not heard from the cluster yet): they serve as current too.
    const currentMembers = inCurrent.length > 0 ? inCurrent : inNext
    this.current = new Ring(currentMembers.map(asMember), { ...options, history: all.filter((s) => s.status === 'left').map(asDeparted) })
    // With no one joining or leaving, next is current (not built twice). A cluster whose every member
    // is leaving keeps its current ring.
    const changing = all.some((s) => s.status === 'joining' || s.status === 'leaving')
    const next = changing && inNext.length > 0 ? new Ring(inNext.map(asMember), { ...options, history: all.filter((s) => s.status === 'leaving' || s.status === 'left').map(asDeparted) }) : this.current
    this.transition = next.epoch !== this.current.epoch
    this.next = this.transition ? next : this.current
    this.digest = md5(`${this.current.epoch}/${this.next.epoch}`).toString('hex').slice(0, 12)
    this.epoch = `${this.version}-${this.digest}`
  }

  /**
   * No change in progress, and every member has dropped the partitions it handed off: no node holds
   * an older copy of a partition outside its preference list (which tombstone reaping relies on).
   */
  get settled(): boolean {
    if (this.transition) return false
    for (const m of this.members.values()) {
      if (m.status !== 'left' && !m.removed && m.dropped !== this.current.epoch) return false
    }
    return true
  }

  /** Every member of `next` holds its share of it: the joiners and leavers may now rewrite their status. */
  get nextReady(): boolean {
    for (const m of this.members.values()) {
      if ((m.status === 'joining' || m.status === 'normal') && m.ready !== this.next.epoch) return false
    }
    return true
  }

  /**
   * Whether `epoch` names other rings than this view's (a node refuses requests made with it). Which
   * side is behind cannot be told from the epochs; the SDK resolves it by exchanging member entries
   * with the refusing node, after which both agree. No epoch (curl, other nodes) or a malformed one
   * does not differ.
   */
  differs(epoch: string | undefined | null): boolean {
    // On every request: the common case (the same epoch) costs one string comparison.
    if (epoch === undefined || epoch === null || epoch === this.epoch) return false
    const dash = epoch.indexOf('-')
    if (dash < 1 || epoch.length - dash - 1 !== 12) return false
    return epoch.slice(dash + 1) !== this.digest
  }

  /** The digest part of the epoch: names the current and next rings. */
  readonly digest: string

  /** The top-N replicas of a partition in the current ring, then those of the next ring not in it. */
  replicas(partition: number): { current: readonly Member[]; next: readonly Member[] } {
    const n = this.current.n
    const current = this.current.preferenceList(partition).slice(0, n)
    if (!this.transition) return { current, next: current }
    return { current, next: this.next.preferenceList(partition).slice(0, n) }
  }

  /** Whether a node keeps replicas of the partition in either ring. */
  replicates(id: string, partition: number): boolean {
    const { current, next } = this.replicas(partition)
    return current.some((m) => m.id === id) || next.some((m) => m.id === id)
  }
}
