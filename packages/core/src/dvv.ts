// Dotted version vector sets (Almeida et al., "Scalable and Accurate Causality Tracking for
// Eventually Consistent Stores"; the compact DVVSet Riak 2.0 uses). A set holds, per actor, a counter
// and the values of that actor's most recent dots that no other value supersedes. `sync` keeps exactly
// the values neither side has seen overwritten; `update` mints a new dot that supersedes what the
// writer's context saw, and nothing else, so concurrent writes survive as siblings.
//
// Canonical form: entries sorted by actor, values newest first. Two replicas holding the same set
// encode to the same bytes, which is what makes byte equality (and digests) meaningful.

/** A stored value; `null` is a tombstone (a delete). */
export type Value = Uint8Array | null

/** [actor, counter, values]: the values are the dots counter, counter-1, ... of that actor. */
export type Entry = [actor: string, counter: number, values: Value[]]

/** A DVV set as stored on a replica. */
export type DvvSet = Entry[]

/** The causal context a client carries from a read to its next write. */
export type VersionVector = [actor: string, counter: number][]

export const emptySet: DvvSet = []

function mergeEntry(a: Entry, b: Entry): Entry {
  const [id, n1, l1] = a
  const [, n2, l2] = b
  // Each side knows dots up to its counter; values it holds are the newest dots it has not superseded.
  // Keep the values that neither side has seen superseded: dots above max(n1-|l1|, n2-|l2|).
  if (n1 >= n2) {
    if (n1 - l1.length >= n2 - l2.length) return a
    return [id, n1, l1.slice(0, n1 - n2 + l2.length)]
  }
  if (n2 - l2.length >= n1 - l1.length) return b
  return [id, n2, l2.slice(0, n2 - n1 + l1.length)]
}

/** Merge two replicas' sets: commutative, associative, idempotent. */
export function sync(a: DvvSet, b: DvvSet): DvvSet {
  if (a.length === 0) return b
  if (b.length === 0) return a
  const out: DvvSet = []
  let i = 0
  let j = 0
  while (i < a.length && j < b.length) {
    const x = a[i]
    const y = b[j]
    if (x[0] < y[0]) {
      out.push(x)
      i++
    } else if (x[0] > y[0]) {
      out.push(y)
      j++
    } else {
      out.push(mergeEntry(x, y))
      i++
      j++
    }
  }
  while (i < a.length) out.push(a[i++])
  while (j < b.length) out.push(b[j++])
  return out
}

export function syncAll(sets: readonly DvvSet[]): DvvSet {
  let acc: DvvSet = []
  for (const s of sets) acc = sync(acc, s)
  return acc
}

/** The version vector summarising everything the set has seen: the context handed to clients. */
export function join(set: DvvSet): VersionVector {
  return set.map(([id, n]) => [id, n])
}

/**
 * A write coordinated by `actor`: the new value supersedes every dot in `context` (what the client
 * read) and stays concurrent with everything else the local replica holds.
 */
export function update(context: VersionVector, local: DvvSet, actor: string, value: Value): DvvSet {
  // An actor listed twice counts once, at its highest counter (a duplicate would break sync's merge).
  const max = new Map<string, number>()
  for (const [id, n] of context) max.set(id, Math.max(max.get(id) ?? 0, n))
  const seen: DvvSet = [...max].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0)).map(([id, n]) => [id, n, []])
  return event(sync(seen, local), actor, value)
}

function event(set: DvvSet, actor: string, value: Value): DvvSet {
  const out: DvvSet = []
  let done = false
  for (const e of set) {
    if (!done && e[0] === actor) {
      out.push([actor, e[1] + 1, [value, ...e[2]]])
      done = true
    } else if (!done && e[0] > actor) {
      out.push([actor, 1, [value]], e)
      done = true
    } else out.push(e)
  }
  if (!done) out.push([actor, 1, [value]])
  return out
}

/** A set holding only tombstones: a deleted key (the empty set is not one). */
export function onlyTombstones(set: DvvSet): boolean {
  for (const e of set) for (const v of e[2]) if (v !== null) return false
  return set.length > 0
}

/** Every value in the set, tombstones included. */
export function values(set: DvvSet): Value[] {
  const out: Value[] = []
  for (const e of set) for (const v of e[2]) out.push(v)
  return out
}

/** The live (non-tombstone) concurrent values: what a reader sees as siblings. */
export function siblings(set: DvvSet): Uint8Array[] {
  const out: Uint8Array[] = []
  for (const e of set) for (const v of e[2]) if (v !== null) out.push(v)
  return out
}

/** True when vector `a` has seen everything `b` has. */
export function descends(a: VersionVector, b: VersionVector): boolean {
  const m = new Map(a)
  return b.every(([id, n]) => (m.get(id) ?? 0) >= n)
}
