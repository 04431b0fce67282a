// The framed protocol (server/src/frames.ts) and the SDK's FramesTransport, in process: the node's
// listener serves frames and HTTP on one port with the same handler and limits, and the transport
// keeps the Transport contract (TransportError kinds and `delivered`) like UndiciTransport.
import http from 'node:http'
import net, { type AddressInfo } from 'node:net'
import pino from 'pino'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { FRAMES_PREFACE, TransportError, pack, unpack } from '@zerohop/core'
import { FramesTransport, UndiciTransport, connect } from '@zerohop/client'
import { createHttpServer, framedConnectionsOf, type NodeServer } from '../server/src/http.js'
import { json, type NodeRequest } from '../server/src/routes/request.js'
import { waitFor } from './harness/cluster.js'

const MAX_BODY = 64 * 1024
let server: NodeServer
let url: string
/** Requests to /never wait here for good (until the test ends). */
const never: (() => void)[] = []

function echo(req: NodeRequest) {
  return json(200, { method: req.method, path: req.path, query: req.query.toString(), type: req.headers['content-type'], token: req.headers.authorization, body: req.body.toString() })
}

beforeAll(async () => {
  server = createHttpServer({
    handler: async (req) => {
      if (req.bodyError) return json(503, { error: String((req.bodyError as Error).message) })
      if (req.path === '/slow') await new Promise((r) => setTimeout(r, 150))
      if (req.path === '/never') await new Promise<void>((r) => never.push(r))
      return echo(req)
    },
    maxBodyBytes: MAX_BODY,
    log: pino({ level: 'silent' }),
    stopping: () => false,
    limits: { bodyTimeoutMs: 300, headersTimeoutMs: 300 },
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  for (const r of never.splice(0)) r()
  framedConnectionsOf(server)?.destroy()
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

function frame(x: unknown): Buffer {
  const body = Buffer.from(pack(x))
  const head = Buffer.alloc(4)
  head.writeUInt32BE(body.length)
  return Buffer.concat([head, body])
}

/** A raw framed connection: send frames, read reply frames. */
async function raw(): Promise<{ socket: net.Socket; replies: unknown[]; closed: Promise<void> }> {
  const socket = net.connect(Number(new URL(url).port), '127.0.0.1')
  await new Promise<void>((r) => socket.once('connect', r))
  const replies: unknown[] = []
  let buf = Buffer.alloc(0)
  socket.on('data', (d: Buffer) => {
    buf = Buffer.concat([buf, d])
    while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
      replies.push(unpack(buf.subarray(4, 4 + buf.readUInt32BE(0))))
      buf = buf.subarray(4 + buf.readUInt32BE(0))
    }
  })
  const closed = new Promise<void>((r) => socket.once('close', () => r()))
  socket.on('error', () => undefined)
  socket.write(FRAMES_PREFACE)
  return { socket, replies, closed }
}

const bodyOf = (reply: unknown) => JSON.parse(Buffer.from((reply as [number, number, unknown, Uint8Array])[3]).toString())

describe('the listener serves frames', () => {
  it('with the handler HTTP uses, on the same port: method, path, query, lower-case headers, body; HTTP still works', async () => {
    const c = await raw()
    c.socket.write(frame([7, 'POST', '/x?a=1', { 'Content-Type': 'application/x-msgpack', authorization: 'Bearer t' }, Buffer.from('hello')]))
    await waitFor(() => c.replies.length === 1, { timeoutMs: 5000, what: 'the reply' })
    const [id, status, headers] = c.replies[0] as [number, number, Record<string, string>]
    expect([id, status, headers['content-type']]).toEqual([7, 200, 'application/json'])
    expect(bodyOf(c.replies[0])).toEqual({ method: 'POST', path: '/x', query: 'a=1', type: 'application/x-msgpack', token: 'Bearer t', body: 'hello' })
    c.socket.destroy()
    const res = await request(`${url}/y?b=2`, { method: 'POST', body: 'over http' })
    expect(await res.body.json()).toMatchObject({ path: '/y', query: 'b=2', body: 'over http' })
  })

  it('answers by id, in the order the answers are ready', async () => {
    const c = await raw()
    c.socket.write(Buffer.concat([frame([1, 'GET', '/slow', {}, null]), frame([2, 'GET', '/fast', {}, null])]))
    await waitFor(() => c.replies.length === 2, { timeoutMs: 5000, what: 'both replies' })
    expect(c.replies.map((r) => (r as number[])[0])).toEqual([2, 1])
    c.socket.destroy()
  })

  it('closes a connection that sends a frame that is not a request, and goes on serving others', async () => {
    for (const bad of [frame(['not', 'a', 'request']), frame([1, 'GET', 'no-slash', {}, null]), frame([1, 'GET', '/x', { a: 1 }, null]), Buffer.from([0, 0, 0, 2, 0xc1, 0xc1])]) {
      const c = await raw()
      c.socket.write(bad)
      await c.closed
      expect(c.replies).toEqual([])
    }
    const ok = await raw()
    ok.socket.write(frame([3, 'GET', '/x', {}, null]))
    await waitFor(() => ok.replies.length === 1, { timeoutMs: 5000, what: 'the reply' })
    ok.socket.destroy()
  })

  it('closes a connection whose frame is over the body limit, before reading it', async () => {
    const c = await raw()
    const head = Buffer.alloc(4)
    head.writeUInt32BE(MAX_BODY + 64 * 1024 + 1)
    c.socket.write(head)
    await c.closed
    expect(c.replies).toEqual([])
  })

  it('closes a connection whose frame stalls halfway for the body timeout', async () => {
    const c = await raw()
    const whole = frame([1, 'POST', '/x', {}, Buffer.alloc(100)])
    c.socket.write(whole.subarray(0, 50))
    const t0 = Date.now()
    await c.closed
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(c.replies).toEqual([])
  })

  it('on close, ends an idle connection at once and a busy one after its answer', async () => {
    const s = createHttpServer({ handler: async (req) => (req.path === '/slow' ? new Promise((r) => setTimeout(() => r(echo(req)), 200)) : echo(req)), maxBodyBytes: MAX_BODY, log: pino({ level: 'silent' }), stopping: () => false })
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const port = (s.address() as AddressInfo).port
    const open = async () => {
      const socket = net.connect(port, '127.0.0.1')
      await new Promise<void>((r) => socket.once('connect', r))
      const got: Buffer[] = []
      socket.on('data', (d: Buffer) => got.push(d))
      socket.write(FRAMES_PREFACE)
      return { socket, got, closed: new Promise<void>((r) => socket.once('close', () => r())) }
    }
    const idle = await open()
    const busy = await open()
    busy.socket.write(frame([9, 'GET', '/slow', {}, null]))
    await waitFor(() => framedConnectionsOf(s)!.size === 2, { timeoutMs: 5000, what: 'two framed connections' })
    const closed = new Promise((r) => s.close(r))
    framedConnectionsOf(s)!.close()
    await idle.closed
    await busy.closed
    const all = Buffer.concat(busy.got)
    expect((unpack(all.subarray(4)) as number[])[0]).toBe(9)
    await closed
  })
})

/** What `p` rejects with (the test fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<TransportError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(TransportError)
  return err as TransportError
}

describe('FramesTransport: the Transport contract', () => {
  const transport = new FramesTransport({ connectTimeoutMs: 1000, headers: { authorization: 'Bearer tok' } })
  afterAll(() => transport.close())

  it('answers requests over one connection, each with its own reply, the base headers and the epoch sent', async () => {
    const replies = await Promise.all(Array.from({ length: 50 }, (_, i) => transport.post(url, i % 2 ? '/slow' : `/p${i}`, Buffer.from(`b${i}`), { epoch: 'e1', timeoutMs: 5000 })))
    replies.forEach((r, i) => {
      expect(r.status).toBe(200)
      expect(JSON.parse(r.body.toString())).toMatchObject({ method: 'POST', path: i % 2 ? '/slow' : `/p${i}`, token: 'Bearer tok', body: `b${i}` })
    })
    expect(JSON.parse((await transport.get(url, '/g?q=1')).body.toString())).toMatchObject({ method: 'GET', path: '/g', query: 'q=1' })
  })

  it('a refused connection: kind refused, certainly not delivered', async () => {
    const s = net.createServer()
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const gone = `http://127.0.0.1:${(s.address() as AddressInfo).port}`
    await new Promise((r) => s.close(r))
    expect(await rejection(transport.post(gone, '/x', new Uint8Array([1]), { timeoutMs: 2000 }))).toMatchObject({ code: 'ZH_TRANSPORT', kind: 'refused', delivered: false })
  })

  it('a node that never answers: kind timeout, maybe delivered; a late answer is dropped', async () => {
    const late = transport.post(url, '/never', new Uint8Array([1]), { timeoutMs: 200 })
    // Answered meanwhile on the same connection: the node is alive, and the connection stays.
    await transport.get(url, '/meanwhile', { timeoutMs: 2000 })
    const err = await rejection(late)
    expect(err).toMatchObject({ kind: 'timeout', delivered: true })
    for (const r of never.splice(0)) r()
    expect((await transport.get(url, '/after', { timeoutMs: 2000 })).status).toBe(200)
  })

  /** A node that speaks frames, answers every request but /never at once, and counts its connections. */
  async function framedNode() {
    let connections = 0
    let closed = 0
    const sockets = new Set<net.Socket>()
    const s = net.createServer((socket) => {
      connections++
      sockets.add(socket)
      socket.once('close', () => closed++)
      socket.on('error', () => undefined)
      let buf = Buffer.alloc(0)
      socket.on('data', (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (buf.subarray(0, FRAMES_PREFACE.length).equals(FRAMES_PREFACE)) buf = buf.subarray(FRAMES_PREFACE.length)
        while (buf.length >= 4 && buf.length >= 4 + buf.readUInt32BE(0)) {
          const [id, , path] = unpack(buf.subarray(4, 4 + buf.readUInt32BE(0))) as [number, string, string]
          buf = buf.subarray(4 + buf.readUInt32BE(0))
          if (path !== '/never') socket.write(frame([id, 200, {}, Buffer.from(path)]))
        }
      })
    })
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    return {
      url: `http://127.0.0.1:${(s.address() as AddressInfo).port}`,
      connections: () => connections,
      closed: () => closed,
      close: () => {
        for (const socket of sockets) socket.destroy()
        return new Promise((r) => s.close(r))
      },
    }
  }

  /** `fn` with a framedNode() and a FramesTransport, both closed after it, pass or fail. */
  async function onFramedNode(fn: (node: Awaited<ReturnType<typeof framedNode>>, t: FramesTransport) => Promise<void>): Promise<void> {
    const node = await framedNode()
    const t = new FramesTransport({ connectTimeoutMs: 1000 })
    try {
      await fn(node, t)
    } finally {
      await t.close()
      await node.close()
    }
  }

  it('gives up a connection that stayed silent for a timed-out request: the next request connects again, and the old one closes once its requests are settled', () =>
    onFramedNode(async (node, t) => {
      expect((await t.get(node.url, '/ok', { timeoutMs: 2000 })).body.toString()).toBe('/ok')
      const started = Date.now()
      const short = t.post(node.url, '/never', new Uint8Array([1]), { timeoutMs: 200 })
      const long = t.post(node.url, '/never', new Uint8Array([1]), { timeoutMs: 1500 })
      expect(await rejection(short)).toMatchObject({ kind: 'timeout', delivered: true })
      expect(node.connections()).toBe(1)
      // A cut-off node: a new connection, while the other request still waits on the old one.
      expect((await t.get(node.url, '/again', { timeoutMs: 2000 })).body.toString()).toBe('/again')
      expect(node.connections()).toBe(2)
      expect(node.closed()).toBe(0)
      // That request keeps its own deadline and fails as any timeout does; then the old connection closes.
      expect(await rejection(long)).toMatchObject({ kind: 'timeout', delivered: true })
      expect(Date.now() - started).toBeGreaterThanOrEqual(1400)
      await waitFor(() => node.closed() === 1, { timeoutMs: 5000, what: 'the given-up connection to close' })
      expect((await t.get(node.url, '/still', { timeoutMs: 2000 })).body.toString()).toBe('/still')
      expect(node.connections()).toBe(2)
    }))

  it('close() ends a retired connection too, failing the request still on it at once', () =>
    onFramedNode(async (node, t) => {
      const short = t.post(node.url, '/never', new Uint8Array([1]), { timeoutMs: 200 })
      const long = t.post(node.url, '/never', new Uint8Array([1]), { timeoutMs: 10_000 })
      expect(await rejection(short)).toMatchObject({ kind: 'timeout' })
      const closing = Date.now()
      await t.close()
      expect(await rejection(long)).toMatchObject({ kind: 'network', delivered: true })
      expect(Date.now() - closing).toBeLessThan(5000)
      await waitFor(() => node.closed() === node.connections(), { timeoutMs: 5000, what: 'every connection to close' })
    }))

  it('keeps a connection on which the node answered others while one request timed out', () =>
    onFramedNode(async (node, t) => {
      const late = t.post(node.url, '/never', new Uint8Array([1]), { timeoutMs: 300 })
      expect((await t.get(node.url, '/ok', { timeoutMs: 2000 })).status).toBe(200)
      expect(await rejection(late)).toMatchObject({ kind: 'timeout' })
      expect((await t.get(node.url, '/again', { timeoutMs: 2000 })).status).toBe(200)
      expect(node.connections()).toBe(1)
    }))

  it('a node that cuts the connection: kind network, maybe delivered; the next request connects again', async () => {
    let cut = 0
    const s = net.createServer((socket) => {
      socket.once('data', () => {
        cut++
        socket.destroy()
      })
    })
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const there = `http://127.0.0.1:${(s.address() as AddressInfo).port}`
    try {
      expect(await rejection(transport.post(there, '/x', new Uint8Array([1]), { timeoutMs: 2000 }))).toMatchObject({ kind: 'network', delivered: true })
      expect(await rejection(transport.post(there, '/x', new Uint8Array([1]), { timeoutMs: 2000 }))).toMatchObject({ kind: 'network', delivered: true })
      expect(cut).toBe(2)
    } finally {
      await new Promise((r) => s.close(r))
    }
  })

  it('an abort: kind aborted, maybe delivered; a deadline signal: kind timeout', async () => {
    const ac = new AbortController()
    const pending = transport.post(url, '/never', new Uint8Array([1]), { signal: ac.signal, timeoutMs: 5000 })
    setTimeout(() => ac.abort(), 20)
    expect(await rejection(pending)).toMatchObject({ kind: 'aborted', delivered: true })
    const custom = new AbortController()
    const withReason = transport.get(url, '/never', { signal: custom.signal, timeoutMs: 5000 })
    setTimeout(() => custom.abort('stop'), 20)
    expect(await rejection(withReason)).toMatchObject({ kind: 'aborted', cause: 'stop' })
    expect(await rejection(transport.get(url, '/never', { signal: AbortSignal.timeout(20), timeoutMs: 5000 }))).toMatchObject({ kind: 'timeout', delivered: true })
    for (const r of never.splice(0)) r()
  })

  it('reaches a node that speaks only HTTP over HTTP, from the first request on', async () => {
    const s = http.createServer((req, res) => {
      let body = ''
      req.on('data', (d) => (body += d))
      req.on('end', () => res.end(JSON.stringify({ over: 'http', path: req.url, body })))
    })
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
    const old = `http://127.0.0.1:${(s.address() as AddressInfo).port}`
    try {
      const r = await transport.post(old, '/x', Buffer.from('one'), { timeoutMs: 3000 })
      expect(JSON.parse(r.body.toString())).toEqual({ over: 'http', path: '/x', body: 'one' })
      expect(JSON.parse((await transport.post(old, '/y', Buffer.from('two'), { timeoutMs: 3000 })).body.toString())).toEqual({ over: 'http', path: '/y', body: 'two' })
    } finally {
      s.closeAllConnections()
      await new Promise((r) => s.close(r))
    }
  })

  it('refuses new requests once closed', async () => {
    const t = new FramesTransport()
    await t.close()
    await expect(t.post(url, '/x', new Uint8Array([1]))).rejects.toMatchObject({ code: 'ZH_CLIENT_CLOSED' })
  })
})

describe("connect's protocol option", () => {
  it("is validated up front, with a message that names the fix", async () => {
    await expect(connect({ seeds: [url], protocol: 'tcp' as 'http' })).rejects.toThrow(/protocol must be 'http' or 'frames', got "tcp"/)
    await expect(connect({ seeds: [url], protocol: 'frames', transport: new UndiciTransport() })).rejects.toThrow(/protocol is an option of the built-in transport/)
  })
})
