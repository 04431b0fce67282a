// Member entries: the merge is a join (commutative, associative, idempotent), so gossip in any order
// converges; and the rings they imply, before, during and after a transition.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ClusterView, MAX_MEMBERS, MAX_MEMBER_COUNTER, MAX_MEMBER_TIME, MAX_WEIGHT, MIN_WEIGHT, compareMemberStates, invalidMemberState, mergeMembers, MEMBER_STATUSES, pack, parseGossipMessage, parseMemberState, parseMembers, unpack, type MemberState } from '../src/index.js'

function entry(id: string, patch: Partial<MemberState> = {}): MemberState {
  return { id, url: `http://${id}:1`, zone: 'z', weight: 1, status: 'normal', incarnation: 'i', version: 1, heartbeat: 0, since: 0, until: 0, removed: false, ready: '', ...patch }
}

const arbEntry = fc.record({
  id: fc.constantFrom('a', 'b', 'c'),
  version: fc.integer({ min: 0, max: 4 }),
  heartbeat: fc.integer({ min: 0, max: 4 }),
  status: fc.constantFrom(...MEMBER_STATUSES),
  removed: fc.boolean(),
  until: fc.integer({ min: 0, max: 3 }),
  ready: fc.constantFrom('', 'x', 'y'),
  dropped: fc.constantFrom(undefined, '', 'x'),
}).map(({ id, ...patch }) => entry(id, patch))

const mergeAll = (...lists: MemberState[][]) => {
  const m = new Map<string, MemberState>()
  for (const l of lists) mergeMembers(m, l)
  // An absent `dropped` and '' mean the same (entries from before the field): compare them as one.
  return [...m.values()].map((e) => ({ ...e, dropped: e.dropped || undefined })).sort((a, b) => (a.id < b.id ? -1 : 1))
}

describe('member entries', () => {
  it('merge is commutative, associative and idempotent (gossip order does not matter)', () => {
    fc.assert(fc.property(fc.array(arbEntry), fc.array(arbEntry), fc.array(arbEntry), (a, b, c) => {
      expect(mergeAll(a, b)).toEqual(mergeAll(b, a))
      expect(mergeAll(mergeAll(a, b), c)).toEqual(mergeAll(a, mergeAll(b, c)))
      expect(mergeAll(a, a, b)).toEqual(mergeAll(a, b))
    }))
  })

  it('a removal wins; then the newer version; at equal versions a later status; the heartbeat breaks the rest', () => {
    expect(compareMemberStates(entry('a', { version: 2 }), entry('a', { version: 1, heartbeat: 99 }))).toBeGreaterThan(0)
    expect(compareMemberStates(entry('a', { version: 2, removed: true, status: 'leaving' }), entry('a', { version: 2, heartbeat: 50 }))).toBeGreaterThan(0)
    // Written by a node that had not heard of the removed node's latest entries (found by the simulator).
    expect(compareMemberStates(entry('a', { version: 2, removed: true, status: 'leaving' }), entry('a', { version: 7, heartbeat: 50 }))).toBeGreaterThan(0)
    expect(compareMemberStates(entry('a', { version: 3, removed: true, status: 'left' }), entry('a', { version: 2, removed: true, status: 'leaving' }))).toBeGreaterThan(0)
    expect(compareMemberStates(entry('a', { status: 'left' }), entry('a', { status: 'leaving' }))).toBeGreaterThan(0)
    expect(compareMemberStates(entry('a', { heartbeat: 3 }), entry('a', { heartbeat: 2 }))).toBeGreaterThan(0)
  })

  it('mergeMembers reports exactly the entries that changed', () => {
    const m = new Map([['a', entry('a', { heartbeat: 5 })]])
    expect(mergeMembers(m, [entry('a', { heartbeat: 4 }), entry('b')]).map((e) => e.id)).toEqual(['b'])
    expect(mergeMembers(m, [entry('a', { heartbeat: 6 })]).map((e) => e.heartbeat)).toEqual([6])
  })

  it('rejects malformed entries with a reason', () => {
    expect(invalidMemberState(entry('a'))).toBeUndefined()
    expect(invalidMemberState(null)).toBe('not an object')
    expect(invalidMemberState({ ...entry('a'), id: 'bad id' })).toBe('bad id')
    expect(invalidMemberState({ ...entry('a'), url: 'ftp://x' })).toMatch(/bad url/)
    expect(invalidMemberState({ ...entry('a'), status: 'dancing' })).toMatch(/bad status/)
    expect(invalidMemberState({ ...entry('a'), version: -1 })).toMatch(/bad version/)
    expect(invalidMemberState({ ...entry('a'), weight: 0 })).toMatch(/bad weight/)
  })
})

