// The public API's key encoding: any bytes survive percent-encoding, encodeURIComponent of a string
// gives that string's UTF-8 bytes, and a malformed escape is a typed error.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, apiError, percentDecode, percentEncode, utf8 } from '../src/index.js'

describe('percent-encoding of keys', () => {
  it('round-trips any bytes', () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (b) => {
      expect(Buffer.from(percentDecode(percentEncode(b))).equals(Buffer.from(b))).toBe(true)
    }))
  })

  it('decodes encodeURIComponent(s) to the UTF-8 of s, and what a browser leaves unescaped as itself', () => {
    fc.assert(fc.property(fc.string({ unit: 'grapheme', maxLength: 32 }), (s) => {
      expect(Buffer.from(percentDecode(encodeURIComponent(s))).equals(Buffer.from(utf8(s)))).toBe(true)
    }))
    expect(Buffer.from(percentDecode("a+b!*'()é")).toString()).toBe("a+b!*'()é")
  })

  it('escapes everything but the unreserved characters', () => {
    expect(percentEncode(utf8('a/b c~._-Z9'))).toBe('a%2Fb%20c~._-Z9')
    expect(percentEncode(Uint8Array.from([0, 255]))).toBe('%00%FF')
  })

  it('refuses a % not followed by two hex digits, naming where', () => {
    for (const bad of ['%', 'a%2', '%zz', 'ok%G0']) {
      expect(() => percentDecode(bad)).toThrow(InvalidArgumentError)
    }
    expect(() => percentDecode('ab%zz')).toThrow(/character 2/)
  })
})

describe('apiError', () => {
  it('gives the typed error of a Zerohop error body, and a QuorumError naming the status for any other body', () => {
    const quorum = apiError(503, Buffer.from(JSON.stringify({ error: { code: 'ZH_QUORUM_NOT_MET', message: 'm', operation: 'put', required: 2, succeeded: 1, replicas: [{ id: 'n2', url: 'u', cause: 'timeout', message: 't' }] } })), 'get')
    expect(quorum).toMatchObject({ code: 'ZH_QUORUM_NOT_MET', operation: 'put', required: 2, succeeded: 1, replicas: [{ id: 'n2', cause: 'timeout' }] })
    expect(apiError(400, Buffer.from('{"error":{"code":"ZH_INVALID_ARGUMENT","message":"r must be…"}}'), 'get')).toBeInstanceOf(InvalidArgumentError)
    expect(apiError(502, Buffer.from('<html>bad gateway</html>'), 'put')).toMatchObject({ code: 'ZH_QUORUM_NOT_MET', replicas: [{ cause: 'http', status: 502 }] })
  })
})
