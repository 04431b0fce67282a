// The undici transport against local servers: deadlines hold even for requests that wait in the
// pool's queue (undici starts its own timeouts only once a request is sent), and undici's errors
// reach callers as the Transport contract's TransportError, with `delivered` right.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { errors as undiciErrors } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { TransportError } from '@zerohop/core'
import { UndiciTransport, transportError } from '../src/transport.js'

let server: http.Server
let url: string
const held: http.ServerResponse[] = []

beforeAll(async () => {
  server = http.createServer((_req, res) => void held.push(res))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  for (const res of held) res.destroy()
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

describe('UndiciTransport', () => {
  it('ends queued requests at their deadline, not one connection timeout after another', async () => {
    const transport = new UndiciTransport({ connections: 2 })
    try {
      const t0 = Date.now()
      const ends = await Promise.all(
        Array.from({ length: 6 }, () =>
          transport
            .post(url, '/x', new Uint8Array([1]), { timeoutMs: 300, deadline: () => AbortSignal.timeout(300) })
            .then(() => 'answered', () => Date.now() - t0),
        ),
      )
      for (const e of ends) {
        expect(typeof e).toBe('number')
        // Sent or queued, every request is over within its deadline plus undici's timer granularity.
        expect(e as number).toBeLessThan(1500)
      }
    } finally {
      await transport.close()
    }
  })

  it('refuses new requests once closed', async () => {
    const transport = new UndiciTransport()
    await transport.close()
    await expect(transport.post(url, '/x', new Uint8Array([1]))).rejects.toMatchObject({ code: 'ZH_CLIENT_CLOSED' })
  })
})

/** Run `test` against a server on 127.0.0.1 that does `handle` with every request (or, without `test`, against a port just closed). */
async function withServer(handle: http.RequestListener, test?: (url: string) => Promise<void>): Promise<string> {
  const s = http.createServer(handle)
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r))
  const url = `http://127.0.0.1:${(s.address() as AddressInfo).port}`
  try {
    await test?.(url)
  } finally {
    s.closeAllConnections()
    await new Promise((r) => s.close(r))
  }
  return url
}

/** What `p` rejects with (the test fails if it resolves). */
async function rejection(p: Promise<unknown>): Promise<TransportError> {
  const err = await p.then(() => undefined, (e: unknown) => e)
  expect(err).toBeInstanceOf(TransportError)
  return err as TransportError
}

describe('UndiciTransport errors: the Transport contract', () => {
  const transport = new UndiciTransport({ connectTimeoutMs: 1000 })
  afterAll(() => transport.close())

  it('a refused connection: kind refused, certainly not delivered', async () => {
    const gone = await withServer(() => undefined)
    const err = await rejection(transport.post(gone, '/x', new Uint8Array([1]), { timeoutMs: 2000 }))
    expect(err).toMatchObject({ code: 'ZH_TRANSPORT', kind: 'refused', delivered: false })
    expect((err.cause as { code?: string }).code).toBe('ECONNREFUSED')
    expect(err.message).toContain(`${gone}/x`)
  })

  it('a server that never answers: kind timeout, maybe delivered', async () => {
    await withServer(() => undefined, async (url) => {
      const err = await rejection(transport.post(url, '/x', new Uint8Array([1]), { timeoutMs: 200 }))
      expect(err).toMatchObject({ kind: 'timeout', delivered: true })
      expect((err.cause as { code?: string }).code).toBe('UND_ERR_HEADERS_TIMEOUT')
    })
  })

  it('a server that stops in the middle of the body: kind timeout, maybe delivered', async () => {
    const stall: http.RequestListener = (_req, res) => {
      res.writeHead(200, { 'content-length': '10' })
      res.write('12345')
    }
    await withServer(stall, async (url) => {
      const err = await rejection(transport.post(url, '/x', new Uint8Array([1]), { timeoutMs: 200 }))
      expect(err).toMatchObject({ kind: 'timeout', delivered: true })
      expect((err.cause as { code?: string }).code).toBe('UND_ERR_BODY_TIMEOUT')
    })
  })

  it('a server that destroys the socket: kind network, maybe delivered', async () => {
    await withServer((req) => req.socket.destroy(), async (url) => {
      const err = await rejection(transport.post(url, '/x', new Uint8Array([1]), { timeoutMs: 2000 }))
      expect(err).toMatchObject({ kind: 'network', delivered: true })
      expect((err.cause as { code?: string }).code).toBe('UND_ERR_SOCKET')
    })
  })

  it('an abort: kind aborted, maybe delivered; a deadline signal: kind timeout', async () => {
    await withServer(() => undefined, async (url) => {
      const ac = new AbortController()
      const pending = transport.post(url, '/x', new Uint8Array([1]), { signal: ac.signal, timeoutMs: 5000 })
      setTimeout(() => ac.abort(), 20)
      expect(await rejection(pending)).toMatchObject({ kind: 'aborted', delivered: true })
      const custom = new AbortController()
      const withReason = transport.get(url, '/x', { signal: custom.signal, timeoutMs: 5000 })
      setTimeout(() => custom.abort('stop'), 20)
      expect(await rejection(withReason)).toMatchObject({ kind: 'aborted', cause: 'stop' })
      expect(await rejection(transport.get(url, '/x', { signal: AbortSignal.timeout(20), timeoutMs: 5000 }))).toMatchObject({ kind: 'timeout', delivered: true })
    })
  })

  it('maps the errors of the connect phase as not delivered, and passes misuse through', () => {
    // A connect timeout cannot be provoked on 127.0.0.1: undici's own error stands for it.
    expect(transportError(new undiciErrors.ConnectTimeoutError(), 'POST u/x')).toMatchObject({ kind: 'timeout', delivered: false })
    expect(transportError(Object.assign(new Error('getaddrinfo ENOTFOUND nowhere'), { code: 'ENOTFOUND' }), 'POST u/x')).toMatchObject({ kind: 'network', delivered: false })
    expect(transportError(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }), 'POST u/x')).toMatchObject({ kind: 'network', delivered: true })
    const misuse = new undiciErrors.InvalidArgumentError('invalid method')
    expect(transportError(misuse, 'POST u/x')).toBe(misuse)
    const bug = new TypeError('x is not a function')
    expect(transportError(bug, 'POST u/x')).toBe(bug)
  })
})
