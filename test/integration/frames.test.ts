// The SDK over the nodes' framed protocol (what connect() speaks by default with zero-hop routing) on real node processes of a
// secured cluster: the same answers as over HTTP (values, siblings, deletes, refused credentials), the
// node counting the requests, and the quorum still met with a replica SIGKILLed.
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, UnauthenticatedError, type Client } from '@zerohop/client'
import { Cluster, NO_BACKGROUND_REPAIR, sumMetric } from '../harness/cluster.js'

const text = (b: Uint8Array | string | undefined) => (b === undefined ? undefined : Buffer.from(b as Uint8Array).toString())

let cluster: Cluster
let db: Client

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, secure: 'users', args: NO_BACKGROUND_REPAIR })
  db = await connect({ seeds: cluster.seeds, token: cluster.tokens!.writer, protocol: 'frames', timeoutMs: 2000 })
})

afterAll(async () => {
  await db?.close()
  await cluster?.close()
})

describe("connect({ protocol: 'frames' })", () => {
  it('puts, gets, siblings and deletes as over HTTP', async () => {
    const served = (route: string, via: string) => sumMetric(cluster.nodes, 'zerohop_requests_total', `route="/v1/replica/${route}",via="${via}"`)
    const before = { reads: await served('read', 'frames'), stores: await served('store', 'frames'), http: (await served('read', 'http')) + (await served('store', 'http')) + (await served('coordinate', 'http')) }
    await db.put('f:a', 'one')
    const read = await db.get('f:a')
    expect(text(read.value)).toBe('one')
    await db.put('f:a', 'two', { context: read.context })
    expect(text((await db.get('f:a')).value)).toBe('two')
    // Two blind writes are concurrent: both come back as siblings.
    await db.put('f:s', 'x')
    await db.put('f:s', 'y')
    expect((await db.get('f:s')).siblings.map(text).sort()).toEqual(['x', 'y'])
    const gone = await db.get('f:a')
    await db.delete('f:a', { context: gone.context })
    expect((await db.get('f:a')).found).toBe(false)
    // Many at once share the connections.
    await Promise.all(Array.from({ length: 200 }, (_, i) => db.put(`f:many:${i}`, `v${i}`)))
    const back = await Promise.all(Array.from({ length: 200 }, (_, i) => db.get(`f:many:${i}`)))
    expect(back.map((r) => text(r.value))).toEqual(Array.from({ length: 200 }, (_, i) => `v${i}`))
    // The nodes count these requests as framed (zerohop_requests_total{via="frames"}), none as HTTP.
    expect(await served('read', 'frames')).toBeGreaterThan(before.reads)
    expect(await served('store', 'frames')).toBeGreaterThan(before.stores)
    expect((await served('read', 'http')) + (await served('store', 'http')) + (await served('coordinate', 'http'))).toBe(before.http)
  })

  it('is what connect() speaks by default with zero-hop routing; load-balancer routing speaks HTTP', async () => {
    const served = (via: string) => sumMetric(cluster.nodes, 'zerohop_requests_total', `route="/v1/replica/read",via="${via}"`)
    const plain = await connect({ seeds: cluster.seeds, token: cluster.tokens!.writer })
    try {
      const before = { frames: await served('frames'), http: await served('http') }
      for (let i = 0; i < 10; i++) await plain.get(`f:default:${i}`)
      expect(await served('frames')).toBeGreaterThanOrEqual(before.frames + 10)
      expect(await served('http')).toBe(before.http)
    } finally {
      await plain.close()
    }
    const balanced = await connect({ seeds: [cluster.seeds[0]], routing: 'load-balancer', token: cluster.tokens!.writer })
    try {
      const kv = () => sumMetric(cluster.nodes, 'zerohop_requests_total', 'route="/v1/kv",via="http"')
      const before = await kv()
      for (let i = 0; i < 5; i++) await balanced.get(`f:default:${i}`)
      expect(await kv()).toBe(before + 5)
    } finally {
      await balanced.close()
    }
  })

  it('refuses a wrong token as over HTTP, and a reader may not write', async () => {
    await expect(connect({ seeds: cluster.seeds, token: 'zh_nobody_' + 'A'.repeat(43), protocol: 'frames', connectTimeoutMs: 3000 })).rejects.toBeInstanceOf(UnauthenticatedError)
    const reader = await connect({ seeds: cluster.seeds, token: cluster.tokens!.reader, protocol: 'frames' })
    try {
      await db.put('f:r', 'w')
      expect(text((await reader.get('f:r')).value)).toBe('w')
      await expect(reader.put('f:r', 'no')).rejects.toMatchObject({ code: 'ZH_FORBIDDEN' })
      expect(text((await db.get('f:r')).value)).toBe('w')
    } finally {
      await reader.close()
    }
  })

  it('with one of three nodes SIGKILLed, R=2 and W=2 still succeed', async () => {
    await db.put('f:k', 'v1', { w: 3 })
    await cluster.node('n1').kill()
    const read = await db.get('f:k')
    expect(text(read.value)).toBe('v1')
    await db.put('f:k', 'v2', { context: read.context })
    expect(text((await db.get('f:k')).value)).toBe('v2')
  })
})
