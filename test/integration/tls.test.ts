// A real 3-node cluster over TLS with mutual TLS between nodes (--tls-cert, --tls-key, --tls-ca),
// certificates made at test time with openssl: the SDK connects with tls.ca and reads its writes; a
// node coordinates writes to the other replicas over mTLS; plain HTTP is answered 426; an SDK or CLI
// without the CA is refused with a message that says so; node-to-node endpoints need a certificate of
// the CA; a TLS node refuses http:// seeds.
import { execFile } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { Agent, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, FramesTransport, NoSeedReachableError, type Client } from '@zerohop/client'
import { ErrorCodes, MSGPACK, Paths, pack } from '@zerohop/core'
import { CLI, Cluster, freePorts, sumMetric, zerohop } from '../harness/cluster.js'
import { makeCerts, type Certs } from '../harness/certs.js'

const text = (b: Uint8Array | string | undefined) => (b === undefined ? undefined : Buffer.from(b as Uint8Array).toString())

let dir: string
let certs: Certs
let cluster: Cluster
let db: Client
let ca: Buffer

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-tls-'))
  certs = await makeCerts(dir, ['n1', 'n2', 'n3'])
  ca = await readFile(certs.ca)
  cluster = await Cluster.start({ nodes: 3, tls: certs })
  // Each first request to a node opens a TLS connection: room for that on a busy machine.
  db = await connect({ seeds: cluster.seeds, tls: { ca }, timeoutMs: 10_000 })
})

afterAll(async () => {
  await db?.close()
  await cluster?.close()
  if (dir) await rm(dir, { recursive: true, force: true })
})

