// Property tests for the DVV sets over realistic histories (see dvv-model.ts): replicas that mint dots
// only through `update` on their own set, clients that read (possibly from two replicas), write with
// that context, write blind, delete, and replicas that sync in arbitrary directions.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { join, siblings, sync, syncAll, type DvvSet } from '../src/dvv.js'
import { checkSet, encodeSet } from '../src/codec.js'
import { arbOps, dotKey, dotsOf, expectedLive, expectedVector, merge, simulate, valueOf, type History, type Op, type Snapshot } from './dvv-model.js'

const RUNS = 150

function bytesOfSet(s: DvvSet): string {
  return encodeSet(s).toString('hex')
}

/** The real set holds exactly the model's live writes, each at its predicted dot with its value. */
function expectAgreesWithModel(s: Snapshot, h: History): void {
  const dots = dotsOf(s.set)
  const live = expectedLive(s.known, h.writes)
  const expected = new Map([...live].map((id) => [dotKey(h.writes[id].actor, h.writes[id].counter), h.writes[id].value]))
  expect(new Set(dots.keys())).toEqual(new Set(expected.keys()))
  for (const [k, v] of expected) expect(dots.get(k)).toEqual(v)
  // join() is the model's causal history as a vector (the client's context).
  expect(new Map(join(s.set))).toEqual(expectedVector(s.known, h.writes))
  expect(checkSet(s.set)).toBeUndefined()
}

function hasValue(set: DvvSet, v: Uint8Array): boolean {
  const hex = Buffer.from(v).toString('hex')
  return siblings(set).some((x) => Buffer.from(x).toString('hex') === hex)
}

