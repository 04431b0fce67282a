// The error classes' stable contract (code on `.code`, class name on `.name`) and the byte helpers.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { bytesEqual, fromUtf8, toHex, utf8 } from '../src/bytes.js'
import {
  AbortError,
  BadContextError,
  ClientClosedError,
  ErrorCodes,
  HttpError,
  InvalidArgumentError,
  KeyTooLargeError,
  MergeError,
  NoSeedReachableError,
  QuorumError,
  ValueTooLargeError,
  ZerohopError,
} from '../src/errors.js'

describe('errors', () => {
  const cases: [ZerohopError, string, string][] = [
    [new InvalidArgumentError('x'), 'ZH_INVALID_ARGUMENT', 'InvalidArgumentError'],
    [new BadContextError('x'), 'ZH_BAD_CONTEXT', 'BadContextError'],
    [new KeyTooLargeError(300, 256), 'ZH_KEY_TOO_LARGE', 'KeyTooLargeError'],
    [new ValueTooLargeError(2, 1), 'ZH_VALUE_TOO_LARGE', 'ValueTooLargeError'],
    [new QuorumError('put', 2, 1, []), 'ZH_QUORUM_NOT_MET', 'QuorumError'],
    [new AbortError(), 'ZH_ABORTED', 'AbortError'],
    [new NoSeedReachableError([]), 'ZH_NO_SEED_REACHABLE', 'NoSeedReachableError'],
    [new ClientClosedError(), 'ZH_CLIENT_CLOSED', 'ClientClosedError'],
    [new MergeError('x'), 'ZH_MERGE_FAILED', 'MergeError'],
    [new HttpError(404, ErrorCodes.NOT_FOUND, 'x'), 'ZH_NOT_FOUND', 'HttpError'],
  ]
  it.each(cases)('%s carries its code and class name', (err, code, name) => {
    expect(err).toBeInstanceOf(Error)
    expect(err).toBeInstanceOf(ZerohopError)
    expect(err.code).toBe(code)
    expect(err.name).toBe(name)
  })

  it('keeps the cause', () => {
    const cause = new Error('inner')
    expect(new BadContextError('x', { cause }).cause).toBe(cause)
  })

  it('QuorumError names each replica failure', () => {
    const err = new QuorumError('get', 2, 1, [{ id: 'n2', url: 'http://n2', cause: 'http', status: 503, message: 'x' }])
    expect(err.message).toBe('get needed 2 replica(s) but only 1 answered (n2: http 503)')
    expect(err.required).toBe(2)
    expect(err.succeeded).toBe(1)
  })

  it('HttpError serialises as {"error":{code,message}}', () => {
    expect(JSON.parse(JSON.stringify(new HttpError(400, ErrorCodes.BAD_BODY, 'bad')))).toEqual({ error: { code: 'ZH_BAD_BODY', message: 'bad' } })
  })

  it('every code is distinct and ZH_-prefixed', () => {
    const codes = Object.values(ErrorCodes)
    expect(new Set(codes).size).toBe(codes.length)
    for (const c of codes) expect(c).toMatch(/^ZH_[A-Z_]+$/)
  })
})

describe('bytes', () => {
  it('utf8 round-trips well-formed strings', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme' }), (s) => {
        expect(fromUtf8(utf8(s))).toBe(s)
      }),
      { numRuns: 200 },
    )
    expect([...utf8('é')]).toEqual([0xc3, 0xa9])
  })

  it('bytesEqual compares contents, respecting views into larger buffers', () => {
    const big = Uint8Array.from([9, 1, 2, 3, 9])
    expect(bytesEqual(big.subarray(1, 4), Uint8Array.from([1, 2, 3]))).toBe(true)
    expect(bytesEqual(big.subarray(0, 3), Uint8Array.from([1, 2, 3]))).toBe(false)
    expect(bytesEqual(Uint8Array.from([1, 2]), Uint8Array.from([1, 2, 3]))).toBe(false)
    expect(bytesEqual(null, null)).toBe(true)
    expect(bytesEqual(null, new Uint8Array())).toBe(false)
    expect(bytesEqual(undefined, Uint8Array.from([1]))).toBe(false)
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 16 }), fc.uint8Array({ maxLength: 16 }), (a, b) => {
        expect(bytesEqual(a, b)).toBe(toHex(a) === toHex(b))
        expect(bytesEqual(a, Uint8Array.from(a))).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('toHex encodes only the view', () => {
    const big = Uint8Array.from([0xff, 0x0a, 0xb0, 0xff])
    expect(toHex(big.subarray(1, 3))).toBe('0ab0')
    expect(toHex(new Uint8Array())).toBe('')
  })
})
