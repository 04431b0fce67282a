// The public HTTP API and the SDK's load-balancer routing against a real 3-node cluster, straight to
// the nodes (no load balancer; test/integration/load-balancer.test.ts puts HAProxy in front): the
// answers and their headers, multipart siblings, every refused request leaving the data unchanged,
// each replica's cause in a 503, the node's local path to its own replica, and the SDK giving the same
// results in both routings, with contexts that work across them.
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { AbortError, InvalidArgumentError, QuorumError, connect, type Client } from '@zerohop/client'
import { pack, percentEncode, unpack } from '@zerohop/core'
import { Cluster, NO_BACKGROUND_REPAIR, sumMetric, waitFor } from '../harness/cluster.js'
import { sample } from '../../server/src/metrics.js'

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

async function call(method: 'GET' | 'PUT' | 'DELETE' | 'POST', url: string, { body, headers = {} }: { body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(url, { method, body, headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

const header = (a: Answer, name: string): string | undefined => {
  const v = a.headers[name]
  return Array.isArray(v) ? v[0] : v
}

function expectError(a: Answer, status: number, code: string, what = ''): { code: string; message: string; replicas?: { id: string; cause: string }[] } {
  expect(a.status, `${what} ${a.body.toString().slice(0, 300)}`).toBe(status)
  expect(header(a, 'content-type')).toBe('application/json')
  const e = (JSON.parse(a.body.toString()) as { error: { code: string; message: string; replicas?: { id: string; cause: string }[] } }).error
  expect(e.code, what).toBe(code)
  expect(e.message.length).toBeGreaterThan(10)
  return e
}

/** The parts of a multipart/mixed body, split on the boundary its content-type names. */
function parts(a: Answer): Buffer[] {
  const type = header(a, 'content-type') ?? ''
  const boundary = /^multipart\/mixed; boundary=([0-9a-f]+)$/.exec(type)?.[1]
  expect(boundary, type).toBeDefined()
  const text = a.body.toString('latin1')
  expect(text.endsWith(`--${boundary}--\r\n`)).toBe(true)
  return text
    .slice(0, -`--${boundary}--\r\n`.length)
    .split(`--${boundary}\r\n`)
    .slice(1)
    .map((p) => {
      const [head, ...rest] = p.split('\r\n\r\n')
      expect(head.toLowerCase()).toBe('content-type: application/octet-stream')
      return Buffer.from(rest.join('\r\n\r\n').slice(0, -2), 'latin1')
    })
}

let cluster: Cluster
let kv: (key: string | Uint8Array, query?: string, node?: number) => string

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, args: NO_BACKGROUND_REPAIR })
  kv = (key, query = '', node = 0) => `${cluster.nodes[node].url}/v1/kv/${typeof key === 'string' ? encodeURIComponent(key) : percentEncode(key)}${query}`
})

afterAll(async () => {
  await cluster?.close()
})

