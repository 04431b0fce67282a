// The node's HTTP contract under bad input, against a real 3-node cluster (the built cli): exact status,
// the JSON error body {"error":{"code","message"}} with its stable code, the epoch header on every
// answer, and a node that keeps serving with its data intact afterwards. Also: invalid command-line
// options, and SIGTERM with a request in flight.
import { spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { Readable } from 'node:stream'
import { Client, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClusterView, EPOCH_HEADER, MSGPACK, Paths, decodeSet, encodeSet, pack, siblings, unpack, type RingResponse } from '@zerohop/core'
import { CLI, Cluster, freePorts, waitFor, type NodeProcess } from '../../test/harness/cluster.js'

const MIB = 1024 * 1024
/** The cluster runs with a 2 MiB body limit: above a 1 MiB value's request, far below the 16 MiB default. */
const MAX_BODY = 2 * MIB
const MAX_KEY = 1024
const MAX_VALUE = MIB

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  raw: Buffer
}

interface SendOptions {
  method?: 'GET' | 'POST' | 'PUT' | 'DELETE' | 'HEAD'
  body?: Buffer | Readable
  type?: string | null
  headers?: Record<string, string>
  node?: NodeProcess
}

describe('node HTTP API against a real 3-node cluster', () => {
  let cluster: Cluster
  let view: ClusterView
  let n1: NodeProcess

  async function send(p: string, o: SendOptions = {}): Promise<Reply> {
    const node = o.node ?? n1
    const headers: Record<string, string> = { ...o.headers }
    const type = o.type === undefined ? MSGPACK : o.type
    if (type !== null) headers['content-type'] = type
    const res = await request(`${node.url}${p}`, { method: o.method ?? 'POST', body: o.body, headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
    const raw = Buffer.from(await res.body.arrayBuffer())
    return { status: res.statusCode, headers: res.headers, raw }
  }

  function expectEpoch(r: Reply): void {
    // The digest names the rings; the version before it grows with every change a node learns (a restart too).
    const digest = (e: unknown) => String(e).split('-')[1]
    expect(digest(r.headers[EPOCH_HEADER]), 'x-zerohop-epoch header').toBe(digest(view.epoch))
  }

  /** Exact status, a JSON body of exactly {"error":{"code","message"}}, the code, and the epoch header. */
  function expectError(r: Reply, status: number, code: string, what = ''): { code: string; message: string } {
    const label = `${what} → ${r.status} ${r.raw.toString().slice(0, 300)}`
    expect(r.status, label).toBe(status)
    expect(String(r.headers['content-type']), label).toMatch(/^application\/json\b/)
    const body = JSON.parse(r.raw.toString()) as { error: { code: string; message: string } }
    expect(Object.keys(body), label).toEqual(['error'])
    expect(Object.keys(body.error).sort(), label).toEqual(['code', 'message'])
    expect(body.error.code, label).toBe(code)
    expect(typeof body.error.message).toBe('string')
    expect(body.error.message.length, label).toBeGreaterThan(0)
    expectEpoch(r)
    return body.error
  }

  function expectOk(r: Reply, what = ''): Record<string, unknown> {
    expect(r.status, `${what} → ${r.status} ${r.raw.toString().slice(0, 300)}`).toBe(200)
    expect(r.headers['content-type']).toBe(MSGPACK)
    expectEpoch(r)
    return unpack(r.raw) as Record<string, unknown>
  }

  const k = (s: string) => Buffer.from(s)
  const partOf = (key: Uint8Array) => view.current.partitionOf(key)
  const readBody = (key: Uint8Array) => pack({ keys: [[partOf(key), key]] })
  const coordinateBody = (key: Uint8Array, value: Uint8Array | null, context: unknown = []) => pack({ partition: partOf(key), key, context, value })

  async function coordinate(key: Uint8Array, value: Uint8Array | null, node?: NodeProcess): Promise<Uint8Array> {
    const out = expectOk(await send(Paths.coordinate, { body: coordinateBody(key, value), node }), 'coordinate') as { set: Uint8Array }
    return out.set
  }

  async function read(key: Uint8Array, node?: NodeProcess): Promise<Uint8Array | null> {
    const out = expectOk(await send(Paths.read, { body: readBody(key), node }), 'read') as { sets: (Uint8Array | null)[] }
    expect(out.sets).toHaveLength(1)
    return out.sets[0]
  }

  // Written before any bad request; read back byte-identical after all of them.
  const CANARY = k('canary')
  const CANARY_VALUE = randomBytes(4096)
  let canarySet: Buffer

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, args: ['--max-body-bytes', String(MAX_BODY)] })
    n1 = cluster.node('n1')
    const res = await request(`${n1.url}${Paths.ring}`)
    const d = (await res.body.json()) as RingResponse
    view = new ClusterView(d.members, { partitions: d.partitions, n: d.n, spares: d.spares })
    expect(view.epoch).toBe(d.epoch)
    canarySet = Buffer.from(await coordinate(CANARY, CANARY_VALUE))
  })

  afterAll(async () => {
    await cluster?.close()
  })

  it('serves the same ring epoch on every node and in every response header', async () => {
    expect(view.current.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3'])
    for (const node of cluster.nodes) {
      const r = await send(Paths.ring, { method: 'GET', node, type: null })
      expect(r.status).toBe(200)
      expect(JSON.parse(r.raw.toString()).epoch).toBe(view.epoch)
      expectEpoch(r)
      const h = await send(Paths.health, { method: 'GET', node, type: null })
      expect(h.status).toBe(200)
      expect(JSON.parse(h.raw.toString())).toMatchObject({ status: 'ok', id: node.id, epoch: view.epoch })
      expectEpoch(h)
    }
  })

  it('rejects a key over 1024 bytes with 400 ZH_KEY_TOO_LARGE on every endpoint', async () => {
    const big = randomBytes(MAX_KEY + 1)
    const p = partOf(big)
    const set = encodeSet([['x~1', 1, [k('v')]]])
    expectError(await send(Paths.read, { body: pack({ keys: [[p, big]] }) }), 400, 'ZH_KEY_TOO_LARGE', 'read')
    expectError(await send(Paths.coordinate, { body: pack({ partition: p, key: big, context: [], value: k('v') }) }), 400, 'ZH_KEY_TOO_LARGE', 'coordinate')
    expectError(await send(Paths.store, { body: pack({ items: [[p, big, set]] }) }), 400, 'ZH_KEY_TOO_LARGE', 'store')
    // The second key of a batch is checked too.
    expectError(await send(Paths.read, { body: pack({ keys: [[partOf(k('a')), k('a')], [p, big]] }) }), 400, 'ZH_KEY_TOO_LARGE', 'read batch')
    // The limit itself is allowed.
    const edge = randomBytes(MAX_KEY)
    expect(await read(edge)).toBeNull()
  })

  it('rejects a value over 1 MiB with 413 ZH_VALUE_TOO_LARGE and stores nothing; exactly 1 MiB is fine', async () => {
    const key = k('too-big-value')
    const over = randomBytes(MAX_VALUE + 1)
    expectError(await send(Paths.coordinate, { body: coordinateBody(key, over) }), 413, 'ZH_VALUE_TOO_LARGE', 'coordinate')
    const overSet = encodeSet([['x~1', 1, [over]]])
    expectError(await send(Paths.store, { body: pack({ items: [[partOf(key), key, overSet]] }) }), 413, 'ZH_VALUE_TOO_LARGE', 'store')
    expect(await read(key)).toBeNull()

    const edgeKey = k('exactly-1-mib')
    const edge = randomBytes(MAX_VALUE)
    await coordinate(edgeKey, edge)
    const stored = await read(edgeKey)
    expect(siblings(decodeSet(stored!)).map((x) => Buffer.from(x).equals(edge))).toEqual([true])
  })

  it('coordinates a batch item by item: each minted on its own, a refused item fails alone with its status and code', async () => {
    const a = k('batch-a')
    const b = k('batch-b')
    const big = randomBytes(MAX_VALUE + 1)
    const items = [
      { partition: partOf(a), key: a, context: [], value: k('1') },
      { partition: partOf(b), key: b, context: [], value: big },
      { partition: (partOf(b) + 1) % view.current.partitions, key: b, context: [], value: k('2') },
      'not a map',
      { partition: partOf(b), key: b, context: [], value: k('3') },
    ]
    const out = expectOk(await send(Paths.coordinate, { body: pack({ items }) }), 'coordinate batch') as { results: ({ set: Uint8Array } | { error: { status: number; code: string } })[] }
    expect(out.results).toHaveLength(5)
    const errors = out.results.map((r) => ('error' in r ? [r.error.status, r.error.code] : 'ok'))
    expect(errors).toEqual(['ok', [413, 'ZH_VALUE_TOO_LARGE'], [400, 'ZH_WRONG_PARTITION'], [400, 'ZH_BAD_BODY'], 'ok'])
    expect(siblings(decodeSet((out.results[0] as { set: Uint8Array }).set)).map(String)).toEqual(['1'])
    expect(siblings(decodeSet((await read(b))!)).map(String)).toEqual(['3'])
    expectError(await send(Paths.coordinate, { body: pack({ items: [] }) }), 400, 'ZH_BAD_BODY', 'an empty batch')
  })

  it('rejects bodies that are not MessagePack with 400 ZH_BAD_BODY', async () => {
    const valid = readBody(k('a'))
    const bodies: [string, Buffer][] = [
      ['0xc1 (never used in MessagePack)', Buffer.from([0xc1])],
      ['0xc1 repeated', Buffer.alloc(64, 0xc1)],
      ['text', Buffer.from('this is not msgpack')],
      ['empty', Buffer.alloc(0)],
      ['a valid body followed by garbage', Buffer.concat([valid, Buffer.from([0x01, 0x02])])],
      ['a bin header announcing more than is sent', Buffer.from([0xc6, 0xff, 0xff, 0xff, 0xff, 0x00])],
    ]
    for (const p of [Paths.read, Paths.coordinate, Paths.store]) {
      for (const [what, body] of bodies) expectError(await send(p, { body }), 400, 'ZH_BAD_BODY', `${p} ${what}`)
    }
  })

  it('rejects a truncated body (valid MessagePack cut in half, correct content-length) with 400 ZH_BAD_BODY', async () => {
    const key = k('truncated')
    const set = encodeSet([['x~1', 1, [randomBytes(200)]]])
    const cases: [string, Buffer][] = [
      [Paths.read, pack({ keys: [[partOf(key), key], [partOf(k('b')), k('b')]] })],
      [Paths.coordinate, coordinateBody(key, randomBytes(300))],
      [Paths.store, pack({ items: [[partOf(key), key, set]] })],
    ]
    for (const [p, full] of cases) {
      const half = full.subarray(0, full.length >> 1)
      expect(() => unpack(half)).toThrow() // the cut really is not MessagePack
      const r = await send(p, { body: half, headers: { 'content-length': String(half.length) } })
      expectError(r, 400, 'ZH_BAD_BODY', `${p} truncated`)
    }
    expect(await read(key)).toBeNull()
  })

  it('rejects valid MessagePack of the wrong shape with 400 ZH_BAD_BODY', async () => {
    const key = k('shape')
    const p = partOf(key)
    const set = encodeSet([['x~1', 1, [k('v')]]])
    const cases: [string, string, unknown][] = [
      [Paths.read, 'body is an array', [[p, key]]],
      [Paths.read, 'body is nil', null],
      [Paths.read, 'body is a number', 42],
      [Paths.read, 'no keys', {}],
      [Paths.read, 'keys not an array', { keys: 'abc' }],
      [Paths.read, 'keys a map', { keys: { 0: [p, key] } }],
      [Paths.read, 'keys empty', { keys: [] }],
      [Paths.read, 'keys over the batch limit', { keys: Array.from({ length: 1001 }, () => [p, key]) }],
      [Paths.read, 'item not [p, key]', { keys: [p, key] }],
      [Paths.read, 'item too short', { keys: [[p]] }],
      [Paths.read, 'item too long', { keys: [[p, key, 1]] }],
      [Paths.read, 'key a string', { keys: [[p, 'shape']] }],
      [Paths.read, 'key empty', { keys: [[p, Buffer.alloc(0)]] }],
      [Paths.coordinate, 'no key', { partition: p, context: [], value: k('v') }],
      [Paths.coordinate, 'context not a vector', { partition: p, key, context: 'ctx', value: k('v') }],
      [Paths.coordinate, 'context counter 0', { partition: p, key, context: [['n1~x', 0]], value: k('v') }],
      [Paths.coordinate, 'context pair too long', { partition: p, key, context: [['n1~x', 1, 2]], value: k('v') }],
      [Paths.coordinate, 'value a string', { partition: p, key, context: [], value: 'v' }],
      [Paths.coordinate, 'no value', { partition: p, key, context: [] }],
      [Paths.store, 'items not an array', { items: 7 }],
      [Paths.store, 'items empty', { items: [] }],
      [Paths.store, 'item of two', { items: [[p, key]] }],
      [Paths.store, 'set not bytes', { items: [[p, key, [['x~1', 1, [k('v')]]]]] }],
      [Paths.store, 'set a string', { items: [[p, key, 'set']] }],
      [Paths.store, 'a read body sent to store', { keys: [[p, key]], set }],
    ]
    for (const [path_, what, body] of cases) expectError(await send(path_, { body: pack(body) }), 400, 'ZH_BAD_BODY', `${path_} ${what}`)
    expect(await read(key)).toBeNull()
  })

  it('rejects a partition outside 0..Q-1 with 400 ZH_UNKNOWN_PARTITION', async () => {
    const key = k('partition')
    const set = encodeSet([['x~1', 1, [k('v')]]])
    expect(view.current.partitions).toBe(64)
    // 2^63 travels as a 64-bit integer, which MessagePack decodes as a BigInt.
    for (const bad of [99999, view.current.partitions, -1, 1.5, '3', null, 2 ** 32, 2n ** 63n]) {
      const what = `partition ${String(bad)}`
      expectError(await send(Paths.read, { body: pack({ keys: [[bad, key]] }) }), 400, 'ZH_UNKNOWN_PARTITION', `read ${what}`)
      expectError(await send(Paths.coordinate, { body: pack({ partition: bad, key, context: [], value: k('v') }) }), 400, 'ZH_UNKNOWN_PARTITION', `coordinate ${what}`)
      expectError(await send(Paths.store, { body: pack({ items: [[bad, key, set]] }) }), 400, 'ZH_UNKNOWN_PARTITION', `store ${what}`)
    }
    expect(await read(key)).toBeNull()
  })

  it('answers POST /v1/ae/roots with one 16-byte root per partition; bad bodies get typed 4xx errors', async () => {
    const all = Array.from({ length: view.current.partitions }, (_, p) => p)
    const ok = expectOk(await send('/v1/ae/roots', { body: pack({ partitions: all, fanout: 16, depth: 3 }) }), 'roots') as { roots: Uint8Array[] }
    expect(ok.roots).toHaveLength(all.length)
    for (const r of ok.roots) expect(r.byteLength).toBe(16)
    const cases: [unknown, number, string][] = [
      [[0, 1], 400, 'ZH_BAD_BODY'],
      [{}, 400, 'ZH_BAD_BODY'],
      [{ partitions: [] }, 400, 'ZH_BAD_BODY'],
      [{ partitions: '0' }, 400, 'ZH_BAD_BODY'],
      [{ partitions: Array.from({ length: 4097 }, () => 0) }, 400, 'ZH_BAD_BODY'],
      [{ partitions: [0, -1] }, 400, 'ZH_UNKNOWN_PARTITION'],
      [{ partitions: [0, 1.5] }, 400, 'ZH_UNKNOWN_PARTITION'],
      [{ partitions: [0, view.current.partitions] }, 400, 'ZH_UNKNOWN_PARTITION'],
      [{ partitions: [0], fanout: 4, depth: 6 }, 409, 'ZH_CLUSTER_MISMATCH'],
    ]
    for (const [body, status, code] of cases) expectError(await send('/v1/ae/roots', { body: pack(body) }), status, code, `roots ${JSON.stringify(body).slice(0, 60)}`)
  })

  it("rejects a partition that is not the key's with 400 ZH_WRONG_PARTITION", async () => {
    const key = k('wrong-partition')
    const right = partOf(key)
    const wrong = (right + 1) % view.current.partitions
    const set = encodeSet([['x~1', 1, [k('v')]]])
    const e = expectError(await send(Paths.read, { body: pack({ keys: [[wrong, key]] }) }), 400, 'ZH_WRONG_PARTITION', 'read')
    expect(e.message).toContain(String(right))
    expectError(await send(Paths.coordinate, { body: pack({ partition: wrong, key, context: [], value: k('v') }) }), 400, 'ZH_WRONG_PARTITION', 'coordinate')
    expectError(await send(Paths.store, { body: pack({ items: [[wrong, key, set]] }) }), 400, 'ZH_WRONG_PARTITION', 'store')
    // Nothing was written under either partition; the right one is accepted.
    expect(await read(key)).toBeNull()
    const ok = expectOk(await send(Paths.store, { body: pack({ items: [[right, key, set]] }) }), 'store right partition')
    expect(ok).toEqual({ changed: 1 })
    expect(Buffer.from((await read(key))!).equals(set)).toBe(true)
  })

  it('rejects a store of a malformed DVV set with 400 ZH_BAD_BODY, and rejects the whole batch', async () => {
    const key = k('dvv')
    const p = partOf(key)
    const v = k('value')
    const sets: [string, Buffer][] = [
      ['unsorted actors', pack([['b~1', 1, [v]], ['a~1', 1, [v]]])],
      ['repeated actor', pack([['a~1', 1, [v]], ['a~1', 2, [v]]])],
      ['counter smaller than the number of values', pack([['a~1', 1, [v, v]]])],
      ['counter 0', pack([['a~1', 0, []]])],
      ['counter not an integer', pack([['a~1', 1.5, [v]]])],
      ['non-bytes value', pack([['a~1', 1, ['a string']]])],
      ['numeric value', pack([['a~1', 1, [7]]])],
      ['empty actor', pack([['', 1, [v]]])],
      ['entry of two', pack([['a~1', 1]])],
      ['a map, not a list', pack({ a: 1 })],
      ['not MessagePack', Buffer.from([0xc1])],
      ['truncated', encodeSet([['a~1', 1, [randomBytes(64)]]]).subarray(0, 20)],
    ]
    for (const [what, set] of sets) expectError(await send(Paths.store, { body: pack({ items: [[p, key, set]] }) }), 400, 'ZH_BAD_BODY', what)
    // A good item batched with a bad one is not stored either: bad input never reaches storage.
    const goodKey = k('dvv-good')
    const good = encodeSet([['a~1', 1, [v]]])
    expectError(await send(Paths.store, { body: pack({ items: [[partOf(goodKey), goodKey, good], [p, key, sets[0][1]]] }) }), 400, 'ZH_BAD_BODY', 'mixed batch')
    expect(await read(goodKey)).toBeNull()
    expect(await read(key)).toBeNull()
  })

  it('answers a wrong method with 405 ZH_METHOD_NOT_ALLOWED and an Allow header', async () => {
    const cases: [string, SendOptions['method'], string][] = [
      [Paths.read, 'GET', 'POST'],
      [Paths.coordinate, 'PUT', 'POST'],
      [Paths.store, 'DELETE', 'POST'],
      [Paths.ring, 'POST', 'GET, HEAD'],
      [Paths.health, 'PUT', 'GET, HEAD'],
    ]
    for (const [p, method, allow] of cases) {
      const body = method === 'GET' ? undefined : readBody(k('a'))
      const r = await send(p, { method, body })
      expectError(r, 405, 'ZH_METHOD_NOT_ALLOWED', `${method} ${p}`)
      expect(r.headers.allow, `${method} ${p}`).toBe(allow)
    }
  })

  it('answers a wrong content type with 415 ZH_UNSUPPORTED_MEDIA_TYPE', async () => {
    const json = Buffer.from(JSON.stringify({ keys: [[0, 'a']] }))
    for (const type of ['application/json', 'text/plain', 'application/octet-stream', null]) {
      expectError(await send(Paths.read, { body: type === 'application/json' ? json : readBody(k('a')), type }), 415, 'ZH_UNSUPPORTED_MEDIA_TYPE', `type ${type}`)
    }
    // Parameters and case do not matter.
    expectOk(await send(Paths.read, { body: readBody(k('a')), type: 'Application/X-MsgPack; charset=binary' }), 'msgpack with parameters')
  })

  it('answers an unknown path with 404 ZH_NOT_FOUND', async () => {
    const cases: [string, SendOptions['method']][] = [
      ['/v1/replica/nope', 'POST'],
      ['/v1/replica/read/', 'POST'],
      ['/v1/replica', 'POST'],
      ['/', 'GET'],
      ['/v2/ring', 'GET'],
    ]
    for (const [p, method] of cases) {
      expectError(await send(p, { method, body: method === 'POST' ? readBody(k('a')) : undefined }), 404, 'ZH_NOT_FOUND', `${method} ${p}`)
    }
  })

  it('rejects a body over --max-body-bytes with 413 ZH_BODY_TOO_LARGE, declared or streamed; the limit itself is fine', async () => {
    const key = k('body-limit')
    // A valid read request padded (the node ignores unknown fields) to exactly the limit.
    const unpadded = pack({ keys: [[partOf(key), key]], pad: Buffer.alloc(100_000) }).length - 100_000
    const atLimit = pack({ keys: [[partOf(key), key]], pad: Buffer.alloc(MAX_BODY - unpadded) })
    expect(atLimit.length).toBe(MAX_BODY)
    expect(expectOk(await send(Paths.read, { body: atLimit }), 'body at the limit')).toEqual({ sets: [null] })

    const over = Buffer.concat([atLimit, Buffer.from([0])])
    expect(over.length).toBe(MAX_BODY + 1)
    // Bodies are held open (never ended) until the answer arrives: the node must answer on what it has
    // seen, and the client is not racing the node's close with writes it has not made yet.
    // Declared: content-length over the limit; only the first 1 KiB is ever sent.
    const declaredBody = new Readable({ read() {} })
    declaredBody.push(over.subarray(0, 1024))
    const declared = await send(Paths.coordinate, { body: declaredBody, headers: { 'content-length': String(over.length) } })
    declaredBody.destroy()
    expectError(declared, 413, 'ZH_BODY_TOO_LARGE', 'declared content-length')
    // Streamed: chunked, no content-length; the node counts as it reads and stops at limit + 1.
    const chunkedBody = new Readable({ read() {} })
    chunkedBody.push(over.subarray(0, MIB))
    chunkedBody.push(over.subarray(MIB))
    const streamed = await send(Paths.coordinate, { body: chunkedBody })
    chunkedBody.destroy()
    expectError(streamed, 413, 'ZH_BODY_TOO_LARGE', 'chunked')
    // Without the flag's limit the same body would have been read whole: it is far below the 16 MiB default.
    expect(over.length).toBeLessThan(16 * MIB)
    expect(await read(key)).toBeNull()
  })

  it('keeps serving after all the bad requests: stored data is intact and a coordinate+read round trip works', async () => {
    const stored = await read(CANARY)
    expect(Buffer.from(stored!).equals(canarySet)).toBe(true)
    expect(siblings(decodeSet(stored!)).map((x) => Buffer.from(x).equals(CANARY_VALUE))).toEqual([true])

    const key = k('after-bad-input')
    const value = randomBytes(10_000)
    const set = await coordinate(key, value)
    const back = await read(key)
    expect(Buffer.from(back!).equals(Buffer.from(set))).toBe(true)
    expect(siblings(decodeSet(back!)).map((x) => Buffer.from(x).equals(value))).toEqual([true])
    // A batch read mixing present and missing keys.
    const out = expectOk(await send(Paths.read, { body: pack({ keys: [[partOf(CANARY), CANARY], [partOf(k('never')), k('never')], [partOf(key), key]] }) })) as { sets: (Uint8Array | null)[] }
    expect(out.sets.map((s) => (s ? Buffer.from(s).toString('hex') : null))).toEqual([canarySet.toString('hex'), null, Buffer.from(set).toString('hex')])
    const h = await send(Paths.health, { method: 'GET', type: null })
    expect(JSON.parse(h.raw.toString()).status).toBe('ok')
  })

  it('SIGTERM with a coordinate in flight: the request completes with 200, the node exits 0 promptly, and the value survives a restart', async () => {
    const node = cluster.node('n3')
    const key = k('in-flight')
    const value = randomBytes(512 * 1024)
    const body = coordinateBody(key, value)
    const client = new Client(node.url)
    let set: Buffer | undefined
    try {
      // Open the connection first, so the node has accepted it before the signal arrives.
      const warm = await client.request({ path: Paths.health, method: 'GET' })
      await warm.body.dump()
      expect(warm.statusCode).toBe(200)

      const headersSent = new Promise<void>((resolve) => {
        const channel = diagnostics.channel('undici:client:sendHeaders')
        const onMessage = (m: unknown) => {
          if ((m as { request: { path: string } }).request.path !== Paths.coordinate) return
          channel.unsubscribe(onMessage)
          resolve()
        }
        channel.subscribe(onMessage)
      })
      const stream = new Readable({ read() {} })
      stream.push(body.subarray(0, 64 * 1024))
      const pending = client.request({ path: Paths.coordinate, method: 'POST', body: stream, headers: { 'content-type': MSGPACK, 'content-length': String(body.length) } })
      await headersSent
      const pid = node.pid
      node.signal('SIGTERM')
      // The node is shutting down (no longer accepting connections) while most of our body is unsent.
      await waitFor(() => refused(node.port), { timeoutMs: 5000, intervalMs: 20, what: 'n3 to stop accepting connections after SIGTERM' })
      expect(node.running).toBe(true)
      expect(node.pid).toBe(pid)
      stream.push(body.subarray(64 * 1024))
      stream.push(null)

      const res = await pending
      const raw = Buffer.from(await res.body.arrayBuffer())
      expect(res.statusCode, raw.toString().slice(0, 300)).toBe(200)
      set = Buffer.from((unpack(raw) as { set: Uint8Array }).set)
      expect(siblings(decodeSet(set)).map((x) => Buffer.from(x).equals(value))).toEqual([true])

      // The node finishes the request and exits on its own, well before its 10 s force-close grace period.
      const answered = Date.now()
      await waitFor(() => !node.running, { timeoutMs: 15_000, what: 'n3 to exit after SIGTERM' })
      expect(node.child!.signalCode).toBeNull()
      expect(node.child!.exitCode).toBe(0)
      expect(Date.now() - answered).toBeLessThan(5000)
    } finally {
      await client.destroy()
    }

    await cluster.restart('n3')
    const stored = await read(key, node)
    expect(Buffer.from(stored!).equals(set!)).toBe(true)
  })
})

