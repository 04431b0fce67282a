// Example-based tests for the compact dotted version vector sets, mirroring the dvvset.erl eunit cases
// (join_test, update_test, sync_test, syn_update_test) plus tombstones, ordering and purity. In
// dvvset.erl, `create(new(V), I)` is `update([], [], I, V)` here and `update(new_list(join(X), V), Y, I)`
// is `update(join(X), Y, I, V)`.
import { describe, expect, it } from 'vitest'
import { descends, join, siblings, sync, syncAll, update, values, type DvvSet } from '../src/dvv.js'
import { checkSet } from '../src/codec.js'

const enc = new TextEncoder()
const v1 = enc.encode('v1')
const v2 = enc.encode('v2')
const v3 = enc.encode('v3')
const v4 = enc.encode('v4')
const v5 = enc.encode('v5')

describe('join (dvvset join_test)', () => {
  it('is the per-actor counters of the set', () => {
    const A1 = update([], [], 'a', v1)
    const B1 = update(join(A1), A1, 'b', v2)
    expect(join([])).toEqual([])
    expect(join(A1)).toEqual([['a', 1]])
    expect(join(B1)).toEqual([
      ['a', 1],
      ['b', 1],
    ])
  })
})

describe('update (dvvset update_test)', () => {
  const A0 = update([], [], 'a', v1)
  const A1 = update(join(A0), A0, 'a', v2)

  it('a first write mints dot a1', () => {
    expect(A0).toEqual([['a', 1, [v1]]])
  })

  it('a write whose context saw v1 replaces it', () => {
    expect(A1).toEqual([['a', 2, [v2]]])
  })

  it('a write through another actor that saw everything leaves only its own value', () => {
    // Context {a:2} covers v2 (dot a2); the entry for a keeps its counter but no values.
    expect(update(join(A1), A1, 'b', v3)).toEqual([
      ['a', 2, []],
      ['b', 1, [v3]],
    ])
  })

  it('a write through another actor with a stale context is a sibling of what it did not see', () => {
    // Context {a:1} covers only v1 (already gone); v2 (a2) was not seen, so it stays.
    expect(update(join(A0), A1, 'b', v4)).toEqual([
      ['a', 2, [v2]],
      ['b', 1, [v4]],
    ])
  })

  it('a stale write through the same actor keeps the unseen value as a sibling, newest first', () => {
    expect(update(join(A0), A1, 'a', v5)).toEqual([['a', 3, [v5, v2]]])
  })
})

describe('syn_update_test: a stale writer does not clobber a blind concurrent write', () => {
  it('keeps exactly v2 and v3', () => {
    const A0 = update([], [], 'a', v1) // Mary writes v1 with no context
    const VV1 = join(A0) // Peter reads v1
    const A1 = update([], A0, 'a', v2) // Mary writes v2 blind: concurrent with v1
    const A2 = update(VV1, A1, 'a', v3) // Peter writes v3 having seen v1 only
    expect(VV1).toEqual([['a', 1]])
    expect(A1).toEqual([['a', 2, [v2, v1]]])
    // v3 supersedes v1 (Peter saw it) but not v2 (he did not).
    expect(A2).toEqual([['a', 3, [v3, v2]]])
    expect(siblings(A2)).toEqual([v3, v2])
  })
})

