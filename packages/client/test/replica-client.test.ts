// The replica client: one parser of error bodies, answers checked before anyone uses them, and the
// transport's errors passed on as they are; against a scripted transport and a real local server.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCodes, HttpError, InvalidArgumentError, InvalidResponseError, Paths, TransportError, pack } from '@zerohop/core'
import { ReplicaClient, replyError } from '../src/replica-client.js'
import { UndiciTransport, type Reply, type SendOptions, type Transport } from '../src/transport.js'

const json = (x: unknown) => Buffer.from(JSON.stringify(x))

/** Answers every request with `reply`, and records what was sent. */
class Scripted implements Transport {
  sent: { url: string; path: string; body?: Uint8Array; options?: SendOptions }[] = []
  constructor(public reply: Reply) {}
  async post(url: string, path: string, body: Uint8Array, options?: SendOptions): Promise<Reply> {
    this.sent.push({ url, path, body, options })
    return this.reply
  }
  async get(url: string, path: string, options?: SendOptions): Promise<Reply> {
    this.sent.push({ url, path, options })
    return this.reply
  }
  async close() {}
}

const ok = (x: unknown): Reply => ({ status: 200, body: pack(x) })
const k = Buffer.from('k')
const hash = Buffer.alloc(16, 7)

describe('replyError: the one parser of error bodies', () => {
  it('reads the protocol\'s JSON error body', () => {
    expect(replyError({ status: 409, body: json({ error: { code: 'ZH_NOT_REPLICA', message: 'not a replica of 3' } }) })).toEqual({ status: 409, code: 'ZH_NOT_REPLICA', message: 'not a replica of 3' })
    // A code this version does not know (a newer node) is kept as sent.
    expect(replyError({ status: 400, body: json({ error: { code: 'ZH_FROM_THE_FUTURE', message: 'm' } }) }).code).toBe('ZH_FROM_THE_FUTURE')
    expect(replyError({ status: 500, body: json({ error: { code: 'ZH_INTERNAL' } }) })).toEqual({ status: 500, code: 'ZH_INTERNAL', message: 'HTTP 500' })
  })

  it('describes a body that is not the protocol\'s by its status, and its start when it is text', () => {
    expect(replyError({ status: 502, body: Buffer.from('<html>\n  <b>Bad gateway</b></html>') })).toEqual({ status: 502, message: 'HTTP 502: <html> <b>Bad gateway</b></html>' })
    expect(replyError({ status: 500, body: Buffer.alloc(0) })).toEqual({ status: 500, message: 'HTTP 500' })
    expect(replyError({ status: 500, body: pack({ error: 'x' }) })).toEqual({ status: 500, message: 'HTTP 500' })
    // JSON, but not the error shape: no code is made up.
    expect(replyError({ status: 404, body: json({ message: 'no route' }) })).toEqual({ status: 404, message: 'HTTP 404: {"message":"no route"}' })
    expect(replyError({ status: 404, body: json({ error: { code: 7 } }) }).code).toBeUndefined()
    expect(replyError({ status: 503, body: json(null) })).toEqual({ status: 503, message: 'HTTP 503: null' })
  })
})