describe('a cluster over TLS', () => {
  it('advertises https:// URLs, and every node sees the others up (gossip over mutual TLS)', async () => {
    expect(cluster.seeds.every((s) => s.startsWith('https://127.0.0.1:'))).toBe(true)
    for (const n of cluster.nodes) {
      const ring = await n.ring()
      expect(ring.members.map((m) => m.url).sort()).toEqual([...cluster.seeds].sort())
      expect(ring.down).toEqual([])
    }
  })

  it('the SDK with tls.ca writes and reads', async () => {
    await db.put('tls-key', 'over https')
    const res = await db.get('tls-key', { r: 3 })
    expect(text(res.value)).toBe('over https')
  })

  it('a node coordinates a write to all 3 replicas over mutual TLS', async () => {
    // Load-balancer routing: n1 alone gets the call and replicates it through its own transport.
    const lb = await connect({ seeds: [cluster.nodes[0].url], routing: 'load-balancer', tls: { ca }, timeoutMs: 10_000 })
    try {
      await lb.put('via-n1', 'replicated', { w: 3 })
    } finally {
      await lb.close()
    }
    const seen = await db.explain('via-n1')
    expect(seen.replicas).toHaveLength(3)
    for (const r of seen.replicas) {
      expect(r.error, `${r.id}`).toBeUndefined()
      expect(r.siblings.map(text), `${r.id}`).toEqual(['replicated'])
    }
  })

  it('takes node-to-node requests only with a certificate of the CA (mutual TLS): without one, 401 and membership unchanged', async () => {
    const url = `${cluster.nodes[0].url}/v1/gossip`
    const before = await cluster.nodes[0].ring()
    const gossip = pack({ partitions: before.partitions, n: before.n, members: before.members.map((m) => (m.id === 'n2' ? { ...m, version: m.version + 100, removed: true } : m)) })
    const headers = { 'content-type': MSGPACK }
    const plainClient = new Agent({ connect: { ca } })
    const certified = new Agent({ connect: { ca, cert: await readFile(certs.nodes.n3.cert), key: await readFile(certs.nodes.n3.key) } })
    try {
      const refused = await request(url, { method: 'POST', body: gossip, headers, dispatcher: plainClient })
      expect(refused.statusCode).toBe(401)
      expect(((await refused.body.json()) as { error: { code: string } }).error.code).toBe(ErrorCodes.UNAUTHENTICATED)
      // Several, in parallel: the client opens more connections, which resume its first TLS session
      // (Node says such a session is authorized even without a certificate).
      const ranges = await Promise.all(Array.from({ length: 6 }, async () => {
        const r = await request(`${cluster.nodes[0].url}/v1/replica/range`, { method: 'POST', body: pack({ partition: 0, limit: 10 }), headers, dispatcher: plainClient })
        await r.body.dump()
        return r.statusCode
      }))
      expect(ranges).toEqual([401, 401, 401, 401, 401, 401])
      expect((await cluster.nodes[0].ring()).members.find((m) => m.id === 'n2')!.removed).toBe(false)
      // The same request with a node's certificate is a node's (an empty exchange changes nothing).
      const ok = await request(url, { method: 'POST', body: pack({ partitions: before.partitions, n: before.n, members: [] }), headers, dispatcher: certified })
      expect(ok.statusCode).toBe(200)
      await ok.body.dump()
    } finally {
      await plainClient.close()
      await certified.close()
    }
  })

  it('the SDK speaks the framed protocol over TLS (its default with zero-hop routing), and so do the nodes to each other', async () => {
    const served = (route: string, via: string) => sumMetric(cluster.nodes, 'zerohop_requests_total', `route="${route}",via="${via}"`)
    const before = { frames: await served(Paths.read, 'frames'), http: await served(Paths.read, 'http') }
    for (let i = 0; i < 10; i++) {
      await db.put(`tls-frames:${i}`, `v${i}`)
      expect(text((await db.get(`tls-frames:${i}`, { r: 3 })).value)).toBe(`v${i}`)
    }
    expect(await served(Paths.read, 'frames')).toBeGreaterThanOrEqual(before.frames + 30)
    expect(await served(Paths.read, 'http')).toBe(before.http)
    // Gossip among the nodes: framed, over mutual TLS.
    expect(await served(Paths.gossip, 'frames')).toBeGreaterThan(0)
  })

  it('over framed TLS too, node-to-node requests take a certificate of the CA: without one 401, with a node\'s 200', async () => {
    const url = cluster.nodes[0].url
    const before = await cluster.nodes[0].ring()
    const forged = pack({ partitions: before.partitions, n: before.n, members: before.members.map((m) => (m.id === 'n2' ? { ...m, version: m.version + 100, removed: true } : m)) })
    const framedGossip = () => sumMetric([cluster.nodes[0]], 'zerohop_requests_total', `route="${Paths.gossip}",via="frames"`)
    const plain = new FramesTransport({ tls: { ca } })
    const certified = new FramesTransport({ tls: { ca, cert: await readFile(certs.nodes.n3.cert), key: await readFile(certs.nodes.n3.key) } })
    try {
      const counted = await framedGossip()
      const refused = await plain.post(url, Paths.gossip, forged, { timeoutMs: 5000 })
      expect(refused.status).toBe(401)
      expect(JSON.parse(refused.body.toString()).error.code).toBe(ErrorCodes.UNAUTHENTICATED)
      expect((await cluster.nodes[0].ring()).members.find((m) => m.id === 'n2')!.removed).toBe(false)
      const ok = await certified.post(url, Paths.gossip, pack({ partitions: before.partitions, n: before.n, members: [] }), { timeoutMs: 5000 })
      expect(ok.status).toBe(200)
      // Both went over frames (not the HTTP fallback): the node counted them so.
      expect(await framedGossip()).toBeGreaterThanOrEqual(counted + 2)
    } finally {
      await plain.close()
      await certified.close()
    }
  })

  it('answers plain HTTP with 426 ZH_TLS_REQUIRED', async () => {
    const plain = cluster.nodes[1].url.replace('https://', 'http://')
    const res = await request(`${plain}/v1/kv/tls-key`, { method: 'PUT', body: 'secret', headers: { authorization: 'Bearer x' }, headersTimeout: 5000, bodyTimeout: 5000 })
    expect(res.statusCode).toBe(426)
    expect(await res.body.json()).toEqual({ error: { code: ErrorCodes.TLS_REQUIRED, message: expect.stringContaining('use https://') } })
    expect(text((await db.get('tls-key')).value)).toBe('over https')
  })

  it('an SDK without the CA fails to connect, naming the certificate', async () => {
    const err = await connect({ seeds: cluster.seeds, connectTimeoutMs: 500 }).then(() => undefined, (e: unknown) => e)
    expect(err).toBeInstanceOf(NoSeedReachableError)
    expect((err as Error).message).toMatch(/TLS certificate was not accepted.*tls: \{ ca \}/)
  })

  it('the SDK validates tls.ca', async () => {
    await expect(connect({ seeds: cluster.seeds, tls: { ca: 7 as never } })).rejects.toThrow(/tls\.ca must be a PEM string or a Buffer/)
    await expect(connect({ seeds: cluster.seeds, tls: { cert: 'x' } as never })).rejects.toThrow(/tls takes \{ ca \}/)
  })

  it('the CLI reaches a TLS node with --ca, and without it says to give one', async () => {
    const ok = await zerohop('status', '--node', cluster.seeds[0], '--ca', certs.ca)
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/n1 +https:\/\/127\.0\.0\.1:\d+ +default +1 +normal +up/)
    const refused = await zerohop('status', '--node', cluster.seeds[0])
    expect(refused.code).not.toBe(0)
    expect(refused.stderr).toMatch(/give the CA .* with --ca PATH \[ZH_NO_SEED_REACHABLE\]/)
  })

  it('a TLS node refuses http:// seeds at start', async () => {
    const [port] = await freePorts(1)
    const out = await new Promise<{ code: number; stderr: string }>((resolve) => {
      execFile(process.execPath, [CLI, 'start', '--id', 'n9', '--port', String(port), '--data', path.join(dir, 'n9'),
        '--tls-cert', certs.nodes.n1.cert, '--tls-key', certs.nodes.n1.key, '--seeds', `http://127.0.0.1:${port},${cluster.seeds[0].replace('https', 'http')}`],
      { timeout: 20_000 }, (err, _stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stderr }))
    })
    expect(out.code).not.toBe(0)
    expect(out.stderr).toMatch(/seed http:\/\/127\.0\.0\.1:\d+ uses http:\/\/, but this node serves HTTPS .*\[ZH_INVALID_ARGUMENT\]/)
  })
})