describe('DVV sets over simulated histories', () => {
  it('after every step, every replica holds exactly the writes no write in its history superseded', () => {
    fc.assert(
      fc.property(arbOps(), ({ replicaCount, ops }) => {
        simulate(replicaCount, ops, (h) => {
          for (const r of h.replicas) expectAgreesWithModel(r, h)
          // The newest write is at the dot the model predicts for its replica, with its value.
          const w = h.writes.at(-1)
          if (w) expect(dotsOf(h.replicas[w.replica].set).get(dotKey(w.actor, w.counter))).toEqual(w.value)
        })
      }),
      { numRuns: RUNS },
    )
  })

  it('sync is commutative, associative and idempotent, and canonical (byte-identical encodings)', () => {
    const triple = fc.tuple(fc.nat(), fc.nat(), fc.nat())
    fc.assert(
      fc.property(arbOps(), fc.array(triple, { minLength: 1, maxLength: 8 }), ({ replicaCount, ops }, picks) => {
        const h = simulate(replicaCount, ops)
        const pool: DvvSet[] = [[], ...h.snapshots.map((s) => s.set), ...h.replicas.map((r) => r.set)]
        const same = (x: DvvSet, y: DvvSet) => {
          expect(x).toEqual(y)
          expect(bytesOfSet(x)).toBe(bytesOfSet(y))
        }
        for (const [i, j, k] of picks) {
          const a = pool[i % pool.length]
          const b = pool[j % pool.length]
          const c = pool[k % pool.length]
          same(sync(a, b), sync(b, a))
          same(sync(sync(a, b), c), sync(a, sync(b, c)))
          same(sync(a, a), a)
          same(sync(sync(a, b), b), sync(a, b))
          expect(checkSet(sync(a, b))).toBeUndefined()
        }
      }),
      { numRuns: RUNS },
    )
  })

  it('a value a write\'s context included is never a sibling of that write afterwards, after any syncs', () => {
    const extraSyncs = fc.array(fc.tuple(fc.nat(), fc.nat()), { maxLength: 6 })
    fc.assert(
      fc.property(arbOps(), extraSyncs, ({ replicaCount, ops }, syncs) => {
        const h = simulate(replicaCount, ops)
        // Every set any replica held, plus merges of arbitrary pairs of them.
        const pool: Snapshot[] = [...h.snapshots, ...h.replicas]
        for (const [i, j] of syncs) pool.push(merge(pool[i % pool.length], pool[j % pool.length]))
        pool.push(merge(...h.replicas))
        for (const s of pool) {
          const dots = dotsOf(s.set)
          for (const w of h.writes) {
            // Only sets that contain the later write's dot.
            if (!((new Map(join(s.set)).get(w.actor) ?? 0) >= w.counter)) continue
            expect(s.known.has(w.id)).toBe(true)
            for (const u of w.seen) {
              const old = h.writes[u]
              expect(dots.has(dotKey(old.actor, old.counter))).toBe(false)
              if (old.value) expect(hasValue(s.set, old.value)).toBe(false)
            }
          }
        }
      }),
      { numRuns: RUNS },
    )
  })

  it('concurrent writes both survive the sync of the replicas that took them, unless a later write saw them', () => {
    fc.assert(
      fc.property(arbOps(), ({ replicaCount, ops }) => {
        const h = simulate(replicaCount, ops)
        for (const u of h.writes) {
          for (const w of h.writes) {
            if (u.id >= w.id || w.seen.has(u.id) || u.seen.has(w.id)) continue
            // u and w are concurrent: neither's client had read the other.
            const s = merge(h.replicas[u.replica], h.replicas[w.replica])
            const dots = dotsOf(s.set)
            const supersededIn = (x: number) => [...s.known].some((y) => h.writes[y].seen.has(x))
            for (const x of [u, w]) {
              const present = dots.has(dotKey(x.actor, x.counter))
              expect(present).toBe(!supersededIn(x.id))
              if (x.value) expect(hasValue(s.set, x.value)).toBe(present)
            }
          }
        }
      }),
      { numRuns: RUNS },
    )
  })

  it('two writes with contexts that saw neither stay siblings through syncs, until a write that saw both', () => {
    const idx = fc.nat({ max: 3 })
    fc.assert(
      fc.property(
        arbOps(20),
        idx,
        idx,
        idx,
        fc.boolean(),
        fc.array(fc.tuple(idx, idx), { maxLength: 8 }),
        ({ replicaCount, ops }, i0, j0, k0, tomb, syncs) => {
          const [i, j, k] = [i0 % replicaCount, j0 % replicaCount, k0 % replicaCount]
          const scenario: Op[] = [
            ...ops,
            // Two clients read (any replicas), then both write before either sees the other's write.
            { t: 'read', client: 0, replicas: [i] },
            { t: 'read', client: 1, replicas: [j] },
            { t: 'write', client: 0, replica: i, blind: false, tomb: false, adopt: false },
            { t: 'write', client: 1, replica: j, blind: false, tomb, adopt: false },
            ...syncs.map(([into, from]): Op => ({ t: 'sync', into, from })),
          ]
          const h = simulate(replicaCount, scenario)
          const [a, b] = h.writes.slice(-2)
          const both = sync(h.replicas[i].set, h.replicas[j].set)
          const dots = dotsOf(both)
          expect(dots.get(dotKey(a.actor, a.counter))).toEqual(valueOf(a.id))
          expect(dots.get(dotKey(b.actor, b.counter))).toEqual(tomb ? null : valueOf(b.id))
          expect(hasValue(both, valueOf(a.id))).toBe(true)
          expect(hasValue(both, valueOf(b.id))).toBe(!tomb)
          // Same once everything is synced everywhere.
          const all = syncAll(h.replicas.map((r) => r.set))
          expect(hasValue(all, valueOf(a.id))).toBe(true)

          // A client reads both and writes through any replica: that write supersedes both.
          const h2 = simulate(replicaCount, [
            ...scenario,
            { t: 'read', client: 2, replicas: [...new Set([i, j])] },
            { t: 'write', client: 2, replica: k, blind: false, tomb: false, adopt: false },
          ])
          const c = h2.writes.at(-1)!
          const final = syncAll(h2.replicas.map((r) => r.set))
          const fdots = dotsOf(final)
          expect(fdots.has(dotKey(a.actor, a.counter))).toBe(false)
          expect(fdots.has(dotKey(b.actor, b.counter))).toBe(false)
          expect(hasValue(final, valueOf(a.id))).toBe(false)
          expect(siblings(final)).toContainEqual(valueOf(c.id))
        },
      ),
      { numRuns: RUNS },
    )
  })

  it('no acknowledged write is lost: after syncing all replicas each is present or superseded by a write that saw it', () => {
    fc.assert(
      fc.property(arbOps(), fc.nat(), ({ replicaCount, ops }, rot) => {
        const h = simulate(replicaCount, ops)
        // Sync all replicas, starting from an arbitrary one.
        const order = h.replicas.map((_, i) => h.replicas[(i + rot) % h.replicas.length].set)
        const all = syncAll(order)
        const dots = dotsOf(all)
        for (const u of h.writes) {
          const supersededBy = h.writes.filter((x) => x.seen.has(u.id))
          const present = dots.has(dotKey(u.actor, u.counter))
          if (supersededBy.length === 0) {
            expect(present).toBe(true)
            expect(dots.get(dotKey(u.actor, u.counter))).toEqual(u.value)
          } else {
            expect(present).toBe(false)
          }
          if (u.value) expect(hasValue(all, u.value)).toBe(present)
        }
        // The full merge has seen every write.
        expect(new Map(join(all))).toEqual(expectedVector(new Set(h.writes.map((w) => w.id)), h.writes))
      }),
      { numRuns: RUNS },
    )
  })
})