describe('ClusterView', () => {
  const params = { partitions: 64, n: 3 }
  const founders = ['a', 'b', 'c'].map((id) => entry(id))

  it('with no change pending, current and next are one ring', () => {
    const v = new ClusterView(founders, params)
    expect(v.transition).toBe(false)
    expect(v.next).toBe(v.current)
    expect(v.current.members.map((m) => m.id)).toEqual(['a', 'b', 'c'])
    expect(v.epoch).toMatch(/^3-[0-9a-f]{12}$/)
  })

  it('a joiner is in next only until it rewrites its status, which it does once every member of next is ready', () => {
    const joining = [...founders, entry('d', { status: 'joining', since: 10 })]
    const during = new ClusterView(joining, params)
    expect(during.transition).toBe(true)
    expect(during.current.member('d')).toBeUndefined()
    expect(during.next.member('d')).toBeDefined()
    // d takes over some replicas: those partitions list d in next and not in current.
    const gained = Array.from({ length: 64 }, (_, p) => p).filter((p) => during.replicas(p).next.some((m) => m.id === 'd'))
    expect(gained.length).toBeGreaterThan(0)
    for (const p of gained) expect(during.replicates('d', p)).toBe(true)

    expect(during.nextReady).toBe(false)
    const almost = joining.map((m) => (m.id === 'd' ? m : { ...m, ready: during.next.epoch, version: m.version + 1 }))
    expect(new ClusterView(almost, params).nextReady).toBe(false)
    const ready = joining.map((m) => ({ ...m, ready: during.next.epoch, version: m.version + 1 }))
    const all = new ClusterView(ready, params)
    expect(all.nextReady).toBe(true)
    // Ready flags alone do not complete it (a later join could otherwise undo a completion).
    expect(all.transition).toBe(true)
    const settled = new ClusterView(ready.map((m) => (m.id === 'd' ? { ...m, status: 'normal' as const, version: m.version + 1 } : m)), params)
    expect(settled.transition).toBe(false)
    expect(settled.current.epoch).toBe(during.next.epoch)
  })

  it('a join that starts after another completed never takes the completed one back', () => {
    const first = [...founders, entry('d', { status: 'normal', since: 10, version: 2 })]
    const before = new ClusterView(first, params)
    const second = new ClusterView([...first, entry('e', { status: 'joining', since: 20 })], params)
    expect(second.current.epoch).toBe(before.current.epoch)
  })

  it('is settled (tombstones may be reaped) only with no change pending and every live member having dropped for the current ring', () => {
    const params = { partitions: 16, n: 3 }
    const base = [entry('a'), entry('b'), entry('c')]
    const epoch = new ClusterView(base, params).current.epoch
    const done = (m: MemberState) => ({ ...m, dropped: epoch })
    expect(new ClusterView(base, params).settled).toBe(false)
    expect(new ClusterView(base.map(done), params).settled).toBe(true)
    // One member still holds handed-off data (it dropped for an older ring, or is down and never said).
    expect(new ClusterView([done(base[0]), done(base[1]), { ...base[2], dropped: 'older' }], params).settled).toBe(false)
    // A joiner: a change is pending.
    expect(new ClusterView([...base.map(done), entry('d', { status: 'joining', since: 5 })], params).settled).toBe(false)
    // Left and removed members do not count.
    const withLeft = [...base, entry('x', { status: 'left', since: 1, until: 2 })]
    const leftEpoch = new ClusterView(withLeft, params).current.epoch
    expect(new ClusterView(withLeft.map((m) => (m.id === 'x' ? m : { ...m, dropped: leftEpoch })), params).settled).toBe(true)
  })

  it('a leaver stays in current and leaves next; once left it is history in both', () => {
    const leaving = founders.map((m) => (m.id === 'c' ? { ...m, status: 'leaving' as const, until: 5, version: 2 } : m))
    const during = new ClusterView(leaving, params)
    expect(during.transition).toBe(true)
    expect(during.current.member('c')).toBeDefined()
    expect(during.next.member('c')).toBeUndefined()
    const left = new ClusterView(leaving.map((m) => (m.id === 'c' ? { ...m, status: 'left' as const, version: 3 } : m)), params)
    expect(left.transition).toBe(false)
    expect(left.current.member('c')).toBeUndefined()
    expect(left.current.epoch).toBe(during.next.epoch)
  })

  it('a request made with other rings is refused whichever side is behind; the same rings pass at any version', () => {
    const v1 = new ClusterView(founders, params)
    const v2 = new ClusterView([...founders, entry('d', { status: 'joining', since: 10 })], params)
    expect(v2.differs(v1.epoch)).toBe(true)
    expect(v1.differs(v2.epoch)).toBe(true)
    // Same rings, a higher version (a restart): not refused.
    const restarted = new ClusterView(founders.map((m) => (m.id === 'a' ? { ...m, version: 2 } : m)), params)
    expect(v1.differs(restarted.epoch)).toBe(false)
    expect(restarted.differs(v1.epoch)).toBe(false)
    // No or malformed epoch: not refused (curl and old clients).
    expect(v2.differs(undefined)).toBe(false)
    expect(v2.differs('garbage')).toBe(false)
  })
})

