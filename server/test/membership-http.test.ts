// The membership endpoints of a real 4-node cluster (N=3): stale-ring and not-a-replica refusals,
// gossip and admin input checks with their stable codes, partition paging for handoff, and the
// `zerohop status` command.
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClusterView, EPOCH_HEADER, MSGPACK, Paths, encodeSet, pack, unpack, type RingResponse } from '@zerohop/core'
import { Cluster, zerohop, type NodeProcess } from '../../test/harness/cluster.js'

interface Reply {
  status: number
  body: Buffer
}

async function send(node: NodeProcess, path: string, o: { method?: 'GET' | 'POST'; body?: Buffer | string; type?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
  const headers: Record<string, string> = { ...o.headers }
  if (o.body !== undefined) headers['content-type'] = o.type ?? MSGPACK
  const res = await request(`${node.url}${path}`, { method: o.method ?? 'POST', body: o.body, headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
  return { status: res.statusCode, body: Buffer.from(await res.body.arrayBuffer()) }
}

function errorCode(r: Reply): string {
  return (JSON.parse(r.body.toString()) as { error: { code: string } }).error.code
}

describe('membership endpoints on a real 4-node cluster', () => {
  let cluster: Cluster
  let n1: NodeProcess
  let ring: RingResponse
  let view: ClusterView

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 4, partitions: 64 })
    n1 = cluster.node('n1')
    ring = JSON.parse((await send(n1, Paths.ring, { method: 'GET' })).body.toString()) as RingResponse
    view = new ClusterView(ring.members, { partitions: ring.partitions, n: ring.n })
  })

  afterAll(async () => {
    await cluster?.close()
  })

  const keyIn = (want: (p: number) => boolean): [number, Buffer] => {
    for (let i = 0; ; i++) {
      const k = Buffer.from(`key${i}`)
      const p = view.current.partitionOf(k)
      if (want(p)) return [p, k]
    }
  }

  it('refuses a replica request made with other rings (409 ZH_STALE_RING), serves one made with the same rings at any version', async () => {
    const [p, k] = keyIn((p) => view.replicates('n1', p))
    const older = new ClusterView(ring.members.slice(0, 3), { partitions: 64, n: 3 })
    const body = pack({ keys: [[p, k]] })
    const stale = await send(n1, Paths.read, { body, headers: { [EPOCH_HEADER]: older.epoch } })
    expect(stale.status).toBe(409)
    expect(errorCode(stale)).toBe('ZH_STALE_RING')
    expect((await send(n1, Paths.read, { body, headers: { [EPOCH_HEADER]: ring.epoch } })).status).toBe(200)
    const other = await send(n1, Paths.read, { body, headers: { [EPOCH_HEADER]: `999999-${'a'.repeat(12)}` } })
    expect(errorCode(other)).toBe('ZH_STALE_RING')
    const digest = ring.epoch.split('-')[1]
    expect((await send(n1, Paths.read, { body, headers: { [EPOCH_HEADER]: `1-${digest}` } })).status).toBe(200)
    expect((await send(n1, Paths.read, { body })).status).toBe(200)
  })

  it('refuses reads, coordination and stores for a partition it does not replicate (409 ZH_NOT_REPLICA)', async () => {
    const [p, k] = keyIn((p) => !view.replicates('n1', p))
    const set = encodeSet([['x~1', 1, [Buffer.from('v')]]])
    for (const [path, body] of [
      [Paths.read, pack({ keys: [[p, k]] })],
      [Paths.coordinate, pack({ partition: p, key: k, context: [], value: Buffer.from('v') })],
      [Paths.store, pack({ items: [[p, k, set]] })],
    ] as const) {
      const r = await send(n1, path, { body: Buffer.from(body) })
      expect(r.status, path).toBe(409)
      expect(errorCode(r), path).toBe('ZH_NOT_REPLICA')
    }
    // Anti-entropy: a roots request naming any such partition is refused whole, so the asker never
    // compares a partition the two do not share; the partitions n1 replicates are answered.
    const mine = Array.from({ length: 64 }, (_, q) => q).filter((q) => view.replicates('n1', q))
    const roots = await send(n1, '/v1/ae/roots', { body: Buffer.from(pack({ partitions: [...mine, p] })) })
    expect(roots.status).toBe(409)
    expect(errorCode(roots)).toBe('ZH_NOT_REPLICA')
    const ok = await send(n1, '/v1/ae/roots', { body: Buffer.from(pack({ partitions: mine })) })
    expect(ok.status).toBe(200)
    expect((unpack(ok.body) as { roots: Uint8Array[] }).roots).toHaveLength(mine.length)
  })

  it('pages through a partition in key order for handoff', async () => {
    const [p] = keyIn((p) => view.replicates('n1', p))
    const keys: Buffer[] = []
    for (let i = 0; keys.length < 5; i++) {
      const k = Buffer.from(`page${i}`)
      if (view.current.partitionOf(k) === p) keys.push(k)
    }
    const set = encodeSet([['x~1', 1, [Buffer.from('v')]]])
    expect((await send(n1, Paths.store, { body: Buffer.from(pack({ items: keys.map((k) => [p, k, set]) })) })).status).toBe(200)
    const seen: string[] = []
    let after: Uint8Array | undefined
    for (let pages = 0; pages < 10; pages++) {
      const r = await send(n1, Paths.range, { body: Buffer.from(pack({ partition: p, limit: 2, ...(after ? { after } : {}) })) })
      expect(r.status).toBe(200)
      const page = unpack(r.body) as { items: [Uint8Array, Uint8Array][]; more: boolean }
      expect(page.items.length).toBeLessThanOrEqual(2)
      for (const [k] of page.items) seen.push(Buffer.from(k).toString())
      if (!page.more) break
      after = page.items[page.items.length - 1][0]
    }
    expect(seen).toEqual(keys.map(String).sort())
    const bad = await send(n1, Paths.range, { body: Buffer.from(pack({ partition: 64, limit: 2 })) })
    expect(bad.status).toBe(400)
    expect(errorCode(bad)).toBe('ZH_UNKNOWN_PARTITION')
    const noLimit = await send(n1, Paths.range, { body: Buffer.from(pack({ partition: 0 })) })
    expect(errorCode(noLimit)).toBe('ZH_BAD_BODY')
  })

  it('checks gossip input: malformed entries are 400 ZH_BAD_BODY, another cluster shape is 409 ZH_CLUSTER_MISMATCH', async () => {
    const bad = await send(n1, Paths.gossip, { body: Buffer.from(pack({ partitions: 64, n: 3, members: [{ id: 'x' }] })) })
    expect(bad.status).toBe(400)
    expect(errorCode(bad)).toBe('ZH_BAD_BODY')
    const other = await send(n1, Paths.gossip, { body: Buffer.from(pack({ partitions: 128, n: 3, members: [] })) })
    expect(other.status).toBe(409)
    expect(errorCode(other)).toBe('ZH_CLUSTER_MISMATCH')
    const ok = await send(n1, Paths.gossip, { body: Buffer.from(pack({ partitions: 64, n: 3, members: [] })) })
    expect(ok.status).toBe(200)
    expect((unpack(ok.body) as { members: unknown[] }).members).toHaveLength(4)
  })

  it('rebuilds gossiped entries field by field: an extra 64-bit field is dropped, a bad field refuses the whole message; /v1/ring stays 200', async () => {
    const current = (await n1.ring()).members
    const n2 = current.find((m) => m.id === 'n2')!
    // A newer n2 entry (so it wins the merge) carrying a field no version knows, a BigInt once decoded.
    const extra = await send(n1, Paths.gossip, { body: Buffer.from(pack({ partitions: 64, n: 3, members: [{ ...n2, heartbeat: n2.heartbeat + 1000, extra: 2n ** 63n - 1n }] })) })
    expect(extra.status).toBe(200)
    expect((unpack(extra.body) as { members: Record<string, unknown>[] }).members.every((m) => !('extra' in m))).toBe(true)
    // Invented members, one with a weight out of range: refused whole, neither is merged.
    const invented = (id: string, weight: number) => ({ ...n2, id, url: 'http://127.0.0.1:1', weight, version: 1, heartbeat: 1 })
    for (const members of [[invented('x1', 1), invented('x2', 100_000)], [invented('x3', 1), { ...invented('x4', 1), version: 2n ** 63n - 1n }]]) {
      const r = await send(n1, Paths.gossip, { body: Buffer.from(pack({ partitions: 64, n: 3, members })) })
      expect(r.status).toBe(400)
      expect(errorCode(r)).toBe('ZH_BAD_BODY')
    }
    // Every node (n1 gossips on what it merged) answers its ring and health, without the extra field or the invented members.
    for (const node of cluster.nodes) {
      const ring = await send(node, Paths.ring, { method: 'GET' })
      expect(ring.status, node.id).toBe(200)
      const members = (JSON.parse(ring.body.toString()) as RingResponse).members
      expect(members.map((m) => m.id).sort()).toEqual(['n1', 'n2', 'n3', 'n4'])
      expect(members.every((m) => !('extra' in m))).toBe(true)
      expect((await send(node, Paths.health, { method: 'GET' })).status).toBe(200)
    }
  })

  it('checks operator requests: bad JSON, unknown node, a live node, the node itself, the wrong method', async () => {
    const json = 'application/json'
    const cases: [string, string | undefined, number, string][] = [
      [Paths.remove, 'not json', 400, 'ZH_BAD_BODY'],
      [Paths.remove, '{"id":3}', 400, 'ZH_BAD_BODY'],
      [Paths.remove, '{"id":"nope"}', 404, 'ZH_NOT_FOUND'],
      [Paths.remove, '{"id":"n2"}', 409, 'ZH_CONFLICT'],
      [Paths.remove, '{"id":"n1"}', 409, 'ZH_CONFLICT'],
    ]
    for (const [path, body, status, code] of cases) {
      const r = await send(n1, path, { body, type: json })
      expect(r.status, `${path} ${body}`).toBe(status)
      expect(errorCode(r), `${path} ${body}`).toBe(code)
    }
    const get = await send(n1, Paths.leave, { method: 'GET' })
    expect(get.status).toBe(405)
    expect(errorCode(get)).toBe('ZH_METHOD_NOT_ALLOWED')
  })

  it('zerohop status lists every member with its status and liveness; a bad --node exits 2', async () => {
    const out = await zerohop('status', '--node', n1.url)
    expect(out.code, out.stderr).toBe(0)
    for (const id of ['n1', 'n2', 'n3', 'n4']) expect(out.stdout).toMatch(new RegExp(`^${id}\\s+http://127\\.0\\.0\\.1:\\d+\\s+default\\s+1\\s+normal\\s+up`, 'm'))
    const bad = await zerohop('status', '--node', 'ftp://127.0.0.1:1')
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--node')
  })
})