describe('sync (dvvset sync_test)', () => {
  const X: DvvSet = [['x', 1, []]]
  const A = update([], [], 'a', v1)
  const Y = update([], [], 'b', v2)
  const A1 = update(join(A), [], 'a', v2)
  const A3 = update(join(A1), [], 'b', v3)
  const A4 = update(join(A1), [], 'c', v3)
  const W: DvvSet = [['a', 1, []]]
  const Z: DvvSet = [['a', 2, [v2, v1]]]

  it('drops a value the other side saw superseded', () => {
    // W has seen a1 and holds no value for it, so v1 (a1) is obsolete; v2 (a2) is news to W.
    expect(sync(W, Z)).toEqual([['a', 2, [v2]]])
    expect(sync(Z, W)).toEqual(sync(W, Z))
  })

  it('a newer write supersedes the older one from either side', () => {
    expect(A1).toEqual([['a', 2, [v2]]])
    expect(sync(A, A1)).toEqual([['a', 2, [v2]]])
    expect(sync(A1, A)).toEqual(sync(A, A1))
  })

  it('keeps concurrent writes by different actors', () => {
    expect(sync(A4, A3)).toEqual([
      ['a', 2, []],
      ['b', 1, [v3]],
      ['c', 1, [v3]],
    ])
    expect(sync(A3, A4)).toEqual(sync(A4, A3))
  })

  it('merges disjoint actors in actor order', () => {
    expect(sync(X, A)).toEqual([
      ['a', 1, [v1]],
      ['x', 1, []],
    ])
    expect(sync(A, X)).toEqual(sync(X, A))
    expect(sync(A, Y)).toEqual([
      ['a', 1, [v1]],
      ['b', 1, [v2]],
    ])
    expect(sync(Y, A)).toEqual(sync(A, Y))
  })

  it('equal counters: the side that saw more superseded wins', () => {
    const fewer: DvvSet = [['a', 2, [v2]]]
    const more: DvvSet = [['a', 2, [v2, v1]]]
    expect(sync(fewer, more)).toEqual(fewer)
    expect(sync(more, fewer)).toEqual(fewer)
  })

  it('a higher counter with a longer list keeps only what the other side has not seen superseded', () => {
    // a: {a:3, [v3,v2,v1]} knows nothing superseded; b: {a:2, []} has seen a1, a2 superseded.
    expect(sync([['a', 3, [v3, v2, v1]]], [['a', 2, []]])).toEqual([['a', 3, [v3]]])
    expect(sync([['a', 2, []]], [['a', 3, [v3, v2, v1]]])).toEqual([['a', 3, [v3]]])
    // b: {a:1, [v1]} has superseded nothing: all three stay.
    expect(sync([['a', 1, [v1]]], [['a', 3, [v3, v2, v1]]])).toEqual([['a', 3, [v3, v2, v1]]])
  })

  it('empty sets are identities, and syncAll folds', () => {
    expect(sync([], A4)).toEqual(A4)
    expect(sync(A4, [])).toEqual(A4)
    expect(syncAll([])).toEqual([])
    expect(syncAll([A3, A4, X])).toEqual(sync(sync(A3, A4), X))
  })
})

describe('update details', () => {
  it('a context ahead of the coordinator supersedes dots the coordinator has not received yet', () => {
    // The client read a replica that already had a2; the coordinator for b still only has a1.
    const stale: DvvSet = [['a', 1, [v1]]]
    expect(update([['a', 2]], stale, 'b', v3)).toEqual([
      ['a', 2, []],
      ['b', 1, [v3]],
    ])
  })

  it('inserts a new actor at its sorted position', () => {
    const local: DvvSet = [
      ['b', 1, [v1]],
      ['d', 1, [v2]],
    ]
    expect(update([], local, 'a', v3).map((e) => e[0])).toEqual(['a', 'b', 'd'])
    expect(update([], local, 'c', v3).map((e) => e[0])).toEqual(['b', 'c', 'd'])
    expect(update([], local, 'e', v3).map((e) => e[0])).toEqual(['b', 'd', 'e'])
  })

  it('accepts a context in any order', () => {
    const local: DvvSet = [
      ['a', 1, [v1]],
      ['b', 1, [v2]],
    ]
    const ordered = update(
      [
        ['a', 1],
        ['b', 1],
      ],
      local,
      'c',
      v3,
    )
    const reversed = update(
      [
        ['b', 1],
        ['a', 1],
      ],
      local,
      'c',
      v3,
    )
    expect(ordered).toEqual([
      ['a', 1, []],
      ['b', 1, []],
      ['c', 1, [v3]],
    ])
    expect(reversed).toEqual(ordered)
  })

  it('an actor listed twice in a context counts as its highest counter and yields a valid set', () => {
    // A context that lists b twice has seen b up to 2; the result must not list b twice.
    const local: DvvSet = [['b', 2, [v2, v1]]]
    const out = update(
      [
        ['b', 1],
        ['b', 2],
      ],
      local,
      'a',
      v3,
    )
    expect(out).toEqual([
      ['a', 1, [v3]],
      ['b', 2, []],
    ])
    expect(checkSet(out)).toBeUndefined()
    const out2 = update(
      [
        ['b', 2],
        ['b', 1],
      ],
      local,
      'a',
      v3,
    )
    expect(out2).toEqual(out)
  })

  it('does not mutate its inputs', () => {
    const local: DvvSet = [
      ['a', 2, [v2, v1]],
      ['b', 1, [v3]],
    ]
    const ctx: [string, number][] = [
      ['b', 1],
      ['a', 1],
    ]
    const localCopy = structuredClone(local)
    const ctxCopy = structuredClone(ctx)
    update(ctx, local, 'a', v4)
    sync(local, [['a', 3, [v5]]])
    expect(local).toEqual(localCopy)
    expect(ctx).toEqual(ctxCopy)
  })
})