describe('the public HTTP API', () => {
  it('any node coordinates any key: written through one node, read through each of the others', async () => {
    const key = Uint8Array.from([0, 1, 0x2f, 0x20, 0xff, 0xc3])
    const put = await call('PUT', kv(key, '', 0), { body: 'bytes key' })
    expect(put.status).toBe(204)
    expect(put.body.length).toBe(0)
    expect(header(put, 'x-zerohop-context')).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(header(put, 'x-zerohop-conflict')).toBeUndefined()
    for (const node of [1, 2]) {
      const got = await call('GET', kv(key, '', node))
      expect(got.status).toBe(200)
      expect(header(got, 'content-type')).toBe('application/octet-stream')
      expect(got.body.toString()).toBe('bytes key')
      expect(header(got, 'x-zerohop-epoch')).toMatch(/^\d+-/)
    }
  })

  it('siblings come as multipart/mixed by default, one part per value; a PUT with their context resolves them', async () => {
    const binary = Buffer.from([0x0d, 0x0a, 0x2d, 0x2d, 0x00, 0xff])
    await call('PUT', kv('multi'), { body: 'plain' })
    const second = await call('PUT', kv('multi', '', 1), { body: binary })
    expect(header(second, 'x-zerohop-conflict')).toBe('true')
    const read = await call('GET', kv('multi', '', 2))
    expect(read.status).toBe(300)
    const values = parts(read).map((p) => p.toString('hex')).sort()
    expect(values).toEqual([Buffer.from('plain').toString('hex'), binary.toString('hex')].sort())
    const resolved = await call('PUT', kv('multi'), { body: 'one', headers: { 'x-zerohop-context': header(read, 'x-zerohop-context')! } })
    expect(resolved.status).toBe(204)
    expect(header(resolved, 'x-zerohop-conflict')).toBeUndefined()
    const after = await call('GET', kv('multi', '?r=3'))
    expect([after.status, after.body.toString()]).toEqual([200, 'one'])
  })

  it('a deleted key answers 404 with the context of its tombstone; a PUT with it is a plain overwrite', async () => {
    await call('PUT', kv('gone'), { body: 'v' })
    expect((await call('DELETE', kv('gone', '?w=3'))).status).toBe(204)
    const read = await call('GET', kv('gone', '?r=3'))
    expectError(read, 404, 'ZH_KEY_NOT_FOUND')
    const context = header(read, 'x-zerohop-context')
    expect(context).toBeDefined()
    // A key never written has no context to give.
    expect(header(await call('GET', kv('never-written')), 'x-zerohop-context')).toBeUndefined()
    const again = await call('PUT', kv('gone'), { body: 'back', headers: { 'x-zerohop-context': context! } })
    expect(header(again, 'x-zerohop-conflict')).toBeUndefined()
    expect((await call('GET', kv('gone', '?r=3'))).body.toString()).toBe('back')
  })

  it('refuses bad requests with typed 4xx errors, and none of them writes anything', async () => {
    const key = 'refused'
    const huge = Buffer.alloc(1024 * 1024 + 1, 1)
    const cases: [Promise<Answer>, number, string, string][] = [
      [call('PUT', kv(key, '?w=0'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'w=0'],
      [call('PUT', kv(key, '?w=4'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'w=4 > N'],
      [call('PUT', kv(key, '?w=two'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'w=two'],
      [call('PUT', kv(key, '?strict=yes'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'strict=yes'],
      [call('PUT', kv(key, '?timeout=-5'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'timeout=-5'],
      [call('PUT', kv(key, '?timeout=0'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'timeout=0'],
      [call('PUT', kv(key, '?wait=2'), { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'unknown parameter'],
      [call('PUT', kv(key), { body: 'x', headers: { 'x-zerohop-context': 'not-a-context' } }), 400, 'ZH_BAD_CONTEXT', 'forged context'],
      [call('PUT', kv(key), { body: huge }), 413, 'ZH_VALUE_TOO_LARGE', 'value over 1 MiB'],
      [call('PUT', `${cluster.nodes[0].url}/v1/kv/${'k'.repeat(1025)}`, { body: 'x' }), 400, 'ZH_KEY_TOO_LARGE', 'key over 1 KiB'],
      [call('PUT', `${cluster.nodes[0].url}/v1/kv/`, { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'no key'],
      [call('PUT', `${cluster.nodes[0].url}/v1/kv/a%2`, { body: 'x' }), 400, 'ZH_INVALID_ARGUMENT', 'cut percent-escape'],
      [call('DELETE', kv(key, '?w=9')), 400, 'ZH_INVALID_ARGUMENT', 'delete w=9'],
      [call('DELETE', kv(key), { headers: { 'x-zerohop-context': 'AAAA' } }), 400, 'ZH_BAD_CONTEXT', 'delete with a forged context'],
      [call('POST', kv(key), { body: 'x' }), 405, 'ZH_METHOD_NOT_ALLOWED', 'POST'],
      [call('GET', kv(key, '?r=1.5')), 400, 'ZH_INVALID_ARGUMENT', 'r=1.5'],
    ]
    for (const [answer, status, code, what] of cases) {
      const a = await answer
      const e = expectError(a, status, code, what)
      if (status === 405) expect(header(a, 'allow')).toBe('GET, HEAD, PUT, DELETE')
      if (what === 'w=4 > N') expect(e.message).toContain('N=3')
    }
    const explained = await call('GET', `${cluster.nodes[0].url}/v1/explain/${key}`)
    expect(explained.status).toBe(200)
    const replicas = (JSON.parse(explained.body.toString()) as { replicas: { id: string; found: boolean; digest: string | null }[] }).replicas
    expect(replicas.map((r) => [r.id, r.found, r.digest]).sort()).toEqual([['n1', false, null], ['n2', false, null], ['n3', false, null]])
  })

  it('POST /v1/batch answers each request as it would be answered alone, errors included', async () => {
    const post = (body: unknown, type = 'application/x-msgpack') => call('POST', `${cluster.nodes[1].url}/v1/batch`, { body: pack(body), headers: { 'content-type': type } })
    const res = await post({
      requests: [
        { method: 'PUT', path: '/v1/kv/batch-a', headers: {}, body: Buffer.from('A') },
        { method: 'PUT', path: '/v1/kv/batch-b?w=0', headers: {}, body: Buffer.from('B') },
        { method: 'GET', path: '/v1/ring', headers: {}, body: null },
        { method: 'PUT', path: '/v1/kv/batch-c', headers: { 'X-Zerohop-Context': 'forged' }, body: Buffer.from('C') },
      ],
    })
    expect(res.status).toBe(200)
    const replies = (unpack(res.body) as { replies: { status: number; headers: Record<string, string>; body: Uint8Array }[] }).replies
    expect(replies.map((r) => r.status)).toEqual([204, 400, 400, 400])
    expect(replies[0].headers['x-zerohop-context']).toMatch(/^[A-Za-z0-9_-]+$/)
    expect(JSON.parse(Buffer.from(replies[1].body).toString()).error.code).toBe('ZH_INVALID_ARGUMENT')
    expect(JSON.parse(Buffer.from(replies[2].body).toString()).error.code).toBe('ZH_BAD_BODY')
    expect(JSON.parse(Buffer.from(replies[3].body).toString()).error.code).toBe('ZH_BAD_CONTEXT')
    expect((await call('GET', kv('batch-a'))).body.toString()).toBe('A')
    for (const k of ['batch-b', 'batch-c']) expect((await call('GET', kv(k))).status).toBe(404)
    expectError(await post({ requests: [] }), 400, 'ZH_BAD_BODY', 'empty batch')
    expectError(await post({ requests: [{ method: 'GET', path: '/v1/batch', headers: {}, body: null }] }).then((r) => {
      const inner = (unpack(r.body) as { replies: { status: number; body: Uint8Array; headers: Record<string, string> }[] }).replies[0]
      return { status: inner.status, headers: inner.headers, body: Buffer.from(inner.body) }
    }), 400, 'ZH_BAD_BODY', 'a batch inside a batch')
    expectError(await post({ requests: [] }, 'application/json'), 415, 'ZH_UNSUPPORTED_MEDIA_TYPE', 'JSON batch')
  })

  it('GET /v1/explain/{key} shows each replica: siblings, digest, tombstone', async () => {
    await call('PUT', kv('seen', '?w=3'), { body: 'v1' })
    const a = await call('GET', `${cluster.nodes[1].url}/v1/explain/seen`)
    expect(a.status).toBe(200)
    const body = JSON.parse(a.body.toString()) as { partition: number; preferenceList: { id: string; up: boolean }[]; replicas: { id: string; found: boolean; tombstone: boolean; siblings: string[]; digest: string }[] }
    expect(body.preferenceList.filter((m) => m.up).map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3'])
    expect(body.replicas).toHaveLength(3)
    for (const r of body.replicas) {
      expect(r.found).toBe(true)
      expect(r.tombstone).toBe(false)
      expect(r.siblings.map((s) => Buffer.from(s, 'base64').toString())).toEqual(['v1'])
    }
    expect(new Set(body.replicas.map((r) => r.digest)).size).toBe(1)
  })

  it('a node taking a request for a key it replicates coordinates it itself and reads its own copy, with no HTTP request to itself', async () => {
    // N=3 on 3 nodes: n1 replicates every key. Count n1's own replica requests, by way in.
    const n1 = cluster.node('n1')
    // Over the network (HTTP or the nodes' framed protocol, which they speak to each other), or in-process.
    const count = async (route: string, via: 'net' | 'local') => {
      const text = await n1.metrics()
      const of = (v: string) => sample(text, 'zerohop_requests_total', `route="${route}",via="${v}"`) ?? 0
      return via === 'local' ? of('local') : of('http') + of('frames')
    }
    const othersNet = async () =>
      (await sumMetric([cluster.node('n2'), cluster.node('n3')], 'zerohop_requests_total', 'route="/v1/replica/read",via="http"')) +
      (await sumMetric([cluster.node('n2'), cluster.node('n3')], 'zerohop_requests_total', 'route="/v1/replica/read",via="frames"'))
    const before = { readNet: await count('/v1/replica/read', 'net'), readLocal: await count('/v1/replica/read', 'local'), coordNet: await count('/v1/replica/coordinate', 'net'), coordLocal: await count('/v1/replica/coordinate', 'local') }
    const others = await othersNet()
    const OPS = 20
    for (let i = 0; i < OPS; i++) {
      const put = await call('PUT', kv(`local-${i}`, '?w=3'), { body: `v${i}` })
      expect(put.status).toBe(204)
      expect((await call('GET', kv(`local-${i}`, '?r=3'))).body.toString()).toBe(`v${i}`)
    }
    const after = { readNet: await count('/v1/replica/read', 'net'), readLocal: await count('/v1/replica/read', 'local'), coordNet: await count('/v1/replica/coordinate', 'net'), coordLocal: await count('/v1/replica/coordinate', 'local') }
    const othersAfter = await othersNet()
    console.log(`local path on n1 over ${OPS} gets at R=3: reads local +${after.readLocal - before.readLocal}, network +${after.readNet - before.readNet}; coordinations local +${after.coordLocal - before.coordLocal}, network +${after.coordNet - before.coordNet}; n2+n3 reads over the network +${othersAfter - others}`)
    expect(after.readLocal - before.readLocal).toBeGreaterThanOrEqual(OPS)
    expect(after.readNet - before.readNet).toBe(0)
    expect(after.coordNet - before.coordNet).toBe(0)
    // n1 coordinates every write it takes itself (it replicates every key): no coordination hop.
    expect(after.coordLocal - before.coordLocal).toBe(OPS)
    expect(othersAfter - others).toBeGreaterThanOrEqual(OPS)
  })
})

describe('the SDK with routing: load-balancer (straight to nodes)', () => {
  let lb: Client
  let zh: Client

  beforeAll(async () => {
    lb = await connect({ seeds: [cluster.node('n2').url, cluster.node('n3').url], routing: 'load-balancer' })
    zh = await connect({ seeds: cluster.seeds })
  })

  afterAll(async () => {
    await lb?.close()
    await zh?.close()
  })

  it('gives the results of zero-hop routing, and contexts work across the two', async () => {
    const a = await lb.put('both', 'from-lb')
    expect(a.conflict).toBe(false)
    expect(a.siblings.map((s) => Buffer.from(s).toString())).toEqual(['from-lb'])
    // A concurrent write through zero-hop routing: a sibling in both views.
    const b = await zh.put('both', 'from-zh')
    expect(b.conflict).toBe(true)
    const viaLb = await lb.get('both')
    const viaZh = await zh.get('both')
    expect(viaLb.siblings.map((s) => Buffer.from(s).toString()).sort()).toEqual(['from-lb', 'from-zh'])
    expect(viaZh.siblings.map((s) => Buffer.from(s).toString()).sort()).toEqual(['from-lb', 'from-zh'])
    expect(viaLb.value).toBeUndefined()
    // The context of a load-balanced read resolves through zero-hop routing, and the other way round.
    await zh.put('both', 'resolved', { context: viaLb.context })
    const one = await lb.get('both', { r: 3 })
    expect(one.siblings.map((s) => Buffer.from(s).toString())).toEqual(['resolved'])
    await lb.put('both', 'again', { context: (await zh.get('both')).context })
    expect(Buffer.from((await zh.get('both', { r: 3 })).value as Uint8Array).toString()).toBe('again')
  })

  it('a merge collection merges siblings read through a node and writes the merge back', async () => {
    const carts = lb.collection<string[]>({ merge: (s) => [...new Set(s.flat())].sort() })
    await carts.put('cart', ['a'])
    await carts.put('cart', ['b'])
    const merged = await carts.get('cart')
    expect(merged).toMatchObject({ merged: true, value: ['a', 'b'] })
    const later = await zh.collection<string[]>().get('cart', { r: 3 })
    expect(later.siblings).toEqual([['a', 'b']])
  })

  it('concurrent reads to a node travel together in POST /v1/batch, each with its own answer; writes travel alone', async () => {
    const n2 = cluster.node('n2')
    const batches = async () => sample(await n2.metrics(), 'zerohop_requests_total', 'route="/v1/batch",via="http"') ?? 0
    const one = await connect({ seeds: [n2.url], routing: 'load-balancer' })
    try {
      const CALLS = 64
      let before = await batches()
      await Promise.all(Array.from({ length: CALLS }, (_, i) => one.put(`together-${i}`, `v${i}`)))
      const writes = (await batches()) - before
      before = await batches()
      const read = await Promise.all(Array.from({ length: CALLS }, (_, i) => one.get(`together-${i}`)))
      const reads = (await batches()) - before
      expect(read.map((r) => Buffer.from(r.value as Uint8Array).toString())).toEqual(Array.from({ length: CALLS }, (_, i) => `v${i}`))
      console.log(`${CALLS} concurrent puts took ${writes} HTTP requests to n2, ${CALLS} concurrent gets ${reads}`)
      expect(writes).toBe(CALLS)
      // Issued in one burst, the 64 reads leave together at its end: one request.
      expect(reads).toBe(1)
    } finally {
      await one.close()
    }
  })

  it('a read batched with a slow read of other parameters is not held back by it', async () => {
    // n3 paused: an R=3 read can only end at its deadline; an R=1 read issued beside it must not wait.
    const one = await connect({ seeds: [cluster.node('n1').url], routing: 'load-balancer' })
    await one.put('fast', 'v', { w: 3 })
    const n3 = cluster.node('n3')
    n3.pause()
    try {
      const warm = one.get('fast', { r: 1 })
      const slow = one.get('fast', { r: 3, timeoutMs: 1500 }).catch((x) => x)
      const started = Date.now()
      const fast = await one.get('fast', { r: 1, timeoutMs: 800 })
      expect(Date.now() - started).toBeLessThan(600)
      expect(Buffer.from(fast.value as Uint8Array).toString()).toBe('v')
      await warm
      expect(await slow).toBeInstanceOf(QuorumError)
    } finally {
      n3.resume()
      await one.close()
    }
  })

  it('delete without a context reads first; explain shows the tombstone on every replica', async () => {
    await lb.put('del', 'v', { w: 3 })
    const d = await lb.delete('del', { w: 3 })
    expect(d.conflict).toBe(false)
    expect((await lb.get('del')).found).toBe(false)
    const info = await lb.explain('del')
    expect(info.replicas.map((r) => [r.found, r.tombstone])).toEqual([[false, true], [false, true], [false, true]])
    expect(info.preferenceList).toHaveLength(3)
  })

  it('validates r and w against N before sending, aborts on its signal, and skips a seed that refuses connections', async () => {
    await expect(lb.get('x', { r: 4 })).rejects.toBeInstanceOf(InvalidArgumentError)
    await expect(lb.put('x', 'v', { w: 0 })).rejects.toMatchObject({ code: 'ZH_INVALID_ARGUMENT' })
    const ac = new AbortController()
    ac.abort()
    await expect(lb.get('x', { signal: ac.signal })).rejects.toBeInstanceOf(AbortError)
    const [dead] = await (await import('../harness/cluster.js')).freePorts(1)
    const spread = await connect({ seeds: [`http://127.0.0.1:${dead}`, cluster.node('n1').url], routing: 'load-balancer', connectTimeoutMs: 5000 })
    try {
      for (let i = 0; i < 10; i++) await spread.put(`spread-${i}`, 'v')
      for (let i = 0; i < 10; i++) expect((await spread.get(`spread-${i}`)).found).toBe(true)
    } finally {
      await spread.close()
    }
  })
})

describe('deadlines', () => {
  it('a node ends a request it coordinates at ?timeout= with each replica\'s cause (a replica paused by SIGSTOP)', async () => {
    const n2 = cluster.node('n2')
    n2.pause()
    try {
      const started = Date.now()
      const e = expectError(await call('PUT', kv('deadline', '?w=3&timeout=500'), { body: 'x' }), 503, 'ZH_QUORUM_NOT_MET')
      const took = Date.now() - started
      expect(took).toBeGreaterThanOrEqual(450)
      expect(took).toBeLessThan(1500)
      expect(e.replicas).toEqual(expect.arrayContaining([expect.objectContaining({ id: 'n2', cause: 'timeout' })]))
    } finally {
      n2.resume()
    }
  })

  it('the SDK in load-balancer routing gives up at its own deadline when the node does not answer', async () => {
    const n3 = cluster.node('n3')
    const db = await connect({ seeds: [n3.url], routing: 'load-balancer' })
    n3.pause()
    try {
      const started = Date.now()
      const err = await db.get('deadline', { timeoutMs: 400 }).catch((x) => x)
      const took = Date.now() - started
      expect(err).toBeInstanceOf(QuorumError)
      expect((err as QuorumError).replicas[0]).toMatchObject({ url: n3.url, cause: 'timeout' })
      expect(took).toBeGreaterThanOrEqual(350)
      expect(took).toBeLessThan(1000)
    } finally {
      n3.resume()
      await db.close()
    }
  })
})

describe('with two of three nodes down', () => {
  it('a write the coordinating node cannot get W for is a 503 ZH_QUORUM_NOT_MET naming each replica, and the SDK a QuorumError', async () => {
    const db = await connect({ seeds: [cluster.node('n1').url], routing: 'load-balancer', timeoutMs: 1500 })
    try {
      await cluster.node('n2').kill()
      await cluster.node('n3').kill()
      const e = expectError(await call('PUT', kv('quorum', '?w=2&strict=true&timeout=1000'), { body: 'x' }), 503, 'ZH_QUORUM_NOT_MET')
      expect(e.replicas!.map((r) => r.id).sort()).toEqual(['n2', 'n3'])
      const err = await db.put('quorum', 'x', { w: 2, strict: true }).catch((x) => x)
      expect(err).toBeInstanceOf(QuorumError)
      expect((err as QuorumError).replicas.map((r) => r.id).sort()).toEqual(['n2', 'n3'])
      // W=1 still works: the coordinating node is a replica (hints for the others stay with it).
      await waitFor(async () => (await call('PUT', kv('quorum', '?w=1'), { body: 'one' })).status === 204, { what: 'a W=1 write on the last node' })
      expect((await db.get('quorum', { r: 1 })).found).toBe(true)
    } finally {
      await db.close()
    }
  })
})
