// The cluster secret's signatures: requests, set proofs and context parts verify only unchanged,
// within the window and under the same secret; vectors' canonical bytes round-trip; signed contexts
// encode their parts and decode to the join of them.
import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import {
  BadContextError,
  ClusterKeys,
  SET_PROOF_BYTES,
  SIGNATURE_WINDOW_MS,
  decodeContext,
  encodeContext,
  encodeSet,
  vectorBytes,
  vectorFromBytes,
  type VersionVector,
} from '../src/index.js'

const keys = new ClusterKeys(Buffer.from('a cluster secret of 32 bytes....'))
const other = new ClusterKeys(Buffer.from('another secret, also 32 bytes...'))
const NOW = 1_800_000_000_000
const TO = 'http://10.0.0.2:7001'

describe('request signatures', () => {
  const body = Buffer.from('body bytes')

  it('verify for the same method, path, query and body, within the window', () => {
    const sig = keys.signRequest(TO, 'POST', '/v1/gossip', body, NOW)
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/gossip', body, NOW + SIGNATURE_WINDOW_MS - 1)).toMatchObject({ ok: true })
    const withQuery = keys.signRequest(TO, 'GET', '/v1/ring?wait=abc&x=1', undefined, NOW)
    expect(keys.checkRequest(withQuery, TO, 'GET', '/v1/ring?wait=abc&x=1', Buffer.alloc(0), NOW)).toMatchObject({ ok: true })
  })

  it('refuse any change, another secret, and a time outside the window', () => {
    const sig = keys.signRequest(TO, 'POST', '/v1/gossip', body, NOW)
    expect(keys.checkRequest(sig, TO, 'PUT', '/v1/gossip', body, NOW).ok).toBe(false)
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/replica/store', body, NOW).ok).toBe(false)
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/gossip', Buffer.from('body bytez'), NOW).ok).toBe(false)
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/gossip?x=1', body, NOW).ok).toBe(false)
    expect(other.checkRequest(sig, TO, 'POST', '/v1/gossip', body, NOW).ok).toBe(false)
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/gossip', body, NOW + SIGNATURE_WINDOW_MS + 1)).toMatchObject({ ok: false, reason: expect.stringContaining('clock') })
    expect(keys.checkRequest(sig, TO, 'POST', '/v1/gossip', body, NOW - SIGNATURE_WINDOW_MS - 1).ok).toBe(false)
    const [t, n, m] = sig.split('.')
    expect(keys.checkRequest(`${Number(t) + 1}.${n}.${m}`, TO, 'POST', '/v1/gossip', body, NOW).ok).toBe(false)
    for (const bad of ['', 'x', '1.2', `${t}.${n}.${m}.extra`, `abc.${n}.${m}`]) expect(keys.checkRequest(bad, TO, 'POST', '/v1/gossip', body, NOW).ok).toBe(false)
  })

  it('are for one receiver: the same request sent to another node does not verify there', () => {
    const sig = keys.signRequest(TO, 'POST', '/v1/gossip', body, NOW)
    expect(keys.checkRequest(sig, 'http://10.0.0.3:7001', 'POST', '/v1/gossip', body, NOW).ok).toBe(false)
    expect(keys.checkRequest(sig, `${TO}/`, 'POST', '/v1/gossip', body, NOW).ok).toBe(true)
  })

  it('carry a fresh nonce each time (what the replay cache keys on)', () => {
    const a = keys.checkRequest(keys.signRequest(TO, 'POST', '/p', body, NOW), TO, 'POST', '/p', body, NOW)
    const b = keys.checkRequest(keys.signRequest(TO, 'POST', '/p', body, NOW), TO, 'POST', '/p', body, NOW)
    expect(a.ok && b.ok && a.nonce !== b.nonce).toBe(true)
  })

  it('refuse a secret shorter than 16 bytes', () => {
    expect(() => new ClusterKeys(Buffer.from('short'))).toThrow(/at least 16/)
  })
})

