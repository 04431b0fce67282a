// The listener (http.ts) over TLS, in process with a handler that echoes what it was given: mutual TLS
// marks requests whose client certificate the CA verified (peerCertified), plain HTTP to a TLS port is
// answered 426, and the node options that set it up are validated with messages naming the flag.
// Certificates are made at test time (see test/harness/certs.ts).
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import net, { type AddressInfo } from 'node:net'
import { once } from 'node:events'
import os from 'node:os'
import path from 'node:path'
import pino from 'pino'
import { Client, request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ErrorCodes } from '@zerohop/core'
import { UndiciTransport } from '@zerohop/client'
import { createHttpServer, type NodeServer } from '../src/http.js'
import { resolveNodeOptions } from '../src/config.js'
import { json } from '../src/routes/request.js'
import { makeCerts, type Certs } from '../../test/harness/certs.js'
import { waitFor } from '../../test/harness/cluster.js'

let dir: string
let certs: Certs
/** Another CA's certificate: well formed, but not the cluster's. */
let stranger: Certs
let server: NodeServer
let url: string
let ca: Buffer

async function listen(s: NodeServer, scheme = 'https'): Promise<string> {
  await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
  return `${scheme}://127.0.0.1:${(s.address() as AddressInfo).port}`
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-listener-'))
  await Promise.all([mkdir(path.join(dir, 'a')), mkdir(path.join(dir, 'b'))])
  certs = await makeCerts(path.join(dir, 'a'), ['server', 'peer'])
  stranger = await makeCerts(path.join(dir, 'b'), ['peer'], 'another-ca')
  ca = await readFile(certs.ca)
  const tls = { cert: await readFile(certs.nodes.server.cert), key: await readFile(certs.nodes.server.key), ca }
  server = createHttpServer({
    handler: async (req) => json(200, { peerCertified: req.peerCertified, body: req.body.toString() }),
    maxBodyBytes: 1024 * 1024,
    log: pino({ level: 'silent' }),
    stopping: () => false,
    tls,
  })
  url = await listen(server)
})

afterAll(async () => {
  server?.closeAllConnections()
  await new Promise((r) => (server ? server.close(r) : r(undefined)))
  if (dir) await rm(dir, { recursive: true, force: true })
})

/** GET / through a one-connection undici Client with these TLS options; the echoed body. */
async function ask(tls: { ca?: Buffer; cert?: Buffer; key?: Buffer }): Promise<{ peerCertified?: boolean }> {
  const client = new Client(url, { connect: { ...tls } })
  try {
    const res = await client.request({ path: '/', method: 'GET', headersTimeout: 5000, bodyTimeout: 5000 })
    expect(res.statusCode).toBe(200)
    return (await res.body.json()) as { peerCertified?: boolean }
  } finally {
    await client.close()
  }
}

