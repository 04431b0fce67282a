// A secured cluster (cluster secret and users file) of 3 real node processes, attacked the ways an
// unsecured one was broken: client requests without, with wrong and with too weak tokens; node-to-node
// endpoints (gossip, handoff ranges, anti-entropy, admin) from clients; forged, altered and replayed
// request signatures; forged version sets and contexts relayed through the replica endpoints and the
// public API. Each refusal is checked to leave data and membership unchanged. The SDK in both routings
// works with a token, read repair included (it relays signed sets).
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readFile, stat } from 'node:fs/promises'
import path from 'node:path'
import { BadContextError, ForbiddenError, UnauthenticatedError, connect, type Client } from '@zerohop/client'
import { ClusterKeys, CONTEXT_HEADER, EPOCH_HEADER, MSGPACK, SIGNATURE_HEADER, encodeContext, encodeSet, pack, percentEncode, unpack, type HealthResponse } from '@zerohop/core'
import { spawn } from 'node:child_process'
import net from 'node:net'
import { CLI, Cluster, NO_BACKGROUND_REPAIR, freePorts, sumMetric, waitFor, zerohop } from '../harness/cluster.js'
import { addUser } from '../../server/src/users.js'

interface Answer {
  status: number
  body: Buffer
  headers: Record<string, string | string[] | undefined>
}

async function call(method: string, url: string, { body, headers = {} }: { body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(url, { method: method as 'GET', body, headers, headersTimeout: 10_000, bodyTimeout: 10_000 })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

function errorOf(a: Answer): { code: string; message: string } {
  return (JSON.parse(a.body.toString()) as { error: { code: string; message: string } }).error
}

function expectRefused(a: Answer, status: number, code: string, what: string): void {
  expect(a.status, `${what}: ${a.body.toString().slice(0, 300)}`).toBe(status)
  expect(errorOf(a).code, what).toBe(code)
}

let cluster: Cluster
let secret: Buffer
let keys: ClusterKeys
let admin: Client
const bearer = (token: string) => ({ authorization: `Bearer ${token}` })

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, secure: 'users', args: NO_BACKGROUND_REPAIR })
  secret = Buffer.from((await readFile(path.join(cluster.dir, 'cluster.secret'), 'utf8')).trim())
  keys = new ClusterKeys(secret)
  admin = await connect({ seeds: cluster.seeds, token: cluster.tokens!.writer })
}, 60_000)

afterAll(async () => {
  await admin?.close()
  await cluster?.close()
})

/** A replica request as a client (a token, no signature) sends it. */
function replica(node: number, p: string, body: object, token = cluster.tokens!.writer, headers: Record<string, string> = {}): Promise<Answer> {
  return call('POST', `${cluster.nodes[node].url}${p}`, { body: pack(body), headers: { 'content-type': MSGPACK, ...bearer(token), ...headers } })
}

/** A request signed with the cluster secret, as a node sends it. */
function signed(node: number, p: string, body: Uint8Array, k = keys, now = Date.now(), headers: Record<string, string> = {}): Promise<Answer> {
  return call('POST', `${cluster.nodes[node].url}${p}`, { body, headers: { 'content-type': MSGPACK, [SIGNATURE_HEADER]: k.signRequest(cluster.nodes[node].url, 'POST', p, body, now), ...headers } })
}

