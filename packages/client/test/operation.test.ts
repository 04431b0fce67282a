// The quorum gatherer and the per-operation deadline, on their own (no sockets).
import { describe, expect, it } from 'vitest'
import { TransportError, type Member } from '@zerohop/core'
import { Operation, failureOf, gather, isTransient, notDelivered, type Outcome } from '../src/operation.js'
import { systemClock } from '../src/clock.js'
import { VirtualClock } from '../../../test/sim/scheduler.js'

const members: Member[] = ['a', 'b', 'c'].map((id) => ({ id, url: `http://${id}`, weight: 1 }))

function deferred<T>() {
  let resolve!: (v: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}

const ok = (m: Member): Outcome<string> => ({ ok: true, member: m, value: m.id })
const fail = (m: Member): Outcome<string> => ({ ok: false, member: m, failure: { id: m.id, url: m.url, cause: 'refused', message: 'x' } })

describe('gather', () => {
  it('resolves as soon as `need` replicas succeed, before the slowest answers', async () => {
    const slow = deferred<Outcome<string>>()
    const g = gather(members, [{ members, need: 2 }], (m) => (m.id === 'c' ? slow.promise : Promise.resolve(ok(m))))
    const got = await g.quorum
    expect(got.map((o) => o.member.id).sort()).toEqual(['a', 'b'])
    let allDone = false
    void g.all.then(() => (allDone = true))
    await Promise.resolve()
    expect(allDone).toBe(false)
    slow.resolve(ok(members[2]))
    await g.all
    expect(g.outcomes).toHaveLength(3)
  })

  it('rejects with the failures as soon as the quorum is out of reach', async () => {
    const never = deferred<Outcome<string>>()
    const g = gather(members, [{ members, need: 2 }], (m) => (m.id === 'a' ? never.promise : Promise.resolve(fail(m))))
    const failures = (await g.quorum.catch((f) => f)) as Outcome<string>[]
    expect(failures.map((o) => o.member.id).sort()).toEqual(['b', 'c'])
  })

  it('counts mixed outcomes: 2 of 3 with one failure succeeds', async () => {
    const g = gather(members, [{ members, need: 2 }], (m) => Promise.resolve(m.id === 'b' ? fail(m) : ok(m)))
    expect((await g.quorum).map((o) => o.member.id).sort()).toEqual(['a', 'c'])
  })
})

describe('Operation', () => {
  it('during a ring change needs the quorum in both rings, asking a member outside the targets only when a ring needs it', async () => {
    const [a, b, c] = members
    const d: Member = { id: 'd', url: 'http://d', weight: 1 }
    for (const [bad, want, asked] of [['none', ['a', 'b'], ['a', 'b']], ['b', ['a', 'c', 'd'], ['a', 'b', 'c', 'd']]] as const) {
      const seen: string[] = []
      const g = gather([a, b], [{ members: [a, b, c], need: 2 }, { members: [a, b, d], need: 2 }], (m) => {
        seen.push(m.id)
        return Promise.resolve(m.id === bad ? fail(m) : ok(m))
      })
      expect((await g.quorum).map((o) => o.member.id).sort()).toEqual(want)
      await g.all
      expect(seen).toEqual(asked)
    }
  })

  it('ends exactly at the deadline of its clock and classifies the failure as a timeout', async () => {
    const clock = new VirtualClock()
    const op = new Operation(clock, 20)
    expect(op.remaining).toBe(20)
    await clock.advance(19)
    expect(op.over).toBe(false)
    await clock.advance(1)
    expect(op.over).toBe(true)
    expect(op.reason).toBe('timeout')
    expect(op.signal.aborted).toBe(true)
    expect(failureOf(members[0], new Error('aborted'), op).cause).toBe('timeout')
    op.done()
  })

  it('follows the caller signal and throws AbortError from checkAborted', () => {
    const ac = new AbortController()
    const op = new Operation(systemClock, 10_000, ac.signal)
    ac.abort()
    expect(op.over).toBe(true)
    expect(op.reason).toBe('aborted')
    expect(() => op.checkAborted()).toThrow(expect.objectContaining({ code: 'ZH_ABORTED' }))
    op.done()
  })

  it('refuses to start when the caller signal already fired', () => {
    const ac = new AbortController()
    ac.abort()
    expect(() => new Operation(systemClock, 1000, ac.signal)).toThrow(expect.objectContaining({ code: 'ZH_ABORTED' }))
  })

  it('race settles with the fallback when the operation ends first', async () => {
    const op = new Operation(systemClock, 10)
    const never = new Promise<string>(() => {})
    expect(await op.race(never, () => 'deadline')).toBe('deadline')
    op.done()
    const op2 = new Operation(systemClock, 1000)
    expect(await op2.race(Promise.resolve('answer'), () => 'deadline')).toBe('answer')
    op2.done()
  })

  it('classifies by the transport\'s typed error: its kind, and whether the request was written', () => {
    const op = new Operation(systemClock, 1000)
    const refused = failureOf(members[0], new TransportError('refused', 'x', { delivered: false, cause: Object.assign(new Error('x'), { code: 'ECONNREFUSED' }) }), op)
    expect(refused).toMatchObject({ cause: 'refused', code: 'ECONNREFUSED', delivered: false })
    expect(notDelivered(refused)).toBe(true)
    const reset = new TransportError('network', 'other side closed', { delivered: true })
    expect(failureOf(members[0], reset, op)).toMatchObject({ cause: 'network', message: 'other side closed' })
    expect(notDelivered(failureOf(members[0], reset, op))).toBe(false)
    expect(isTransient(reset)).toBe(true)
    // A timeout after the request was written may have been applied: not retried, not sent elsewhere.
    const late = new TransportError('timeout', 'no answer', { delivered: true })
    expect(isTransient(late)).toBe(false)
    expect(notDelivered(failureOf(members[0], late, op))).toBe(false)
    expect(notDelivered(failureOf(members[0], new TransportError('timeout', 'connect timeout', { delivered: false }), op))).toBe(true)
    // An error that merely looks like undici's is not the contract.
    expect(isTransient(Object.assign(new Error('x'), { code: 'ECONNRESET' }))).toBe(false)
    op.done()
  })
})