const name = fc.stringMatching(/^[A-Za-z0-9._-]{1,64}$/)
const epoch = fc.oneof(fc.constant(''), fc.stringMatching(/^[0-9a-f]{16}$/))
/** Any entry a node could send: every field anywhere in its range. */
const arbValid: fc.Arbitrary<MemberState> = fc.record({
  id: name,
  url: fc.tuple(fc.constantFrom('http', 'https'), fc.constantFrom('127.0.0.1', 'n1.example', '[::1]'), fc.option(fc.integer({ min: 1, max: 65535 }), { nil: undefined }))
    .map(([scheme, host, port]) => new URL(`${scheme}://${host}${port === undefined ? '' : `:${port}`}`).origin),
  zone: name,
  weight: fc.oneof(fc.double({ min: MIN_WEIGHT, max: MAX_WEIGHT, noNaN: true }), fc.integer({ min: 1, max: MAX_WEIGHT })),
  status: fc.constantFrom(...MEMBER_STATUSES),
  incarnation: name,
  version: fc.integer({ min: 0, max: MAX_MEMBER_COUNTER }),
  heartbeat: fc.integer({ min: 0, max: MAX_MEMBER_COUNTER }),
  since: fc.integer({ min: 0, max: MAX_MEMBER_TIME }),
  until: fc.integer({ min: 0, max: MAX_MEMBER_TIME }),
  removed: fc.boolean(),
  ready: epoch,
  dropped: epoch,
}, { requiredKeys: ['id', 'url', 'zone', 'weight', 'status', 'incarnation', 'version', 'heartbeat', 'since', 'until', 'removed', 'ready'] })