/** True when nothing accepts connections on the port any more. */
function refused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1')
    s.once('connect', () => {
      s.destroy()
      resolve(false)
    })
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED'))
  })
}

describe('zerohop start with an invalid option', () => {
  let dir: string
  let port: number

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-cli-test-'))
    ;[port] = await freePorts(1)
  })

  afterAll(async () => {
    if (dir) await rm(dir, { recursive: true, force: true })
  })

  /** Run the built cli; resolves with its exit code and output, killing it (by PID) if it outlives the timeout. */
  function run(args: string[], timeoutMs = 10_000): Promise<{ code: number | null; signal: string | null; stderr: string; stdout: string; timedOut: boolean }> {
    return new Promise((resolve, reject) => {
      const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] })
      let stdout = ''
      let stderr = ''
      let timedOut = false
      child.stdout.on('data', (d: Buffer) => (stdout += d))
      child.stderr.on('data', (d: Buffer) => (stderr += d))
      const timer = setTimeout(() => {
        timedOut = true
        if (child.pid) process.kill(child.pid, 'SIGKILL')
      }, timeoutMs)
      child.once('error', reject)
      child.once('close', (code, signal) => {
        clearTimeout(timer)
        resolve({ code, signal, stderr, stdout, timedOut })
      })
    })
  }

  const cases: [string, (base: Record<string, string>) => Record<string, string | undefined>, RegExp][] = [
    ['--partitions 100 (not a power of two)', (b) => ({ ...b, '--partitions': '100' }), /partitions/],
    ['--partitions 1 (too few)', (b) => ({ ...b, '--partitions': '1' }), /partitions/],
    ['--port abc', (b) => ({ ...b, '--port': 'abc' }), /--port/],
    ['--port 70000', (b) => ({ ...b, '--port': '70000' }), /port/],
    ['missing --id', (b) => ({ ...b, '--id': undefined }), /--id/],
    ['--id with a space', (b) => ({ ...b, '--id': 'n 1' }), /\bid\b/],
    ['--n 0', (b) => ({ ...b, '--n': '0' }), /\bn must\b/],
    ['--max-body-bytes 10', (b) => ({ ...b, '--max-body-bytes': '10' }), /maxBodyBytes|max-body-bytes/],
    ['--seeds not-a-url', (b) => ({ ...b, '--seeds': 'not-a-url' }), /seed/],
    ['--log-level loud', (b) => ({ ...b, '--log-level': 'loud' }), /logLevel|log-level/],
    ['an unknown option --bogus', (b) => ({ ...b, '--bogus': '' }), /--bogus/],
  ]

  it.each(cases)('%s: exits 2 naming the option, before touching storage', async (_name, make, pattern) => {
    const data = path.join(dir, `data-${Math.random().toString(36).slice(2)}`)
    const opts = make({ '--id': 'bad1', '--port': String(port), '--data': data, '--log-level': 'warn' })
    const args = ['start']
    for (const [flag, value] of Object.entries(opts)) {
      if (value === undefined) continue
      args.push(flag)
      if (value !== '') args.push(value)
    }
    const r = await run(args)
    expect(r.timedOut, `still running after the timeout; output: ${r.stdout}${r.stderr}`).toBe(false)
    expect(r.code, r.stderr).toBe(2)
    expect(r.stderr).toMatch(/^zerohop: /)
    expect(r.stderr).toMatch(pattern)
    expect(existsSync(data)).toBe(false)
  })
})