describe('mutual TLS at the listener', () => {
  it('a client certificate signed by the CA sets peerCertified', async () => {
    const out = await ask({ ca, cert: await readFile(certs.nodes.peer.cert), key: await readFile(certs.nodes.peer.key) })
    expect(out.peerCertified).toBe(true)
  })

  it('no client certificate is served all the same, with peerCertified false', async () => {
    expect((await ask({ ca })).peerCertified).toBe(false)
  })

  it('a resumed TLS session without a client certificate is not certified (Node calls it authorized)', async () => {
    // One undici Client with a session cache: its second connection resumes the first's session.
    const client = new Client(url, { connect: { ca }, pipelining: 0 })
    try {
      const seen: unknown[] = []
      for (let i = 0; i < 2; i++) {
        const res = await client.request({ path: '/', method: 'GET', headers: { connection: 'close' }, headersTimeout: 5000, bodyTimeout: 5000 })
        seen.push(((await res.body.json()) as { peerCertified?: boolean }).peerCertified)
      }
      expect(seen).toEqual([false, false])
    } finally {
      await client.close()
    }
  })

  it('a client certificate of another CA is served, with peerCertified false', async () => {
    const out = await ask({ ca, cert: await readFile(stranger.nodes.peer.cert), key: await readFile(stranger.nodes.peer.key) })
    expect(out.peerCertified).toBe(false)
  })

  it('the node transport presents its certificate (tls cert/key) and verifies the server with tls.ca', async () => {
    const transport = new UndiciTransport({ tls: { ca, cert: await readFile(certs.nodes.peer.cert), key: await readFile(certs.nodes.peer.key) } })
    try {
      const reply = await transport.post(url, '/', Buffer.from('hi'))
      expect(reply.status).toBe(200)
      expect(JSON.parse(reply.body.toString())).toEqual({ peerCertified: true, body: 'hi' })
    } finally {
      await transport.close()
    }
  })

  it('without the CA, the transport rejects the certificate before the request is written, and says what to do', async () => {
    const transport = new UndiciTransport()
    try {
      const err = await transport.get(url, '/').then(() => undefined, (e: unknown) => e)
      expect(err).toMatchObject({ code: ErrorCodes.TRANSPORT, kind: 'network', delivered: false })
      expect((err as Error).message).toMatch(/certificate was not accepted.*tls: \{ ca \}/)
    } finally {
      await transport.close()
    }
  })

  it('rejects TLS options that are not PEM strings or Buffers', () => {
    expect(() => new UndiciTransport({ tls: { ca: 42 as never } })).toThrow(/tls\.ca must be a PEM string or a Buffer/)
    expect(() => new UndiciTransport({ tls: { cert: 'x' } })).toThrow(/cert and tls\.key go together/)
  })
})

