// A small simulated system for the DVV property tests: 2-4 replicas, a few clients, and a random
// sequence of reads, writes (with a read context or blind), tombstones and replica-to-replica syncs.
//
// Next to the real DvvSets, the simulation keeps an independent model that does not look at version
// vectors at all: each replica's `known` set of write ids (its causal history), and each write's
// `seen` set (the write ids in the history its client had read). The model's notion of "u is
// superseded" is "some write w in the history has u in w.seen". The tests compare the real sets against
// this model, so a DVV bug shows up as a disagreement rather than being baked into an expectation.
//
// Dots are only ever minted by `update` on the coordinating replica's own current set, so every
// history is one a real cluster could produce (unique dots per actor, contexts that are joins of real
// sets).
import fc from 'fast-check'
import { join, sync, update, type DvvSet, type Value, type VersionVector } from '../src/dvv.js'

export type Op =
  | { t: 'read'; client: number; replicas: number[] }
  | { t: 'write'; client: number; replica: number; blind: boolean; tomb: boolean; adopt: boolean }
  | { t: 'sync'; into: number; from: number }

export interface Write {
  id: number
  /** Index of the replica that coordinated it. */
  replica: number
  actor: string
  /** The dot the model predicts: the replica's n-th coordinated write is counter n of its actor. */
  counter: number
  value: Value
  /** The context the client sent. */
  context: VersionVector
  /** Model: write ids the client had read (empty for a blind write). */
  seen: ReadonlySet<number>
}

/** A set some replica held at some point, with the model's causal history for it. */
export interface Snapshot {
  set: DvvSet
  known: ReadonlySet<number>
}

export interface History {
  actors: string[]
  writes: Write[]
  /** Every set any replica held (after each step), in order. */
  snapshots: Snapshot[]
  /** The replicas' final states. */
  replicas: Snapshot[]
}

interface ClientState {
  context: VersionVector
  seen: Set<number>
}

export const enc = new TextEncoder()

export function valueOf(id: number): Uint8Array {
  return enc.encode(`w${id}`)
}

export function dotKey(actor: string, counter: number): string {
  return `${actor}#${counter}`
}

/** Decode a compact set into its dots: entry [a, n, [v0, v1, ...]] holds dots a#n, a#(n-1), ... */
export function dotsOf(set: DvvSet): Map<string, Value> {
  const out = new Map<string, Value>()
  for (const [actor, n, vs] of set) vs.forEach((v, j) => out.set(dotKey(actor, n - j), v))
  return out
}

export function arbOps(maxOps = 30): fc.Arbitrary<{ replicaCount: number; ops: Op[] }> {
  const idx = fc.nat({ max: 3 })
  const op: fc.Arbitrary<Op> = fc.oneof(
    { weight: 3, arbitrary: fc.record({ t: fc.constant('read' as const), client: fc.nat({ max: 2 }), replicas: fc.uniqueArray(idx, { minLength: 1, maxLength: 2 }) }) },
    {
      weight: 4,
      arbitrary: fc.record({
        t: fc.constant('write' as const),
        client: fc.nat({ max: 2 }),
        replica: idx,
        blind: fc.integer({ min: 0, max: 3 }).map((x) => x === 0),
        tomb: fc.integer({ min: 0, max: 5 }).map((x) => x === 0),
        adopt: fc.boolean(),
      }),
    },
    { weight: 3, arbitrary: fc.record({ t: fc.constant('sync' as const), into: idx, from: idx }) },
  )
  return fc.record({ replicaCount: fc.integer({ min: 2, max: 4 }), ops: fc.array(op, { minLength: 1, maxLength: maxOps, size: 'max' }) })
}

/** Run a generated op sequence; `check` (if given) runs after every step with the current state. */
export function simulate(replicaCount: number, ops: readonly Op[], check?: (h: History) => void): History {
  const actors = Array.from({ length: replicaCount }, (_, i) => `r${i + 1}~x`)
  const sets: DvvSet[] = actors.map(() => [])
  const known: Set<number>[] = actors.map(() => new Set())
  const minted: number[] = actors.map(() => 0)
  const clients: ClientState[] = [0, 1, 2].map(() => ({ context: [], seen: new Set() }))
  const writes: Write[] = []
  const snapshots: Snapshot[] = []
  const state = (): History => ({
    actors,
    writes,
    snapshots,
    replicas: sets.map((set, i) => ({ set, known: new Set(known[i]) })),
  })
  for (const op of ops) {
    if (op.t === 'read') {
      const rs = [...new Set(op.replicas.map((r) => r % replicaCount))]
      const c = clients[op.client]
      // A client reading several replicas merges what they returned, as a quorum read does.
      const merged = rs.reduce<DvvSet>((acc, r) => sync(acc, sets[r]), [])
      c.context = join(merged)
      c.seen = new Set(rs.flatMap((r) => [...known[r]]))
    } else if (op.t === 'write') {
      const r = op.replica % replicaCount
      const c = clients[op.client]
      const context = op.blind ? [] : c.context
      const seen = op.blind ? new Set<number>() : new Set(c.seen)
      const id = writes.length
      const value = op.tomb ? null : valueOf(id)
      minted[r]++
      const w: Write = { id, replica: r, actor: actors[r], counter: minted[r], value, context, seen }
      writes.push(w)
      sets[r] = update(context, sets[r], actors[r], value)
      known[r] = new Set([...known[r], ...seen, id])
      snapshots.push({ set: sets[r], known: new Set(known[r]) })
      // A put returns the new context; a client may carry it on to its next write.
      if (op.adopt) {
        c.context = join(sets[r])
        c.seen = new Set(known[r])
      }
    } else {
      const into = op.into % replicaCount
      const from = op.from % replicaCount
      sets[into] = sync(sets[into], sets[from])
      known[into] = new Set([...known[into], ...known[from]])
      snapshots.push({ set: sets[into], known: new Set(known[into]) })
    }
    check?.(state())
  }
  return state()
}

/** Model: the writes of `known` that no write of `known` superseded. */
export function expectedLive(known: ReadonlySet<number>, writes: readonly Write[]): Set<number> {
  const live = new Set(known)
  for (const x of known) for (const u of writes[x].seen) live.delete(u)
  return live
}

/** Model: the version vector of a causal history (max counter per actor). */
export function expectedVector(known: ReadonlySet<number>, writes: readonly Write[]): Map<string, number> {
  const vv = new Map<string, number>()
  for (const id of known) {
    const w = writes[id]
    vv.set(w.actor, Math.max(vv.get(w.actor) ?? 0, w.counter))
  }
  return vv
}

/** A snapshot for the merge of several snapshots (real sync, model union). */
export function merge(...xs: Snapshot[]): Snapshot {
  return { set: xs.reduce<DvvSet>((acc, x) => sync(acc, x.set), []), known: new Set(xs.flatMap((x) => [...x.known])) }
}