describe('set proofs', () => {
  const key = Buffer.from('k')
  const set = encodeSet([['n1~a', 3, [Buffer.from('v')]]])

  it('verify the same key and set within the window, under the same secret only', () => {
    const proof = keys.proveSet(key, set, NOW)
    expect(proof.byteLength).toBe(SET_PROOF_BYTES)
    expect(keys.checkSet(key, set, proof, NOW + 1000)).toBeUndefined()
    expect(keys.checkSet(Buffer.from('k2'), set, proof, NOW)).toMatch(/does not match/)
    expect(keys.checkSet(key, encodeSet([['n1~a', 4, [Buffer.from('v')]]]), proof, NOW)).toMatch(/does not match/)
    expect(other.checkSet(key, set, proof, NOW)).toMatch(/does not match/)
    expect(keys.checkSet(key, set, proof, NOW + SIGNATURE_WINDOW_MS + 1)).toMatch(/window/)
    expect(keys.checkSet(key, set, undefined, NOW)).toMatch(/needs the proof/)
    expect(keys.checkSet(key, set, proof.subarray(1), NOW)).toMatch(/needs the proof/)
    const altered = Buffer.from(proof)
    altered.writeDoubleBE(NOW + 5, 0)
    expect(keys.checkSet(key, set, altered, NOW)).toMatch(/does not match/)
  })
})

describe('contexts', () => {
  const vector = fc.uniqueArray(fc.tuple(fc.string({ minLength: 1, maxLength: 20 }), fc.integer({ min: 1, max: 2 ** 48 })), { selector: (e) => e[0], maxLength: 8 })
    .map((vv) => vv.sort((a, b) => (a[0] < b[0] ? -1 : 1)) as VersionVector)

  it('vector bytes round-trip, and truncated or extended bytes are not a vector', () => {
    fc.assert(fc.property(vector, (vv) => {
      const b = vectorBytes(vv)
      expect(vectorFromBytes(b)).toEqual(vv)
      expect(vectorFromBytes(b.subarray(0, b.length - 1))).toBeUndefined()
      expect(vectorFromBytes(Buffer.concat([b, Buffer.from([0])]))).toBeUndefined()
    }))
  })

  it('a context MAC is for one key and one vector', () => {
    const key = Buffer.from('k')
    const vv = vectorBytes([['a', 2], ['b', 5]])
    const mac = keys.proveContext(key, vv)
    expect(keys.checkContext(key, vv, mac)).toBe(true)
    expect(keys.checkContext(Buffer.from('j'), vv, mac)).toBe(false)
    expect(keys.checkContext(key, vectorBytes([['a', 2], ['b', 6]]), mac)).toBe(false)
    expect(other.checkContext(key, vv, mac)).toBe(false)
  })

  it('a signed context keeps its parts and decodes to their join; damaged parts are a BadContextError', () => {
    const key = Buffer.from('k')
    const a = vectorBytes([['a', 2], ['b', 5]])
    const b = vectorBytes([['a', 3], ['c', 1]])
    const parts: [Uint8Array, Uint8Array][] = [[a, keys.proveContext(key, a)], [b, keys.proveContext(key, b)]]
    const ctx = decodeContext(encodeContext({ vector: [], coordinator: 'n1', parts }))
    expect(ctx.vector).toEqual([['a', 3], ['b', 5], ['c', 1]])
    expect(ctx.coordinator).toBe('n1')
    expect(ctx.parts!.map(([v, m]) => keys.checkContext(key, v, m))).toEqual([true, true])
    // An unsigned context (a cluster without a secret) has no parts; no parts at all encodes as unsigned.
    expect(decodeContext(encodeContext({ vector: [['a', 1]], parts: [] })).parts).toBeUndefined()
    expect(() => decodeContext(encodeContext({ vector: [], parts: [[Buffer.from('junk'), Buffer.alloc(16)]] }))).toThrow(BadContextError)
  })
})
