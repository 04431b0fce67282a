// Tests for the codec: DVV sets over MessagePack (round trip, canonical bytes, validation on decode)
// and the opaque context string (round trip, BadContextError for anything that is not one).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { MAX_COUNTER, checkSet, checkVector, decodeContext, decodeSet, encodeContext, encodeSet, pack, unpack, type Context } from '../src/codec.js'
import { md5 } from '../src/ring.js'
import { update, type DvvSet, type Entry, type Value } from '../src/dvv.js'
import { BadContextError } from '../src/errors.js'
import { arbOps, simulate } from './dvv-model.js'

const enc = new TextEncoder()
const v = (s: string) => enc.encode(s)

/** Structurally valid sets (sorted distinct actors, counter >= number of values); codec-level only. */
const arbValue: fc.Arbitrary<Value> = fc.option(fc.uint8Array({ maxLength: 40 }), { freq: 4, nil: null })
const arbSet: fc.Arbitrary<DvvSet> = fc
  .uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 12 }), { maxLength: 6 })
  .map((ids) => ids.filter((id) => id.length <= 256).sort())
  .chain((ids) =>
    fc.tuple(
      ...ids.map((id) =>
        fc
          .tuple(fc.array(arbValue, { maxLength: 4 }), fc.integer({ min: 0, max: 2 ** 40 }))
          .map(([vs, extra]): Entry => [id, Math.max(1, vs.length + extra), vs]),
      ),
    ),
  )

function expectTypeError(bytes: Uint8Array, pattern: RegExp, maxValueBytes?: number): void {
  expect(() => decodeSet(bytes, maxValueBytes)).toThrow(TypeError)
  expect(() => decodeSet(bytes, maxValueBytes)).toThrow(pattern)
}

function expectBadContext(s: string): void {
  let caught: unknown
  try {
    decodeContext(s)
  } catch (err) {
    caught = err
  }
  expect(caught).toBeInstanceOf(BadContextError)
  expect((caught as BadContextError).code).toBe('ZH_BAD_CONTEXT')
}

// A context as encodeContext frames it (payload + 4 bytes of its MD5), so the structural checks below
// are reached rather than the checksum.
const b64 = (x: unknown) => {
  const payload = pack(x)
  return Buffer.concat([payload, md5(payload).subarray(0, 4)]).toString('base64url')
}

/** msgpackr hands bytes back as Buffers (a Uint8Array subclass); compare as plain Uint8Arrays. */
function plain<T>(x: T): T {
  if (x instanceof Uint8Array) return new Uint8Array(x) as T
  if (Array.isArray(x)) return x.map(plain) as T
  if (x && typeof x === 'object') return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, plain(y)])) as T
  return x
}

const decodePlain = (bytes: Uint8Array, maxValueBytes?: number) => plain(decodeSet(bytes, maxValueBytes))

