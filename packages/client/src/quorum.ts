// Quorum counting as data, after Riak's riak_kv_get_core: the coordinator feeds each replica's result
// in and asks whether the requirements are met, out of reach, or still open. No promises, no timers:
// a write's whole state machine can be driven step by step in a test.
import type { Member, ReplicaFailure } from '@zerohop/core'

/** `need` successes among `members`. While a ring changes hands a quorum is needed in both rings. */
export interface Requirement {
  members: readonly Member[]
  need: number
}

/** What one replica can still do for a quorum. */
export type Standing = 'counted' | 'open' | 'lost'

export type Verdict = 'met' | 'failed' | 'waiting'

/** Met when every requirement has its successes; failed as soon as one can no longer get them. */
export function verdict(requirements: readonly Requirement[], standing: (id: string) => Standing): Verdict {
  let met = true
  for (const r of requirements) {
    let counted = 0
    let open = 0
    for (const m of r.members) {
      const s = standing(m.id)
      if (s === 'counted') counted++
      else if (s === 'open') open++
    }
    if (counted + open < r.need) return 'failed'
    if (counted < r.need) met = false
  }
  return met ? 'met' : 'waiting'
}

/** A store the coordinator must send: to a replica of its own (`hintFor` absent) or to a fallback. */
export interface StoreAction {
  to: Member
  /** The replica whose copy this is, when `to` keeps it as a hint. */
  hintFor?: string
  /** The store counts for nothing (the coordinator keeps the hint of a slot with no fallback left). */
  untracked?: boolean
}

export interface WriteQuorumOptions {
  requirements: readonly Requirement[]
  /** The replica that minted the version: it holds the set already. */
  coordinator: Member
  /** Nodes past the top N of the preference list, in order: where hints go. */
  spares: readonly Member[]
  /** Count only the key's own replicas (PW): hints are still sent, but do not count. */
  strict: boolean
  /** Whether the coordinator believes a node up (queried, never changed). */
  up(id: string): boolean
  /** Whether the operation's deadline has passed or it was aborted. */
  over(): boolean
}

interface Slot {
  member: Member
  primary: 'idle' | 'pending' | 'acked' | 'failed'
  /** At most one hint path per slot: `sending` while it walks the spares. */
  hint: 'none' | 'sending' | 'stored' | 'spent'
  /** Nothing left that could make this slot count. */
  exhausted: boolean
}

/**
 * One write's replication after the coordinator minted its version (a sloppy quorum). A replica
 * believed down, whose store failed, or that stays silent for half the time left, gets its copy as a
 * hint on the next healthy spare; with no spare left the coordinator keeps the hint (counted once).
 */
export class WriteQuorum {
  readonly failures: ReplicaFailure[] = []
  readonly #o: WriteQuorumOptions
  readonly #slots = new Map<string, Slot>()
  #spare = 0

  constructor(o: WriteQuorumOptions) {
    this.#o = o
    for (const r of o.requirements) {
      for (const m of r.members) if (!this.#slots.has(m.id)) this.#slots.set(m.id, { member: m, primary: 'idle', hint: 'none', exhausted: false })
    }
    const own = this.#slots.get(o.coordinator.id)
    if (own) own.primary = 'acked'
  }

  /** The first stores: every replica but the coordinator, or its fallback if it is believed down. */
  start(): StoreAction[] {
    const out: StoreAction[] = []
    for (const s of this.#slots.values()) {
      if (s.member.id === this.#o.coordinator.id) continue
      const up = this.#o.up(s.member.id)
      // Strict calls still try every primary: only primaries count for them.
      if (this.#o.strict || up) {
        out.push(this.#tryPrimary(s))
        if (this.#o.strict && !up) out.push(...this.#startHint(s))
      } else {
        this.failures.push({ id: s.member.id, url: s.member.url, cause: 'down', message: 'believed down (back-off or the cluster failure detector); its copy went to a fallback as a hint' })
        out.push(...this.#startHint(s))
      }
    }
    return out
  }

  /** A store answered (or failed); returns the stores to send next. `ringRefused`: the node refused our ring. */
  result(action: StoreAction, ok: boolean, failure?: ReplicaFailure, ringRefused = false): StoreAction[] {
    if (action.untracked) return []
    const slot = this.#slots.get(action.hintFor ?? action.to.id)
    if (!slot) return []
    if (action.hintFor !== undefined) {
      if (ok) {
        slot.hint = 'stored'
        return []
      }
      if (failure) this.failures.push(failure)
      return this.#fallback(slot)
    }
    if (ok) {
      slot.primary = 'acked'
      return []
    }
    slot.primary = 'failed'
    if (failure) this.failures.push(failure)
    const over = this.#o.over()
    if (ringRefused || over || slot.hint === 'stored' || slot.hint === 'spent' || this.#o.strict) slot.exhausted = true
    return ringRefused || over ? [] : this.#startHint(slot)
  }

  /** The primary of `id` has been silent for half the time left: send its copy to a fallback too. */
  hedge(id: string): StoreAction[] {
    const slot = this.#slots.get(id)
    if (!slot || slot.primary !== 'pending' || this.#o.over()) return []
    return this.#startHint(slot)
  }

  standing(id: string): Standing {
    const s = this.#slots.get(id)
    if (!s) return 'lost'
    if (s.primary === 'acked' || (!this.#o.strict && s.hint === 'stored')) return 'counted'
    return s.exhausted ? 'lost' : 'open'
  }

  verdict(): Verdict {
    return verdict(this.#o.requirements, (id) => this.standing(id))
  }

  /** Replicas that count toward the quorum. */
  acked(): number {
    let n = 0
    for (const id of this.#slots.keys()) if (this.standing(id) === 'counted') n++
    return n
  }

  #tryPrimary(s: Slot): StoreAction {
    s.primary = 'pending'
    return { to: s.member }
  }

  #startHint(s: Slot): StoreAction[] {
    if (s.hint !== 'none') return []
    s.hint = 'sending'
    return this.#fallback(s)
  }

  #fallback(s: Slot): StoreAction[] {
    const { spares, up } = this.#o
    while (this.#spare < spares.length && !up(spares[this.#spare].id)) this.#spare++
    const to = spares[this.#spare++]
    if (to) return [{ to, hintFor: s.member.id }]
    // Nowhere else to go: the coordinator keeps the hint, so the copy reaches the replica when it is
    // back (it does not count twice). A primary believed down is still tried: it may be back.
    s.hint = 'spent'
    const over = this.#o.over()
    const out: StoreAction[] = over ? [] : [{ to: this.#o.coordinator, hintFor: s.member.id, untracked: true }]
    if (s.primary === 'pending') return out
    if (s.primary !== 'idle' || over) s.exhausted = true
    else out.push(this.#tryPrimary(s))
    return out
  }
}
