// The write quorum as data: every step of a sloppy-quorum write driven by hand, with no promises and
// no timers, so each rule can be seen to hold (and to fail if broken).
import { describe, expect, it } from 'vitest'
import type { Member, ReplicaFailure } from '@zerohop/core'
import { WriteQuorum, verdict, type StoreAction } from '../src/quorum.js'

const m = (id: string): Member => ({ id, url: `http://${id}`, weight: 1 })
const [a, b, c, d, e] = ['a', 'b', 'c', 'd', 'e'].map(m)
const fail = (id: string, cause = 'refused'): ReplicaFailure => ({ id, url: `http://${id}`, cause, message: cause })
const show = (actions: StoreAction[]) => actions.map((x) => (x.hintFor ? `${x.to.id}<-hint:${x.hintFor}${x.untracked ? ' (kept)' : ''}` : x.to.id))

function write(o: { up?: string[]; strict?: boolean; over?: () => boolean; need?: number; spares?: Member[] } = {}) {
  const up = new Set(o.up ?? ['a', 'b', 'c', 'd', 'e'])
  return new WriteQuorum({
    requirements: [{ members: [a, b, c], need: o.need ?? 2 }],
    coordinator: a,
    spares: o.spares ?? [d, e],
    strict: o.strict ?? false,
    up: (id) => up.has(id),
    over: o.over ?? (() => false),
  })
}

describe('verdict', () => {
  it('is met when every requirement has its count, failed as soon as one cannot, else waiting', () => {
    const reqs = [{ members: [a, b, c], need: 2 }, { members: [b, c, d], need: 2 }]
    expect(verdict(reqs, (id) => (id === 'a' || id === 'b' ? 'counted' : 'open'))).toBe('waiting')
    expect(verdict(reqs, (id) => (['a', 'b', 'c'].includes(id) ? 'counted' : 'lost'))).toBe('met')
    expect(verdict(reqs, (id) => (id === 'b' ? 'counted' : id === 'a' ? 'open' : 'lost'))).toBe('failed')
  })
})

describe('WriteQuorum', () => {
  it('sends to every replica but the coordinator, and is met at W', () => {
    const q = write()
    const first = q.start()
    expect(show(first)).toEqual(['b', 'c'])
    expect(q.verdict()).toBe('waiting')
    expect(q.result(first[0], true)).toEqual([])
    expect(q.verdict()).toBe('met')
    expect(q.acked()).toBe(2)
  })

  it('a replica believed down gets its copy as a hint on the first live spare, which counts', () => {
    const q = write({ up: ['a', 'b', 'e'] })
    const first = q.start()
    // c is down: its copy goes to e (d is down too), and c is named among the failures.
    expect(show(first)).toEqual(['b', 'e<-hint:c'])
    expect(q.failures.map((f) => `${f.id}:${f.cause}`)).toEqual(['c:down'])
    q.result(first[1], true)
    expect(q.standing('c')).toBe('counted')
    expect(q.verdict()).toBe('met')
  })

  it('a failed store walks the spares one at a time; with none left the coordinator keeps the hint and the slot is lost', () => {
    const q = write({ need: 3 })
    const [toB, toC] = q.start()
    q.result(toB, true)
    const hint1 = q.result(toC, false, fail('c'))
    expect(show(hint1)).toEqual(['d<-hint:c'])
    const hint2 = q.result(hint1[0], false, fail('d'))
    expect(show(hint2)).toEqual(['e<-hint:c'])
    expect(q.verdict()).toBe('waiting')
    const kept = q.result(hint2[0], false, fail('e'))
    expect(show(kept)).toEqual(['a<-hint:c (kept)'])
    // The kept hint does not count, and nothing is left to try for c: W=3 is out of reach.
    expect(q.result(kept[0], true)).toEqual([])
    expect(q.standing('c')).toBe('lost')
    expect(q.verdict()).toBe('failed')
    expect(q.failures.map((f) => f.id)).toEqual(['c', 'd', 'e'])
  })

  it('strict (PW): hints are still sent but never count, so a down replica fails W=3', () => {
    const q = write({ up: ['a', 'b', 'd', 'e'], strict: true, need: 3 })
    const first = q.start()
    // The down primary is still tried (it may be back), and its copy also goes to a spare.
    expect(show(first)).toEqual(['b', 'c', 'd<-hint:c'])
    q.result(first[0], true)
    q.result(first[2], true)
    expect(q.standing('c')).toBe('open')
    q.result(first[1], false, fail('c'))
    expect(q.standing('c')).toBe('lost')
    expect(q.verdict()).toBe('failed')
  })

  it('hedge: a primary silent for half the time left also sends its copy to a spare, once', () => {
    const q = write({ need: 3 })
    const [toB, toC] = q.start()
    q.result(toB, true)
    const hedged = q.hedge('c')
    expect(show(hedged)).toEqual(['d<-hint:c'])
    expect(q.hedge('c')).toEqual([])
    q.result(hedged[0], true)
    expect(q.verdict()).toBe('met')
    // The primary answering late changes nothing.
    expect(q.result(toC, true)).toEqual([])
    expect(q.verdict()).toBe('met')
  })

  it('no hedge for a primary that already answered', () => {
    const q = write()
    const [toB] = q.start()
    q.result(toB, true)
    expect(q.hedge('b')).toEqual([])
  })

  it('a store refused for our ring is not hinted (a fresher ring may place it elsewhere)', () => {
    const q = write({ need: 3 })
    const [toB, toC] = q.start()
    q.result(toB, true)
    expect(q.result(toC, false, { ...fail('c', 'http'), status: 409, code: 'ZH_STALE_RING' }, true)).toEqual([])
    expect(q.standing('c')).toBe('lost')
    expect(q.verdict()).toBe('failed')
  })

  it('past the deadline nothing more is sent', () => {
    let over = false
    const q = write({ over: () => over })
    const [, toC] = q.start()
    over = true
    expect(q.result(toC, false, fail('c', 'timeout'))).toEqual([])
    expect(q.hedge('b')).toEqual([])
  })

  it('a down primary with no spare left is tried after all', () => {
    const q = write({ up: ['a', 'b'], spares: [] })
    const first = q.start()
    expect(show(first)).toEqual(['b', 'a<-hint:c (kept)', 'c'])
    q.result(first[2], true)
    expect(q.verdict()).toBe('met')
    expect(q.acked()).toBe(2)
    q.result(first[0], true)
    expect(q.acked()).toBe(3)
  })
})