describe('plain HTTP to a TLS listener', () => {
  it('is answered 426 ZH_TLS_REQUIRED in plain text, and the connection closed', async () => {
    const res = await request(url.replace('https:', 'http:') + '/v1/ring', { headersTimeout: 5000, bodyTimeout: 5000 })
    expect(res.statusCode).toBe(426)
    expect(res.headers.connection).toBe('close')
    expect(await res.body.json()).toEqual({ error: { code: ErrorCodes.TLS_REQUIRED, message: expect.stringMatching(/serves HTTPS; use https:\/\//) } })
  })
})

describe('connection limits at a plain listener', () => {
  it('a connection over --max-connections gets 503 ZH_OVERLOADED and is closed; once one closes, another is served', async () => {
    const plain = createHttpServer({
      handler: async () => json(200, { ok: true }),
      maxBodyBytes: 1024,
      log: pino({ level: 'silent' }),
      stopping: () => false,
      limits: { maxConnections: 3, maxConnectionsPerClient: 3 },
    })
    const base = await listen(plain, 'http')
    const port = Number(new URL(base).port)
    const held: net.Socket[] = []
    try {
      for (let i = 0; i < 3; i++) {
        const s = net.connect({ host: '127.0.0.1', port })
        s.on('error', () => {})
        held.push(s)
        await once(s, 'connect')
      }
      // A fourth, from another address so that only the total limit applies.
      const extra = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.2' })
      extra.on('error', () => {})
      held.push(extra)
      let answer = ''
      extra.on('data', (d) => (answer += d.toString()))
      await once(extra, 'close')
      expect(answer).toMatch(/^HTTP\/1\.1 503 /)
      expect(answer).toContain(`"code":"${ErrorCodes.OVERLOADED}"`)
      expect(answer).toContain('--max-connections)')
      held[0].destroy()
      const ok = await waitFor(async () => {
        const res = await request(`${base}/`, { headersTimeout: 2000, bodyTimeout: 2000, reset: true }).catch(() => undefined)
        if (!res) return false
        await res.body.dump()
        return res.statusCode === 200
      }, { timeoutMs: 5000, what: 'a free slot' })
      expect(ok).toBe(true)
    } finally {
      for (const s of held) s.destroy()
      plain.closeAllConnections()
      await new Promise((r) => plain.close(r))
    }
  })
})

describe('TLS node options', () => {
  const base = { id: 'n1', port: 7001 }

  it('serve https:// and advertise it, with https:// seeds', () => {
    const o = resolveNodeOptions({ ...base, tlsCert: certs.nodes.server.cert, tlsKey: certs.nodes.server.key, tlsCa: certs.ca, seeds: ['https://127.0.0.1:7002'] })
    expect(o.advertise).toBe('https://127.0.0.1:7001')
    expect(o.seeds).toEqual(['https://127.0.0.1:7002', 'https://127.0.0.1:7001'])
    expect(o.tls?.ca?.equals(ca)).toBe(true)
  })

  it('refuse http:// seeds or join on a TLS node, and https:// ones on a plain node', () => {
    const tls = { tlsCert: certs.nodes.server.cert, tlsKey: certs.nodes.server.key }
    expect(() => resolveNodeOptions({ ...base, ...tls, seeds: ['http://127.0.0.1:7002'] })).toThrow(/seed http:\/\/127\.0\.0\.1:7002 uses http:\/\/, but this node serves HTTPS/)
    expect(() => resolveNodeOptions({ ...base, ...tls, join: 'http://127.0.0.1:7002' })).toThrow(/join URL .* uses http:\/\//)
    expect(() => resolveNodeOptions({ ...base, seeds: ['https://127.0.0.1:7002'] })).toThrow(/uses https:\/\/, but this node serves plain HTTP/)
  })

  it('name the flag when a file is missing, not PEM, or alone', async () => {
    const junk = path.join(dir, 'junk.pem')
    await writeFile(junk, 'not a certificate')
    expect(() => resolveNodeOptions({ ...base, tlsCert: path.join(dir, 'missing.pem'), tlsKey: certs.nodes.server.key })).toThrow(/--tls-cert .*missing\.pem cannot be read/)
    expect(() => resolveNodeOptions({ ...base, tlsCert: junk, tlsKey: certs.nodes.server.key })).toThrow(/--tls-cert .* is not a PEM certificate/)
    expect(() => resolveNodeOptions({ ...base, tlsCert: certs.nodes.server.cert, tlsKey: junk })).toThrow(/--tls-key .* is not a PEM private key/)
    expect(() => resolveNodeOptions({ ...base, tlsCert: certs.nodes.server.cert, tlsKey: certs.nodes.server.key, tlsCa: junk })).toThrow(/--tls-ca .* is not a PEM certificate/)
    expect(() => resolveNodeOptions({ ...base, tlsCert: certs.nodes.server.cert })).toThrow(/--tls-cert was given without --tls-key/)
    expect(() => resolveNodeOptions({ ...base, tlsKey: certs.nodes.server.key })).toThrow(/--tls-key was given without --tls-cert/)
    expect(() => resolveNodeOptions({ ...base, tlsCa: certs.ca })).toThrow(/--tls-ca needs --tls-cert and --tls-key/)
    expect(() => resolveNodeOptions({ ...base, tlsCert: certs.nodes.server.cert, tlsKey: certs.nodes.peer.key })).toThrow(/--tls-key .* does not fit --tls-cert/)
  })
})

describe('listener limit options', () => {
  const base = { id: 'n1', port: 7001 }

  it('have defaults, and are validated naming the flag', () => {
    const o = resolveNodeOptions(base)
    expect(o).toMatchObject({ headersTimeoutMs: 10_000, bodyTimeoutMs: 30_000, idleTimeoutMs: 65_000, maxConnections: 10_000, maxConnectionsPerClient: 1024, maxInflightBytes: 256 * 1024 * 1024, tls: undefined })
    expect(() => resolveNodeOptions({ ...base, headersTimeoutMs: 5000, bodyTimeoutMs: 1000 })).toThrow(/bodyTimeoutMs \(1000\) must be at least headersTimeoutMs/)
    expect(() => resolveNodeOptions({ ...base, maxConnectionsPerClient: 0 })).toThrow(/--max-connections-per-client/)
    expect(() => resolveNodeOptions({ ...base, maxConnections: 10, maxConnectionsPerClient: 20 })).toThrow(/at most --max-connections/)
    expect(() => resolveNodeOptions({ ...base, maxBodyBytes: 4096, maxInflightBytes: 2048 })).toThrow(/--max-inflight-bytes, at least --max-body-bytes/)
    expect(() => resolveNodeOptions({ ...base, idleTimeoutMs: -1 })).toThrow(/--idle-timeout-ms/)
  })
})