describe('ReplicaClient', () => {
  it('an error status rejects with HttpError carrying the node\'s status and code', async () => {
    const t = new Scripted({ status: 409, body: json({ error: { code: ErrorCodes.NOT_REPLICA, message: 'not a replica' } }) })
    const err = await new ReplicaClient(t).store('http://n1', { items: [[0, k, hash]] }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(HttpError)
    expect(err).toMatchObject({ status: 409, code: 'ZH_NOT_REPLICA' })
    expect((err as Error).message).toBe('/v1/replica/store on http://n1 answered 409: not a replica')
    t.reply = { status: 502, body: Buffer.from('bad gateway') }
    expect(await new ReplicaClient(t).read('http://n1', { keys: [[0, k]] }).catch((e: unknown) => e)).toMatchObject({
      status: 502,
      code: 'ZH_INTERNAL',
      message: '/v1/replica/read on http://n1 answered HTTP 502: bad gateway',
    })
  })

  it('a 200 whose body is not the answer asked for rejects with InvalidResponseError', async () => {
    const t = new Scripted(ok({}))
    const c = new ReplicaClient(t)
    const cases: [Reply, () => Promise<unknown>][] = [
      [{ status: 200, body: Buffer.from('not msgpack \xc1') }, () => c.read('u', { keys: [[0, k]] })],
      [ok([1, 2]), () => c.read('u', { keys: [[0, k]] })],
      [ok({ sets: [] }), () => c.read('u', { keys: [[0, k]] })],
      [ok({ sets: ['x'] }), () => c.read('u', { keys: [[0, k]] })],
      [ok({ changed: 'many' }), () => c.store('u', { items: [[0, k, hash]] })],
      [ok({ set: 'x' }), () => c.coordinate('u', { partition: 0, key: k, context: [], value: null })],
      [ok({ items: [[k]], more: false }), () => c.range('u', { partition: 0, limit: 10 })],
      [ok({ items: [] }), () => c.range('u', { partition: 0, limit: 10 })],
      [ok({ roots: [hash] }), () => c.roots('u', { partitions: [0, 1] })],
      [ok({ roots: [hash, Buffer.alloc(15)] }), () => c.roots('u', { partitions: [0, 1] })],
      [ok({ hashes: [hash] }), () => c.tree('u', { partition: 0, level: 1, indices: [0, 1] })],
      [ok({ keys: [[k, Buffer.alloc(3)]] }), () => c.keys('u', { partition: 0, leaves: [0] })],
      [ok({ ok: [true, 'yes'] }), () => c.reap('u', { partition: 0, phase: 'check', items: [[k, hash], [k, hash]] })],
      [ok({ members: [{ id: '' }] }), () => c.gossip('u', { partitions: 8, n: 3, members: [] })],
      [{ status: 200, body: Buffer.from('{"members": 1}') }, () => c.ring('u')],
    ]
    for (const [reply, call] of cases) {
      t.reply = reply
      const err = await call().catch((e: unknown) => e)
      expect(err, JSON.stringify(reply.body.toString())).toBeInstanceOf(InvalidResponseError)
      expect(err).toMatchObject({ code: 'ZH_INVALID_RESPONSE' })
    }
    t.reply = ok({ roots: [hash] })
    await expect(c.roots('u', { partitions: [0, 1] })).rejects.toThrow('u answered /v1/ae/roots with something other than 2 roots of 16 bytes')
  })

  it('decodes sound answers, and frames requests with the path, the epoch and a default timeout', async () => {
    const t = new Scripted(ok({ sets: [hash, null] }))
    const c = new ReplicaClient(t, { timeoutMs: 1234 })
    const seen: [number, number][] = []
    expect(await c.read('http://n1', { keys: [[0, k], [1, k]] }, { epoch: 'e1', onReply: (r, sent) => seen.push([r.body.byteLength, sent]) })).toEqual({ sets: [hash, null] })
    expect(t.sent[0]).toMatchObject({ url: 'http://n1', path: Paths.read, options: { epoch: 'e1', timeoutMs: 1234 } })
    expect(seen).toEqual([[t.reply.body.byteLength, t.sent[0].body!.byteLength]])
    t.reply = { status: 200, body: json({ epoch: 'e', partitions: 8, n: 3, spares: 2, members: [], down: [], limits: {} }) }
    expect(await c.ring('http://n1', { wait: 'e 1', timeoutMs: 20_000 })).toMatchObject({ partitions: 8 })
    expect(t.sent[1]).toMatchObject({ path: '/v1/ring?wait=e%201', options: { timeoutMs: 20_000 } })
  })

  it('validates its transport and options', () => {
    expect(() => new ReplicaClient(undefined as never)).toThrow(InvalidArgumentError)
    expect(() => new ReplicaClient({ post: 1 } as never)).toThrow(/needs a Transport/)
    expect(() => new ReplicaClient(new Scripted(ok({})), { timeoutMs: 0 })).toThrow(/timeoutMs must be a positive integer/)
  })
})

describe('ReplicaClient over UndiciTransport and a real server', () => {
  let server: http.Server
  let url: string
  const transport = new UndiciTransport()

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      if (req.url === Paths.store) {
        res.writeHead(503, { 'content-type': 'application/json' })
        res.end(JSON.stringify({ error: { code: 'ZH_SHUTTING_DOWN', message: 'this node is stopping' } }))
      } else req.socket.destroy()
    })
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
  })
  afterAll(async () => {
    await transport.close()
    server.closeAllConnections()
    await new Promise((r) => server.close(r))
  })

  it('an error status is an HttpError; no answer is the transport\'s TransportError', async () => {
    const c = new ReplicaClient(transport)
    await expect(c.store(url, { items: [[0, k, hash]] })).rejects.toMatchObject({ status: 503, code: 'ZH_SHUTTING_DOWN', message: `${Paths.store} on ${url} answered 503: this node is stopping` })
    const cut = await c.read(url, { keys: [[0, k]] }).catch((e: unknown) => e)
    expect(cut).toBeInstanceOf(TransportError)
    expect(cut).toMatchObject({ kind: 'network', delivered: true })
    const closed = http.createServer()
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r))
    const port = (closed.address() as AddressInfo).port
    await new Promise((r) => closed.close(r))
    const refused = await c.read(`http://127.0.0.1:${port}`, { keys: [[0, k]] }).catch((e: unknown) => e)
    expect(refused).toMatchObject({ kind: 'refused', delivered: false })
  })
})