describe('member entries received from the network (parseMemberState)', () => {
  it('a valid entry round-trips through MessagePack unchanged; unknown fields are dropped, not copied', () => {
    fc.assert(fc.property(arbValid, fc.dictionary(fc.string({ maxLength: 8 }), fc.oneof(fc.bigInt({ min: -(2n ** 63n), max: 2n ** 63n - 1n }), fc.string(), fc.object())), (e, extra) => {
      expect(parseMemberState(unpack(pack(e)))).toEqual(e)
      // Extra fields, a BigInt among them (a 64-bit integer decodes as one), do not survive.
      const parsed = parseMemberState(unpack(pack({ ...extra, ...e, extra: 2n ** 63n - 1n })))
      expect(parsed).toEqual(e)
      expect(() => JSON.stringify(parsed)).not.toThrow()
    }))
  })

  const base = entry('a', { url: 'http://127.0.0.1:7001', zone: 'default', incarnation: 'a1b2c3d4e5f6', ready: '0123456789abcdef' })
  const refusals: [field: string, values: unknown[]][] = [
    ['id', [undefined, '', 'bad id', 'x'.repeat(65), 7, 7n, 'é', 'a/b']],
    ['url', [undefined, 'ftp://x', 'http://x/', 'http://x/path', 'http://u:p@x', 'http://x?q', 'http://X', 'http://x:80', 'x', '', `http://${'a'.repeat(300)}`, 1, 1n]],
    ['zone', [undefined, '', 'a zone', 'z'.repeat(65), 1]],
    ['weight', [undefined, 0, -1, MIN_WEIGHT / 2, MAX_WEIGHT + 1, NaN, Infinity, 1n, '1', null]],
    ['status', [undefined, 'dancing', 'toString', '__proto__', 1, null]],
    ['incarnation', [undefined, '', 'a b', 'i'.repeat(65), 1]],
    ['version', [undefined, -1, 0.5, MAX_MEMBER_COUNTER + 1, 2 ** 53, 1n, '1', NaN]],
    ['heartbeat', [-1, 1.5, MAX_MEMBER_COUNTER + 1, 1n, '0']],
    ['since', [-1, 0.5, MAX_MEMBER_TIME + 1, 1n, null]],
    ['until', [-1, 0.5, MAX_MEMBER_TIME + 1, 1n, false]],
    ['removed', [undefined, 0, 'false', null]],
    ['ready', [undefined, 'x', '1-0123456789ab', '0123456789ABCDEF', '0123456789abcdef0', 1, null]],
    ['dropped', ['x', 1, null]],
  ]
  for (const [field, values] of refusals) {
    it(`refuses a bad ${field}`, () => {
      expect(parseMemberState(base)).toEqual(base)
      for (const v of values) {
        const why = parseMemberState({ ...base, [field]: v })
        expect(typeof why, `${field} = ${String(v)}`).toBe('string')
        expect(why).toMatch(field === 'id' ? /bad id/ : new RegExp(`bad ${field}`))
        expect(invalidMemberState({ ...base, [field]: v })).toBe(why)
      }
    })
  }

  it('takes the ready and dropped epochs nodes write (their rings\' epochs)', () => {
    const view = new ClusterView([entry('a'), entry('b'), entry('c', { status: 'joining', since: 5 })], { partitions: 64, n: 2 })
    const e = { ...base, ready: view.next.epoch, dropped: view.current.epoch }
    expect(parseMemberState(e)).toEqual(e)
  })

  it('refuses what is not an entry at all', () => {
    for (const x of [null, undefined, 1, 'a', [], [base], 1n]) expect(parseMemberState(x)).toBe('not an object')
  })

  it('a list is bounded and one entry per id; one bad entry refuses it whole', () => {
    expect(parseMembers([base, entry('b')])).toEqual([base, entry('b')])
    expect(parseMembers('x')).toMatch(/array/)
    expect(parseMembers([base, base])).toMatch(/listed twice/)
    expect(parseMembers([base, { ...entry('b'), weight: 100_000 }])).toMatch(/member b: bad weight/)
    expect(parseMembers(Array.from({ length: MAX_MEMBERS + 1 }, (_, i) => entry(`m${i}`)))).toMatch(/at most/)
  })

  it('a gossip message is rebuilt from partitions, n and members only', () => {
    const msg = unpack(pack({ partitions: 64, n: 3, members: [{ ...base, big: 2n ** 63n }], extra: 2n ** 63n }))
    expect(parseGossipMessage(msg)).toEqual({ partitions: 64, n: 3, members: [base] })
    for (const bad of [null, [], { n: 3, members: [] }, { partitions: 63, n: 3, members: [] }, { partitions: 1, n: 3, members: [] }, { partitions: 2 ** 17, n: 3, members: [] },
      { partitions: 64n, n: 3, members: [] }, { partitions: 64, n: 0, members: [] }, { partitions: 64, n: 17, members: [] }, { partitions: 64, n: '3', members: [] },
      { partitions: 64, n: 3 }, { partitions: 64, n: 3, members: {} }, { partitions: 64, n: 3, members: [{ ...base, version: -1 }] }]) {
      expect(typeof parseGossipMessage(bad), JSON.stringify(bad, (_k, v) => (typeof v === 'bigint' ? `${v}n` : v))).toBe('string')
    }
  })
})