describe('encodeSet / decodeSet', () => {
  it('round-trips structurally valid sets, values as bytes, and re-encodes to the same bytes', () => {
    fc.assert(
      fc.property(arbSet, (set) => {
        expect(checkSet(set)).toBeUndefined()
        const bytes = encodeSet(set)
        const back = decodeSet(bytes)
        expect(plain(back)).toEqual(set)
        for (const [, , vs] of back) for (const x of vs) if (x !== null) expect(x).toBeInstanceOf(Uint8Array)
        expect(encodeSet(back).equals(bytes)).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('round-trips the sets of simulated histories', () => {
    fc.assert(
      fc.property(arbOps(20), ({ replicaCount, ops }) => {
        for (const s of simulate(replicaCount, ops).snapshots) expect(decodePlain(encodeSet(s.set))).toEqual(s.set)
      }),
      { numRuns: 50 },
    )
  })

  it('carries values as raw MessagePack bytes (bin), not base64 or arrays', () => {
    // bin 8: 0xc4, length, bytes.
    expect([...pack(new Uint8Array([1, 2, 3]))]).toEqual([0xc4, 3, 1, 2, 3])
    expect(encodeSet([['a', 1, [v('hi')]]]).includes(Buffer.from([0xc4, 2, 0x68, 0x69]))).toBe(true)
    const msg = { partition: 7, key: v('k'), context: [['a', 1]], value: null }
    expect(plain(unpack(pack(msg)))).toEqual(msg)
  })

  it('decodes an empty set', () => {
    expect(decodeSet(encodeSet([]))).toEqual([])
  })

  const x = v('x')
  const malformed: [string, unknown, RegExp][] = [
    ['not an array', { a: 1 }, /array of entries/],
    ['a string', 'set', /array of entries/],
    ['an entry that is not a triple', [['a', 1]], /\[actor, counter, values\]/],
    ['an entry that is not an array', ['a'], /\[actor, counter, values\]/],
    ['unsorted actors', [['b', 1, []], ['a', 1, []]], /sorted/],
    ['a repeated actor', [['a', 1, []], ['a', 2, []]], /sorted/],
    ['an empty actor', [['', 1, []]], /actor/],
    ['a numeric actor', [[7, 1, []]], /actor/],
    ['an actor over 256 characters', [['a'.repeat(257), 1, []]], /actor/],
    ['counter 0', [['a', 0, []]], /counter/],
    ['a negative counter', [['a', -1, []]], /counter/],
    ['a fractional counter', [['a', 1.5, [x]]], /counter/],
    ['a string counter', [['a', '2', [x]]], /counter/],
    ['counter below the number of values', [['a', 1, [x, x]]], /at most counter values/],
    ['values that are not an array', [['a', 1, x]], /at most counter values/],
    ['a string value', [['a', 1, ['v1']]], /bytes or null/],
    ['a numeric value', [['a', 1, [5]]], /bytes or null/],
    ['an array value', [['a', 1, [[1, 2]]]], /bytes or null/],
    ['an object value', [['a', 1, [{}]]], /bytes or null/],
  ]
  it.each(malformed)('rejects %s with a TypeError', (_, structure, why) => {
    expectTypeError(pack(structure), why)
    expect(checkSet(unpack(pack(structure)))).toMatch(why)
  })

  it('rejects a set whose counter is below its number of values, for any valid set', () => {
    const withValues = arbSet.filter((s) => s.some((e) => e[2].length > 1))
    fc.assert(
      fc.property(withValues, fc.nat(), (set, pick) => {
        const candidates = set.filter((e) => e[2].length > 1)
        const e = candidates[pick % candidates.length]
        const broken = set.map((f): Entry => (f === e ? [f[0], f[2].length - 1, f[2]] : f))
        expect(() => decodeSet(encodeSet(broken))).toThrow(TypeError)
      }),
      { numRuns: 50 },
    )
  })

  it('rejects values over maxValueBytes and accepts values at the limit', () => {
    const ten = new Uint8Array(10)
    const eleven = new Uint8Array(11)
    expect(decodePlain(encodeSet([['a', 2, [ten, null]]]), 10)).toEqual([['a', 2, [ten, null]]])
    expectTypeError(encodeSet([['a', 2, [ten, eleven]]]), /11 bytes, over the limit of 10/, 10)
    expectTypeError(encodeSet([['a', 1, [ten]], ['b', 1, [eleven]]]), /over the limit/, 10)
    // Without a limit any size is fine.
    expect(decodeSet(encodeSet([['a', 1, [new Uint8Array(100_000)]]]))[0][2][0]).toHaveLength(100_000)
  })

  it('accepts what update produces, including tombstones', () => {
    const s1 = update([], [], 'r1~x', v('v1'))
    const s2 = update([], s1, 'r2~y', null)
    expect(decodePlain(encodeSet(s2))).toEqual(s2)
  })
})

describe('encodeContext / decodeContext', () => {
  const arbVector = fc
    .uniqueArray(fc.string({ unit: 'grapheme', minLength: 1, maxLength: 20 }), { maxLength: 8 })
    .map((ids) => ids.filter((id) => id.length <= 256))
    .chain((ids) => fc.tuple(...ids.map((id) => fc.integer({ min: 1, max: MAX_COUNTER }).map((n): [string, number] => [id, n]))))
  const arbContext: fc.Arbitrary<Context> = fc.record(
    { vector: arbVector, coordinator: fc.string({ unit: 'grapheme', maxLength: 20 }) },
    { requiredKeys: ['vector'] },
  )

  it('round-trips, as a URL-safe string', () => {
    fc.assert(
      fc.property(arbContext, (ctx) => {
        const s = encodeContext(ctx)
        expect(s).toMatch(/^[A-Za-z0-9_-]+$/)
        const back = decodeContext(s)
        expect(back.vector).toEqual(ctx.vector)
        expect(back.coordinator).toBe(ctx.coordinator)
      }),
      { numRuns: 200 },
    )
  })

  it('every strict prefix of a context is rejected with BadContextError', () => {
    fc.assert(
      fc.property(arbContext, (ctx) => {
        const s = encodeContext(ctx)
        for (let i = 0; i < s.length; i++) expectBadContext(s.slice(0, i))
      }),
      { numRuns: 25 },
    )
  })

  it('garbage is either rejected with BadContextError or decodes to a well-formed context', () => {
    const b64chars = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.split('')
    const garbage = fc.oneof(
      fc.string({ maxLength: 60 }),
      fc.string({ unit: fc.constantFrom(...b64chars), maxLength: 60 }),
      fc.uint8Array({ maxLength: 45 }).map((b) => Buffer.from(b).toString('base64url')),
    )
    fc.assert(
      fc.property(garbage, (s) => {
        let ctx: Context
        try {
          ctx = decodeContext(s)
        } catch (err) {
          expect(err).toBeInstanceOf(BadContextError)
          return
        }
        expect(checkVector(ctx.vector)).toBe(true)
        expect(ctx.coordinator === undefined || typeof ctx.coordinator === 'string').toBe(true)
      }),
      { numRuns: 300 },
    )
  })

  const bad: [string, string][] = [
    ['the empty string', ''],
    ['characters outside base64url', 'kwGRkq$hAaJuMQ'],
    ['standard base64 characters', 'kwGRkq+hAa/uMQ'],
    ['padding', 'kwGRkqFhAaJuMQ=='],
    ['whitespace', 'kwGRkqFh AaJuMQ'],
    ['a string over 64 KiB', 'A'.repeat(65537)],
    ['bytes that are not MessagePack', Buffer.from([0xc1]).toString('base64url')],
    ['trailing bytes after a valid context', encodeContext({ vector: [['a', 1]] }) + 'AAAA'],
    ['version 2', b64([2, [['a', 1]], null])],
    ['version 0', b64([0, [], null])],
    ['a string version', b64(['1', [], null])],
    ['a map', b64({ v: 1, vector: [] })],
    ['a number', b64(1)],
    ['a vector that is not an array', b64([1, 'a', null])],
    ['a counter of 0', b64([1, [['a', 0]], null])],
    ['a fractional counter', b64([1, [['a', 1.5]], null])],
    ['a string counter', b64([1, [['a', '1']], null])],
    ['a pair without a counter', b64([1, [['a']], null])],
    ['a numeric actor', b64([1, [[1, 1]], null])],
    ['an empty actor', b64([1, [['', 1]], null])],
    ['an actor over 256 characters', b64([1, [['a'.repeat(257), 1]], null])],
    ['a numeric coordinator', b64([1, [], 5])],
  ]
  it.each(bad)('rejects %s with BadContextError (ZH_BAD_CONTEXT)', (_, s) => {
    expectBadContext(s)
  })

  it('rejects a non-string', () => {
    expectBadContext(42 as unknown as string)
    expectBadContext(null as unknown as string)
  })

  it('rejects a context whose bytes were altered in transit (checksum) with BadContextError', () => {
    const good = encodeContext({ vector: [['n1~abc', 7]], coordinator: 'n1' })
    let rejected = 0
    for (let i = 0; i < good.length; i++) {
      const c = good[i] === 'A' ? 'B' : 'A'
      const bad = good.slice(0, i) + c + good.slice(i + 1)
      try {
        decodeContext(bad)
      } catch (err) {
        expect(err).toBeInstanceOf(BadContextError)
        rejected++
      }
    }
    // Every single-character change is caught (the last character may carry padding bits only).
    expect(rejected).toBeGreaterThanOrEqual(good.length - 1)
  })

  it('rejects counters above MAX_COUNTER, so minting on top of a context stays a safe integer', () => {
    expect(() => decodeContext(b64([1, [['a', MAX_COUNTER + 1]], null]))).toThrow(BadContextError)
    expect(decodeContext(b64([1, [['a', MAX_COUNTER]], null])).vector).toEqual([['a', MAX_COUNTER]])
  })

  it('accepts a context without a coordinator and an empty vector', () => {
    expect(decodeContext(encodeContext({ vector: [] }))).toEqual({ vector: [], coordinator: undefined })
    expect(decodeContext(b64([1, [['a', 3]], null]))).toEqual({ vector: [['a', 3]], coordinator: undefined })
    expect(decodeContext(b64([1, [['a', 3]], 'n2']))).toEqual({ vector: [['a', 3]], coordinator: 'n2' })
  })

  it('every vector checkVector accepts yields a set that checkSet accepts', () => {
    // A context is copied into stored sets by update(); a vector that passes validation must not be
    // able to make the stored set undecodable.
    const arbRaw = fc.array(fc.tuple(fc.string({ maxLength: 4 }), fc.integer({ min: -1, max: 4 })), { maxLength: 5 })
    fc.assert(
      fc.property(arbRaw, (raw) => {
        if (!checkVector(raw)) return
        const s = update(raw, [['b', 1, [v('old')]]], 'r1', v('new'))
        expect(checkSet(s)).toBeUndefined()
        expect(decodePlain(encodeSet(s))).toEqual(s)
      }),
      { numRuns: 300 },
    )
  })
})