describe('tombstones', () => {
  it('a delete that saw the value leaves only a tombstone: no siblings, but the history is kept', () => {
    const s1 = update([], [], 'a', v1)
    const s2 = update(join(s1), s1, 'a', null)
    expect(s2).toEqual([['a', 2, [null]]])
    expect(values(s2)).toEqual([null])
    expect(siblings(s2)).toEqual([])
    expect(join(s2)).toEqual([['a', 2]])
  })

  it('a delete does not remove a concurrent write it did not see', () => {
    const s1 = update([], [], 'a', v1)
    const ctx = join(s1)
    const s2 = update(ctx, s1, 'b', v2) // someone overwrites v1 with v2 through b
    const del = update(ctx, s1, 'a', null) // someone else deletes v1 through a, not having seen v2
    const merged = sync(s2, del)
    expect(merged).toEqual([
      ['a', 2, [null]],
      ['b', 1, [v2]],
    ])
    expect(siblings(merged)).toEqual([v2])
    expect(values(merged)).toEqual([null, v2])
  })

  it('a write after a delete replaces the tombstone', () => {
    const s1 = update([], [], 'a', null)
    const s2 = update(join(s1), s1, 'a', v1)
    expect(s2).toEqual([['a', 2, [v1]]])
  })
})

describe('values and siblings', () => {
  it('list every entry newest first, siblings without tombstones', () => {
    const s: DvvSet = [
      ['a', 3, [v3, null]],
      ['b', 1, []],
      ['c', 2, [v1]],
    ]
    expect(values(s)).toEqual([v3, null, v1])
    expect(siblings(s)).toEqual([v3, v1])
  })
})

describe('descends', () => {
  it('compares version vectors per actor', () => {
    expect(descends([['a', 2]], [['a', 1]])).toBe(true)
    expect(descends([['a', 1]], [['a', 2]])).toBe(false)
    expect(descends([['a', 1]], [])).toBe(true)
    expect(descends([], [['a', 1]])).toBe(false)
    expect(
      descends(
        [
          ['a', 1],
          ['b', 3],
        ],
        [['b', 3]],
      ),
    ).toBe(true)
    // Concurrent vectors: neither descends.
    const x: [string, number][] = [
      ['a', 2],
      ['b', 1],
    ]
    const y: [string, number][] = [
      ['a', 1],
      ['b', 2],
    ]
    expect(descends(x, y)).toBe(false)
    expect(descends(y, x)).toBe(false)
  })

  it('the context after a write descends the context before it', () => {
    const s1 = update([], [], 'a', v1)
    const s2 = update(join(s1), s1, 'b', v2)
    expect(descends(join(s2), join(s1))).toBe(true)
    expect(descends(join(s1), join(s2))).toBe(false)
  })
})