describe('client credentials', () => {
  it('refuses requests without a token or with a wrong one (401), keeps /v1/health open, and changes nothing', async () => {
    await admin.put('sec-a', new TextEncoder().encode('original'))
    const url = `${cluster.nodes[0].url}/v1/kv/sec-a`
    const wrong = `zh_writer_${'A'.repeat(43)}`
    for (const [what, headers] of [['no token', {}], ['wrong token', bearer(wrong)], ['not a bearer', { authorization: 'Basic d3JpdGVyOng=' }], ['unknown user', bearer(`zh_mallory_${'B'.repeat(43)}`)]] as const) {
      expectRefused(await call('PUT', url, { body: 'forged', headers }), 401, 'ZH_UNAUTHENTICATED', `PUT with ${what}`)
      expectRefused(await call('GET', url, { headers }), 401, 'ZH_UNAUTHENTICATED', `GET with ${what}`)
      expectRefused(await call('DELETE', url, { headers }), 401, 'ZH_UNAUTHENTICATED', `DELETE with ${what}`)
      expectRefused(await call('GET', `${cluster.nodes[0].url}/v1/ring`, { headers }), 401, 'ZH_UNAUTHENTICATED', `ring with ${what}`)
    }
    const health = await call('GET', `${cluster.nodes[0].url}/v1/health`)
    expect(health.status).toBe(200)
    expect((JSON.parse(health.body.toString()) as HealthResponse).status).toBe('ok')
    const read = await admin.get('sec-a', { r: 3 })
    expect(read.siblings.map((v) => Buffer.from(v).toString())).toEqual(['original'])
    expect(await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="no-token"')).toBeGreaterThan(0)
    expect(await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="bad-token"')).toBeGreaterThan(0)
  })

  it('gives each role what it needs and no more (403 ZH_FORBIDDEN), in single and batched requests', async () => {
    const { reader, writer } = cluster.tokens!
    const url = `${cluster.nodes[1].url}/v1/kv/sec-b`
    expect((await call('PUT', url, { body: 'by writer', headers: bearer(writer) })).status).toBe(204)
    expectRefused(await call('PUT', url, { body: 'by reader', headers: bearer(reader) }), 403, 'ZH_FORBIDDEN', 'reader PUT')
    expectRefused(await call('DELETE', url, { headers: bearer(reader) }), 403, 'ZH_FORBIDDEN', 'reader DELETE')
    const got = await call('GET', url, { headers: bearer(reader) })
    expect(got.status).toBe(200)
    expect(got.body.toString()).toBe('by writer')
    // A batch's requests are each checked: the read passes, the write is refused, alone.
    const batch = await call('POST', `${cluster.nodes[1].url}/v1/batch`, {
      body: pack({ requests: [{ method: 'GET', path: '/v1/kv/sec-b', headers: {}, body: null }, { method: 'PUT', path: '/v1/kv/sec-b', headers: {}, body: Buffer.from('batched by reader') }] }),
      headers: { 'content-type': MSGPACK, ...bearer(reader) },
    })
    expect(batch.status).toBe(200)
    const replies = (unpack(batch.body) as { replies: { status: number; body: Uint8Array }[] }).replies
    expect(replies.map((r) => r.status)).toEqual([200, 403])
    // Membership changes need admin: a writer can neither make a node leave nor remove one.
    expectRefused(await call('POST', `${cluster.nodes[2].url}/v1/admin/leave`, { body: '{}', headers: { ...bearer(writer), 'content-type': 'application/json' } }), 403, 'ZH_FORBIDDEN', 'writer leave')
    expectRefused(await call('POST', `${cluster.nodes[2].url}/v1/admin/remove`, { body: '{"id":"n1"}', headers: { ...bearer(writer), 'content-type': 'application/json' } }), 403, 'ZH_FORBIDDEN', 'writer remove')
    expectRefused(await call('POST', `${cluster.nodes[2].url}/v1/admin/leave`, { body: '{}' }), 401, 'ZH_UNAUTHENTICATED', 'anonymous leave')
    // Writing includes reading (a write answers with its siblings; a delete without context reads first).
    const writeOnly = await addUser(path.join(cluster.dir, 'users.json'), 'write-only', ['write'])
    // Every node must have read the users file again: connect() asks them all.
    for (const n of cluster.nodes) await waitFor(async () => (await call('GET', `${n.url}/v1/ring`, { headers: bearer(writeOnly) })).status === 200, { timeoutMs: 10_000, what: `${n.id} to know the write-only user` })
    const w = await connect({ seeds: cluster.seeds, token: writeOnly })
    try {
      await w.put('sec-b-wo', new TextEncoder().encode('x'))
      await w.delete('sec-b-wo')
      expect((await w.get('sec-b-wo')).found).toBe(false)
    } finally {
      await w.close()
    }
    const ring = await cluster.nodes[2].ring()
    expect(ring.members.map((m) => [m.id, m.status, m.removed])).toEqual([['n1', 'normal', false], ['n2', 'normal', false], ['n3', 'normal', false]])
    expect(cluster.nodes.every((n) => n.running)).toBe(true)
    expect((await call('GET', url, { headers: bearer(reader) })).body.toString()).toBe('by writer')
  })

  it('the SDK takes a token; without one, or with a wrong one, connect() fails at once with UnauthenticatedError; a reader\'s write is a ForbiddenError', async () => {
    const started = Date.now()
    await expect(connect({ seeds: cluster.seeds, connectTimeoutMs: 10_000 })).rejects.toBeInstanceOf(UnauthenticatedError)
    await expect(connect({ seeds: cluster.seeds, token: `zh_writer_${'C'.repeat(43)}` })).rejects.toMatchObject({ code: 'ZH_UNAUTHENTICATED' })
    expect(Date.now() - started).toBeLessThan(5000)
    const reader = await connect({ seeds: cluster.seeds, token: cluster.tokens!.reader })
    try {
      await expect(reader.put('sec-c', new Uint8Array([1]))).rejects.toBeInstanceOf(ForbiddenError)
      expect((await reader.get('sec-c')).found).toBe(false)
    } finally {
      await reader.close()
    }
    const balanced = await connect({ seeds: cluster.seeds, token: cluster.tokens!.writer, routing: 'load-balancer' })
    try {
      const put = await balanced.put('sec-c', new TextEncoder().encode('through a node'))
      const read = await balanced.get('sec-c')
      expect(Buffer.from(read.value as Uint8Array).toString()).toBe('through a node')
      // A context from one routing works in the other.
      await admin.put('sec-c', new TextEncoder().encode('zero-hop follow-up'), { context: put.context })
      expect((await admin.get('sec-c', { r: 3 })).siblings).toHaveLength(1)
    } finally {
      await balanced.close()
    }
    await expect(connect({ seeds: cluster.seeds, token: cluster.tokens!.reader, routing: 'load-balancer' }).then((c) => c.put('sec-c', new Uint8Array([2])).finally(() => c.close()))).rejects.toBeInstanceOf(ForbiddenError)
  })

  it('picks up users added to and removed from the users file while running', async () => {
    const file = path.join(cluster.dir, 'users.json')
    const added = await zerohop('user', 'add', 'late', '--roles', 'read', '--users-file', file)
    expect(added.code, added.stderr).toBe(0)
    const token = added.stdout.trim().split('\n').at(-1)!
    expect(token).toMatch(/^zh_late_[A-Za-z0-9_-]{43}$/)
    // Only a hash is stored, and only its owner can read the file.
    expect(await readFile(file, 'utf8')).not.toContain(token.slice(-43))
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const url = `${cluster.nodes[0].url}/v1/kv/sec-a`
    await waitFor(async () => (await call('GET', url, { headers: bearer(token) })).status === 200, { timeoutMs: 10_000, what: 'the new user to be accepted' })
    const removed = await zerohop('user', 'remove', 'late', '--users-file', file)
    expect(removed.code, removed.stderr).toBe(0)
    await waitFor(async () => (await call('GET', url, { headers: bearer(token) })).status === 401, { timeoutMs: 10_000, what: 'the removed user to be refused' })
  })

  it('zerohop status takes --token or ZEROHOP_TOKEN; without one it exits 2 with ZH_UNAUTHENTICATED', async () => {
    const node = cluster.nodes[0].url
    const refused = await zerohop('status', '--node', node)
    expect(refused.code).toBe(2)
    expect(refused.stderr).toContain('ZH_UNAUTHENTICATED')
    const ok = await zerohop('status', '--node', node, '--token', cluster.tokens!.reader)
    expect(ok.code, ok.stderr).toBe(0)
    expect(ok.stdout).toMatch(/n1 .* normal/)
    process.env.ZEROHOP_TOKEN = cluster.tokens!.reader
    try {
      const env = await zerohop('status', '--node', node)
      expect(env.code, env.stderr).toBe(0)
      expect(env.stdout).toMatch(/n1 .* normal/)
      // Leaving takes the admin role: a reader's token is refused and the node stays.
      const leave = await zerohop('leave', '--node', node)
      expect(leave.code).toBe(2)
      expect(leave.stderr).toContain('ZH_FORBIDDEN')
    } finally {
      delete process.env.ZEROHOP_TOKEN
    }
    expect(cluster.nodes[0].running).toBe(true)
  })
})

describe('node-to-node endpoints', () => {
  it('refuse clients, even an admin: gossip, handoff ranges, anti-entropy and reaping (401), with membership unchanged', async () => {
    const before = await cluster.nodes[0].ring()
    const n2 = before.members.find((m) => m.id === 'n2')!
    const evil = { id: 'evil1', url: 'http://127.0.0.1:9', zone: 'default', weight: 100, status: 'normal', incarnation: 'x', version: 1, heartbeat: 1, since: 1, until: 0, removed: false, ready: '', dropped: '' }
    const gossip = { partitions: before.partitions, n: before.n, members: [{ ...n2, version: n2.version + 100, removed: true }, evil] }
    for (const token of [cluster.tokens!.admin, cluster.tokens!.writer]) {
      expectRefused(await replica(0, '/v1/gossip', gossip, token), 401, 'ZH_UNAUTHENTICATED', 'gossip from a client')
      expectRefused(await replica(0, '/v1/replica/range', { partition: 0, limit: 100 }, token), 401, 'ZH_UNAUTHENTICATED', 'range from a client')
      expectRefused(await replica(0, '/v1/ae/roots', { partitions: [0] }, token), 401, 'ZH_UNAUTHENTICATED', 'anti-entropy from a client')
      expectRefused(await replica(0, '/v1/replica/reap', { partition: 0, phase: 'check', items: [] }, token), 401, 'ZH_UNAUTHENTICATED', 'reap from a client')
    }
    const after = await cluster.nodes[0].ring()
    expect(after.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3'])
    expect(after.members.find((m) => m.id === 'n2')!.removed).toBe(false)
    expect(cluster.nodes[1].running).toBe(true)
  })

  it('take a request signed with the secret once, at the node it was signed for: a replay, another node, another secret, an old timestamp or an altered body is refused', async () => {
    const body = pack({ partitions: [0] })
    const at = Date.now()
    const header = keys.signRequest(cluster.nodes[0].url, 'POST', '/v1/ae/roots', body, at)
    const send = (h: string, b: Uint8Array = body) => call('POST', `${cluster.nodes[0].url}/v1/ae/roots`, { body: b, headers: { 'content-type': MSGPACK, [SIGNATURE_HEADER]: h } })
    expect((await send(header)).status).toBe(200)
    expectRefused(await send(header), 401, 'ZH_UNAUTHENTICATED', 'replayed')
    expectRefused(await send(keys.signRequest(cluster.nodes[0].url, 'POST', '/v1/ae/roots', body, at), pack({ partitions: [1] })), 401, 'ZH_UNAUTHENTICATED', 'altered body')
    // Signed for n1, sent to n2: a captured request does not replay on another node.
    const forN1 = keys.signRequest(cluster.nodes[0].url, 'POST', '/v1/ae/roots', body, Date.now())
    const elsewhere = await call('POST', `${cluster.nodes[1].url}/v1/ae/roots`, { body, headers: { 'content-type': MSGPACK, [SIGNATURE_HEADER]: forN1 } })
    expectRefused(elsewhere, 401, 'ZH_UNAUTHENTICATED', 'signed for another node')
    const other = new ClusterKeys(Buffer.from('another cluster secret, 32 bytes!'))
    expectRefused(await signed(0, '/v1/ae/roots', body, other), 401, 'ZH_UNAUTHENTICATED', 'another secret')
    expectRefused(await signed(0, '/v1/ae/roots', body, keys, Date.now() - 120_000), 401, 'ZH_UNAUTHENTICATED', 'two minutes old')
    expectRefused(await send('123.abc.def'), 401, 'ZH_UNAUTHENTICATED', 'malformed')
    expect(await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="replay"')).toBeGreaterThan(0)
  })
})

describe('versions and contexts', () => {
  /** Partition of a key, and the actor and epoch of node 0. */
  async function target(key: string): Promise<{ partition: number; actor: string; epoch: string }> {
    const { partition } = await admin.explain(key)
    const health = JSON.parse((await call('GET', `${cluster.nodes[0].url}/v1/health`)).body.toString()) as HealthResponse
    return { partition, actor: health.actor, epoch: health.epoch! }
  }

  async function values(key: string): Promise<string[][]> {
    const seen = await admin.explain(key)
    // By replica id: n1, n2, n3.
    return [...seen.replicas].sort((a, b) => (a.id < b.id ? -1 : 1)).map((r) => r.siblings.map((v) => Buffer.from(v).toString()))
  }

  it('a write token cannot store a forged version set: without a proof, with another key\'s proof, or altered (403); every replica keeps its value', async () => {
    await admin.put('sec-forge', new TextEncoder().encode('genuine'), { w: 3 })
    const { partition, actor, epoch } = await target('sec-forge')
    const key = Buffer.from('sec-forge')
    const forged = encodeSet([[actor, 1001, [Buffer.from('FORGED-VALUE')]]])
    const headers = { [EPOCH_HEADER]: epoch }
    expectRefused(await replica(0, '/v1/replica/store', { items: [[partition, key, forged]] }, undefined, headers), 403, 'ZH_FORBIDDEN', 'no proof')
    expectRefused(await replica(0, '/v1/replica/store', { items: [[partition, key, encodeSet([[actor, 5, [null]]])]] }, undefined, headers), 403, 'ZH_FORBIDDEN', 'a forged tombstone')
    // A real proof, from a read of another key, or of this key's real set, does not cover the forgery.
    // A read carries set proofs only when asked (read repair asks); its context MACs always.
    const plain = unpack((await replica(0, '/v1/replica/read', { keys: [[partition, key]] }, undefined, headers)).body) as { contexts: Uint8Array[]; proofs?: unknown }
    expect(plain.contexts[0].byteLength).toBe(16)
    expect(plain.proofs).toBeUndefined()
    const read = await replica(0, '/v1/replica/read', { keys: [[partition, key]], prove: true }, undefined, headers)
    expect(read.status).toBe(200)
    const answer = unpack(read.body) as { sets: Uint8Array[]; proofs: Uint8Array[] }
    expect(answer.proofs[0].byteLength).toBe(24)
    expectRefused(await replica(0, '/v1/replica/store', { items: [[partition, key, forged, null, answer.proofs[0]]] }, undefined, headers), 403, 'ZH_FORBIDDEN', 'another set\'s proof')
    // The genuine set with its proof is accepted (the SDK relays it so).
    expect((await replica(0, '/v1/replica/store', { items: [[partition, key, answer.sets[0], null, answer.proofs[0]]] }, undefined, headers)).status).toBe(200)
    // A hint of it: only with the write role, and only for a replica of the key.
    const { replicas } = await admin.explain('sec-forge')
    const other = replicas.find((r) => r.url !== cluster.nodes[0].url)!.id
    expectRefused(await replica(0, '/v1/replica/store', { items: [[partition, key, answer.sets[0], other, answer.proofs[0]]] }, cluster.tokens!.reader, headers), 403, 'ZH_FORBIDDEN', 'a reader\'s hint')
    expect((await replica(0, '/v1/replica/store', { items: [[partition, key, answer.sets[0], other, answer.proofs[0]]] }, undefined, headers)).status).toBe(200)
    expect(await values('sec-forge')).toEqual([['genuine'], ['genuine'], ['genuine']])
    expect(await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="bad-proof"')).toBeGreaterThanOrEqual(3)
  })

  it('a forged context is refused (ZH_BAD_CONTEXT) on the replica endpoint and the public API, and the key stays writable with its real context', async () => {
    const first = await admin.put('sec-ctx', new TextEncoder().encode('v1'), { w: 3 })
    const { partition, actor, epoch } = await target('sec-ctx')
    const key = Buffer.from('sec-ctx')
    // Within the counters a context may carry (past them the request is malformed), but never written.
    const huge = [[actor, 2 ** 47]]
    expectRefused(await replica(0, '/v1/replica/coordinate', { partition, key, context: huge, value: Buffer.from('x') }, undefined, { [EPOCH_HEADER]: epoch }), 400, 'ZH_BAD_CONTEXT', 'unsigned context')
    expectRefused(await replica(0, '/v1/replica/coordinate', { partition, key, context: [], value: null, parts: [[Buffer.alloc(12), Buffer.alloc(16)]] }, undefined, { [EPOCH_HEADER]: epoch }), 400, 'ZH_BAD_CONTEXT', 'forged part')
    // The same forgery through the public API: a context string with the vector but no signature.
    const forged = encodeContext({ vector: [[actor, 2 ** 47]], coordinator: 'n1' })
    const api = await call('PUT', `${cluster.nodes[2].url}/v1/kv/${percentEncode(key)}`, { body: 'x', headers: { ...bearer(cluster.tokens!.writer), [CONTEXT_HEADER]: forged } })
    expectRefused(api, 400, 'ZH_BAD_CONTEXT', 'public API')
    await expect(admin.put('sec-ctx', new Uint8Array([1]), { context: forged })).rejects.toBeInstanceOf(BadContextError)
    // A context of another key is not this key's.
    const other = await admin.put('sec-ctx-other', new TextEncoder().encode('o'))
    await expect(admin.put('sec-ctx', new Uint8Array([1]), { context: other.context })).rejects.toBeInstanceOf(BadContextError)
    expect(await values('sec-ctx')).toEqual([['v1'], ['v1'], ['v1']])
    const next = await admin.put('sec-ctx', new TextEncoder().encode('v2'), { context: first.context, w: 3 })
    expect(next.conflict).toBe(false)
    expect(await values('sec-ctx')).toEqual([['v2'], ['v2'], ['v2']])
  })

  it('read repair relays signed sets: a replica that missed a write is repaired by a read with a reader\'s token', async () => {
    // Written as nodes write (signed with the secret) to n1 and n2 only: n3 never heard of it.
    const key = Buffer.from('sec-repair')
    const { partition, epoch } = await target('sec-repair')
    const ids = (await admin.explain('sec-repair')).replicas.map((r) => r.id)
    expect(ids.sort()).toEqual(['n1', 'n2', 'n3'])
    const coordinated = await signed(0, '/v1/replica/coordinate', pack({ partition, key, context: [], value: Buffer.from('n3 missed this') }), keys, Date.now(), { [EPOCH_HEADER]: epoch })
    expect(coordinated.status, coordinated.body.toString()).toBe(200)
    const { set } = unpack(coordinated.body) as { set: Uint8Array }
    expect((await signed(1, '/v1/replica/store', pack({ items: [[partition, key, set]] }), keys, Date.now(), { [EPOCH_HEADER]: epoch })).status).toBe(200)
    expect(await values('sec-repair')).toEqual([['n3 missed this'], ['n3 missed this'], []])
    const refusedBefore = await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="bad-proof"')
    // A reader repairs too: relaying sets its nodes proved is a repair, not a write.
    const reader = await connect({ seeds: cluster.seeds, token: cluster.tokens!.reader })
    try {
      await waitFor(async () => {
        await reader.get('sec-repair', { r: 3 })
        return (await values('sec-repair')).every((v) => v.length === 1 && v[0] === 'n3 missed this')
      }, { timeoutMs: 10_000, what: 'read repair to reach n3' })
    } finally {
      await reader.close()
    }
    expect(await sumMetric(cluster.nodes, 'zerohop_auth_refused_total', 'reason="bad-proof"')).toBe(refusedBefore)
  })
})

describe('zerohop dev, secured', () => {
  it('runs a local 3-node cluster with the secret and users file: a token writes, no token is refused', async () => {
    // Three consecutive free ports for --base-port.
    let base = 0
    for (let attempt = 0; attempt < 20 && base === 0; attempt++) {
      const [p] = await freePorts(1)
      if (p + 2 > 65535) continue
      const free = await Promise.all([p + 1, p + 2].map((q) => new Promise<boolean>((resolve) => {
        const srv = net.createServer().once('error', () => resolve(false)).listen(q, '127.0.0.1', () => srv.close(() => resolve(true)))
      })))
      if (free.every(Boolean)) base = p
    }
    expect(base).toBeGreaterThan(0)
    const dev = spawn(process.execPath, [CLI, 'dev', '--base-port', String(base), '--data', path.join(cluster.dir, 'dev'),
      '--cluster-secret-file', path.join(cluster.dir, 'cluster.secret'), '--users-file', path.join(cluster.dir, 'users.json')], { stdio: ['ignore', 'pipe', 'pipe'] })
    let output = ''
    dev.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    dev.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    const exited = new Promise<number | null>((resolve) => dev.once('exit', (code) => resolve(code)))
    try {
      await waitFor(() => output.includes('Zerohop dev cluster is up'), { timeoutMs: 30_000, what: `zerohop dev to serve: ${output.slice(-500)}` })
      expect(output).toContain('token: process.env.ZEROHOP_TOKEN')
      const url = `http://127.0.0.1:${base}/v1/kv/greeting`
      expect((await call('PUT', url, { body: 'hello', headers: bearer(cluster.tokens!.writer) })).status).toBe(204)
      expectRefused(await call('GET', url), 401, 'ZH_UNAUTHENTICATED', 'dev cluster without a token')
      const got = await call('GET', `http://127.0.0.1:${base + 2}/v1/kv/greeting`, { headers: bearer(cluster.tokens!.reader) })
      expect(got.body.toString()).toBe('hello')
    } finally {
      dev.kill('SIGTERM')
      expect(await exited).toBe(0)
    }
  }, 60_000)
})

describe('start-up checks', () => {
  it('a node beyond loopback without a cluster secret refuses to start, naming the flag; --users-file needs the secret', async () => {
    const open = await zerohop('start', '--id', 'x1', '--host', '0.0.0.0', '--port', '1', '--data', path.join(cluster.dir, 'x1'))
    expect(open.code).toBe(2)
    expect(open.stderr).toContain('--cluster-secret-file')
    expect(open.stderr).toContain('--insecure')
    const noUsers = await zerohop('start', '--id', 'x4', '--host', '0.0.0.0', '--port', '1', '--data', path.join(cluster.dir, 'x4'), '--cluster-secret-file', path.join(cluster.dir, 'cluster.secret'))
    expect(noUsers.code).toBe(2)
    expect(noUsers.stderr).toContain('add --users-file PATH')
    const users = await zerohop('start', '--id', 'x2', '--port', '1', '--data', path.join(cluster.dir, 'x2'), '--users-file', path.join(cluster.dir, 'users.json'))
    expect(users.code).toBe(2)
    expect(users.stderr).toContain('--users-file needs --cluster-secret-file')
    const short = path.join(cluster.dir, 'short.secret')
    await import('node:fs/promises').then((fs) => fs.writeFile(short, 'too short', { mode: 0o600 }))
    const weak = await zerohop('start', '--id', 'x3', '--port', '1', '--data', path.join(cluster.dir, 'x3'), '--cluster-secret-file', short)
    expect(weak.code).toBe(2)
    expect(weak.stderr).toContain('at least 16')
  })
})

