// Zerohop behind a real HAProxy started from examples/haproxy.cfg (harness/haproxy.ts), in front of a
// real 3-node cluster: the health checks and forwarding; which failed requests HAProxy retries (only
// what is safe to replay); the node's KV HTTP API through it with plain HTTP (undici); the SDK in
// load-balancer mode through it; and a node SIGKILLed under writes, after which every acknowledged
// write still reads back. Needs the haproxy binary: skipped without it, except with CI set, where a
// missing haproxy must fail the run rather than hide these tests.
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import path from 'node:path'
import { request } from 'undici'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import { connect, type Client, type ClientOptions } from '@zerohop/client'
import { Cluster, NodeProcess, freePorts, waitFor } from '../harness/cluster.js'
import { EXAMPLE_CONFIG, HAProxy, checkConfig, haproxyUnavailableReason, haproxyVersion, parseStatsCsv, type StatsRow } from '../harness/haproxy.js'

const unavailable = haproxyUnavailableReason()

describe('the harness reading HAProxy stats', () => {
  it('reads a check status without the "* " HAProxy puts before it while a check is running', () => {
    const rows = parseStatsCsv('# pxname,svname,status,check_status\nnodes,n1,DOWN,* L4CON\nnodes,n2,UP,L7OK\n')
    expect(rows.map((r) => [r.svname, r.status, r.check_status])).toEqual([['n1', 'DOWN', 'L4CON'], ['n2', 'UP', 'L7OK']])
  })
})

const text = (b: Uint8Array | string | undefined) => (b === undefined ? undefined : Buffer.from(b as Uint8Array).toString())

const serversOf = (cluster: Cluster) => cluster.nodes.map((n) => ({ name: n.id, port: n.port }))

/**
 * The SDK in load-balancer mode: every request goes to the one URL given (HAProxy), which picks a
 * node; the node coordinates. (The options go through a variable so this compiles before
 * `routing` is part of ClientOptions.)
 */
function connectThrough(lb: HAProxy, extra: Omit<ClientOptions, 'seeds'> = {}): Promise<Client<any>> {
  const options = { ...extra, seeds: [lb.url], routing: 'load-balancer' as const }
  return connect(options)
}

interface Answer {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** One plain HTTP request (undici), the whole body read. */
async function call(method: 'GET' | 'PUT' | 'DELETE', url: string, { body, headers = {} }: { body?: Uint8Array | string; headers?: Record<string, string> } = {}): Promise<Answer> {
  const res = await request(url, { method, body, headers, headersTimeout: 5000, bodyTimeout: 5000 })
  return { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
}

const header = (a: Answer, name: string): string | undefined => {
  const v = a.headers[name]
  return Array.isArray(v) ? v[0] : v
}

const errorCode = (a: Answer): string | undefined => (JSON.parse(a.body.toString()) as { error?: { code?: string } }).error?.code

/** The frontend's request counter moved by at least `min` while `fn` ran: the requests went through HAProxy. */
async function through<T>(lb: HAProxy, min: number, fn: () => Promise<T>): Promise<T> {
  const before = Number((await lb.frontend()).req_tot)
  const out = await fn()
  const after = Number((await lb.frontend()).req_tot)
  expect(after - before, 'requests HAProxy received').toBeGreaterThanOrEqual(min)
  return out
}

const counters = (row: StatsRow) => ({ retries: Number(row.wretr), redispatches: Number(row.wredis), connectionErrors: Number(row.econ), responseErrors: Number(row.eresp) })

if (unavailable && !process.env.CI) console.warn(`load-balancer tests skipped: ${unavailable}`)

describe.skipIf(unavailable !== undefined && !process.env.CI)(`behind HAProxy (${unavailable ? `unavailable: ${unavailable}` : haproxyVersion()})`, () => {
  // Reached only in CI when haproxy is missing: each test fails with the reason.
  beforeEach(() => {
    if (unavailable) throw new Error(`CI must run the load-balancer tests, but: ${unavailable}`)
  })

  it('examples/haproxy.cfg is valid as shipped (haproxy -c)', async () => {
    await checkConfig(EXAMPLE_CONFIG)
  })

  describe('health checks and forwarding', () => {
    let cluster: Cluster | undefined
    let lb: HAProxy | undefined

    beforeAll(async () => {
      if (unavailable) return
      cluster = await Cluster.start({ nodes: 3 })
      lb = await HAProxy.start({ servers: serversOf(cluster) })
    })

    afterAll(async () => {
      await lb?.close()
      await cluster?.close()
    })

    it('forwards /v1/health and /v1/ring, taking turns over the three nodes', async () => {
      const ids = new Set<string>()
      for (let i = 0; i < 6; i++) {
        const health = await call('GET', `${lb!.url}/v1/health`)
        expect(health.status).toBe(200)
        const body = JSON.parse(health.body.toString()) as { status: string; id: string }
        expect(body.status).toBe('ok')
        ids.add(body.id)
      }
      expect([...ids].sort()).toEqual(['n1', 'n2', 'n3'])
      const ring = await call('GET', `${lb!.url}/v1/ring`)
      expect(ring.status).toBe(200)
      expect(header(ring, 'x-zerohop-epoch')).toMatch(/^\d+-/)
      const members = (JSON.parse(ring.body.toString()) as { members: { id: string }[] }).members.map((m) => m.id).sort()
      expect(members).toEqual(['n1', 'n2', 'n3'])
    })

    it('forwards the path as sent: percent-encoded bytes, and a malformed escape too, reach the node untouched', async () => {
      // A path that is no endpoint: the node's 404 names the path it received.
      const sent = '/v1/not-an-endpoint/dir%2Fa%20b%20%C3%A9%FF%zz'
      const res = await call('GET', `${lb!.url}${sent}`)
      expect(res.status).toBe(404)
      expect(header(res, 'x-zerohop-epoch')).toBeDefined()
      expect(errorCode(res)).toBe('ZH_NOT_FOUND')
      expect(res.body.toString()).toContain(`no endpoint ${sent};`)
    })

    it('keeps a node DOWN while it is still starting (its /v1/health answers 503 "starting")', async () => {
      // A node whose other seed never answers stays "starting" (it refuses KV requests with 503
      // ZH_NOT_READY), and says so with a 503 on /v1/health; the example's check also looks at the body.
      const [port, dead] = await freePorts(2)
      const dataDir = path.join(cluster!.dir, 'starting')
      const starting = new NodeProcess('starting', port, dataDir, ['start', '--id', 'starting', '--port', String(port), '--data', dataDir,
        '--seeds', `http://127.0.0.1:${port},http://127.0.0.1:${dead}`, '--n', '3', '--partitions', '64', '--log-level', 'warn'])
      let lb2: HAProxy | undefined
      try {
        starting.start()
        const health = await waitFor(async () => {
          if (!starting.running) throw new Error(`the starting node exited: ${starting.output.slice(-2000)}`)
          const res = await call('GET', `${starting.url}/v1/health`)
          return res.status === 503 ? (JSON.parse(res.body.toString()) as { status: string }) : undefined
        }, { what: 'the starting node to answer /v1/health' })
        expect(health.status).toBe('starting')
        lb2 = await HAProxy.start({ servers: [...serversOf(cluster!), { name: 'starting', port }], expectUp: ['n1', 'n2', 'n3'] })
        const row = await lb2.waitForServer('starting', 'DOWN')
        expect(row.check_status).toMatch(/^L7/)
        for (let i = 0; i < 6; i++) {
          const res = await call('GET', `${lb2.url}/v1/health`)
          expect(JSON.parse(res.body.toString())).toMatchObject({ status: 'ok' })
        }
      } finally {
        await lb2?.close()
        await starting.kill()
      }
    })

    it('takes a SIGKILLed node out within seconds, and back in once it serves again', async () => {
      const killed = Date.now()
      await cluster!.node('n3').kill()
      const row = await lb!.waitForServer('n3', 'DOWN', 5000)
      const down = Date.now() - killed
      expect(row.check_status).toBe('L4CON')
      const ids = new Set<string>()
      for (let i = 0; i < 6; i++) {
        const res = await call('GET', `${lb!.url}/v1/health`)
        expect(res.status).toBe(200)
        ids.add((JSON.parse(res.body.toString()) as { id: string }).id)
      }
      expect([...ids].sort()).toEqual(['n1', 'n2'])
      const restarted = Date.now()
      await cluster!.restart('n3')
      await lb!.waitForServer('n3', 'UP', 5000)
      console.log(`haproxy: n3 DOWN ${down} ms after SIGKILL, UP ${Date.now() - restarted} ms after the restart began`)
    })
  })

  describe('retries: only what is safe to replay', () => {
    // Two stand-in nodes that pass the health check. "good" answers every other request; "flaky"
    // answers them according to `mode`: closes the connection without answering (a node that died
    // mid-request), or answers 503. Each records the requests it received.
    let mode: 'close' | '503' = 'close'
    const seen = { good: [] as string[], flaky: [] as string[] }
    const fakes: http.Server[] = []
    let lb: HAProxy | undefined

    beforeAll(async () => {
      if (unavailable) return
      const fake = (name: 'good' | 'flaky') => http.createServer((req, res) => {
        if (req.url === '/v1/health') return void res.writeHead(200, { 'content-type': 'application/json' }).end('{"status":"ok"}')
        seen[name].push(`${req.method} ${req.url}`)
        if (name === 'flaky' && mode === 'close') return void req.socket.destroy()
        req.resume()
        req.on('end', () => {
          if (name === 'flaky') res.writeHead(503, { 'content-type': 'application/json' }).end('{"error":{"code":"ZH_SHUTTING_DOWN","message":"stopping"}}')
          else if (req.method === 'GET') res.writeHead(200).end('value')
          else res.writeHead(204).end()
        })
      })
      for (const name of ['good', 'flaky'] as const) {
        const s = fake(name)
        await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve))
        fakes.push(s)
      }
      lb = await HAProxy.start({ servers: fakes.map((s, i) => ({ name: ['good', 'flaky'][i], port: (s.address() as AddressInfo).port })) })
    })

    afterAll(async () => {
      await lb?.close()
      await Promise.all(fakes.map((s) => new Promise((resolve) => s.close(resolve))))
    })

    for (const m of ['close', '503'] as const) {
      it(`a node that ${m === 'close' ? 'closes the connection without answering' : 'answers 503'}: GET is retried on another node, PUT and DELETE are not`, async () => {
        mode = m
        for (const method of ['GET', 'PUT', 'DELETE'] as const) {
          const urls = Array.from({ length: 4 }, (_, i) => `/v1/kv/${m}-${method}-${i}`)
          // The status, or 'closed' when HAProxy closed the client's connection without answering:
          // what it does, instead of a 502, when a request that was not the first on its client
          // connection gets no answer (as a server closing an idle keep-alive connection would).
          const answers: (number | 'closed')[] = []
          for (const u of urls) {
            answers.push(await call(method, `${lb!.url}${u}`, method === 'PUT' ? { body: 'v' } : {}).then(
              (a) => a.status,
              (err: { code?: string }) => {
                if (err.code !== 'UND_ERR_SOCKET') throw err
                return 'closed' as const
              },
            ))
          }
          const at = (who: string[], u: string) => who.filter((x) => x === `${method} ${u}`).length
          const atFlaky = urls.filter((u) => at(seen.flaky, u) > 0).length
          const atGood = urls.filter((u) => at(seen.good, u) > 0).length
          // Round robin over two servers: some of the four reached the flaky one.
          expect(atFlaky, `${method}: requests the flaky node saw`).toBeGreaterThan(0)
          if (method === 'GET') {
            expect(answers).toEqual([200, 200, 200, 200])
            expect(atGood).toBe(4)
          } else {
            // Never replayed: each request reached exactly one node, and the flaky node's failure
            // went back to the client (a 502 or a closed connection, or the node's own 503).
            for (const u of urls) expect(at(seen.flaky, u) + at(seen.good, u), u).toBe(1)
            expect(answers.filter((a) => (m === 'close' ? a === 502 || a === 'closed' : a === 503))).toHaveLength(atFlaky)
            expect(answers.filter((a) => a === 204)).toHaveLength(atGood)
          }
        }
      })
    }
  })

  describe('the KV API through HAProxy', () => {
    let cluster: Cluster | undefined
    let lb: HAProxy | undefined
    /** A zero-hop client straight to the nodes, to check what the HTTP requests did. */
    let direct: Client | undefined

    beforeAll(async () => {
      if (unavailable) return
      cluster = await Cluster.start({ nodes: 3 })
      lb = await HAProxy.start({ servers: serversOf(cluster) })
      direct = await connect({ seeds: cluster.seeds })
    })

    afterAll(async () => {
      await direct?.close()
      await lb?.close()
      await cluster?.close()
    })

    const kv = (key: string, query = '') => `${lb!.url}/v1/kv/${encodeURIComponent(key)}${query}`
    const octets = { 'content-type': 'application/octet-stream' }

    describe('plain HTTP (undici)', () => {
      it('PUT then GET a key that needs percent-encoding: the value comes back byte for byte, under the key the SDK knows', async () => {
        const key = 'dir/a b é'
        const value = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff, ...Buffer.from(' hello\r\n')])
        const put = await call('PUT', kv(key), { body: value, headers: octets })
        expect(put.status).toBe(204)
        expect(header(put, 'x-zerohop-context')).toMatch(/.+/)
        const got = await call('GET', kv(key))
        expect(got.status).toBe(200)
        expect(header(got, 'content-type')).toMatch(/^application\/octet-stream/)
        expect(header(got, 'x-zerohop-context')).toMatch(/.+/)
        expect(got.body.equals(value)).toBe(true)
        // The same key for the SDK: the path was decoded to the key's UTF-8 bytes, once.
        const res = await direct!.get(key)
        expect(Buffer.from(res.value as Uint8Array).equals(value)).toBe(true)
      })

      it('the context round-trips: a PUT with the context of the last PUT or GET replaces the value', async () => {
        const first = await call('PUT', kv('ctx'), { body: 'one', headers: octets })
        const second = await call('PUT', kv('ctx'), { body: 'two', headers: { ...octets, 'x-zerohop-context': header(first, 'x-zerohop-context')! } })
        expect(second.status).toBe(204)
        expect(header(second, 'x-zerohop-conflict')).toBeUndefined()
        const read = await call('GET', kv('ctx', '?r=3'))
        expect(read.status).toBe(200)
        expect(read.body.toString()).toBe('two')
        const third = await call('PUT', kv('ctx'), { body: 'three', headers: { ...octets, 'x-zerohop-context': header(read, 'x-zerohop-context')! } })
        expect(third.status).toBe(204)
        expect(header(third, 'x-zerohop-conflict')).toBeUndefined()
        const after = await call('GET', kv('ctx', '?r=3'))
        expect([after.status, after.body.toString()]).toEqual([200, 'three'])
      })

      it('two PUTs without a context leave two siblings (300); a PUT with their context resolves them to one value', async () => {
        expect((await call('PUT', kv('siblings'), { body: 'sibling-A', headers: octets })).status).toBe(204)
        const second = await call('PUT', kv('siblings'), { body: 'sibling-B', headers: octets })
        expect(second.status).toBe(204)
        expect(header(second, 'x-zerohop-conflict')).toBe('true')
        const json = await call('GET', kv('siblings', '?r=3'), { headers: { accept: 'application/json' } })
        expect(json.status).toBe(300)
        expect(header(json, 'content-type')).toMatch(/^application\/json/)
        const body = JSON.parse(json.body.toString()) as { siblings: string[]; context: string }
        expect(body.siblings.map((s) => Buffer.from(s, 'base64').toString()).sort()).toEqual(['sibling-A', 'sibling-B'])
        expect(body.context).toMatch(/.+/)
        const multipart = await call('GET', kv('siblings', '?r=3'))
        expect(multipart.status).toBe(300)
        expect(header(multipart, 'content-type')).toMatch(/^multipart\/mixed/)
        expect(multipart.body.toString()).toContain('sibling-A')
        expect(multipart.body.toString()).toContain('sibling-B')
        const resolved = await call('PUT', kv('siblings'), { body: 'resolved', headers: { ...octets, 'x-zerohop-context': body.context } })
        expect(resolved.status).toBe(204)
        expect(header(resolved, 'x-zerohop-conflict')).toBeUndefined()
        const after = await call('GET', kv('siblings', '?r=3'))
        expect([after.status, after.body.toString()]).toEqual([200, 'resolved'])
      })

      it('DELETE, then GET answers 404 ZH_KEY_NOT_FOUND', async () => {
        expect((await call('PUT', kv('doomed'), { body: 'x', headers: octets })).status).toBe(204)
        expect((await call('DELETE', kv('doomed'))).status).toBe(204)
        const gone = await call('GET', kv('doomed', '?r=3'))
        expect(gone.status).toBe(404)
        expect(errorCode(gone)).toBe('ZH_KEY_NOT_FOUND')
        expect((await direct!.get('doomed', { r: 3 })).found).toBe(false)
      })

      it('bad input (r or w not 1..N, a malformed percent-escape) is refused with 400 ZH_INVALID_ARGUMENT, and nothing is written', async () => {
        for (const q of ['?r=0', '?r=abc', '?r=4']) {
          const res = await call('GET', kv('bad-input', q))
          expect(res.status, q).toBe(400)
          expect(errorCode(res), q).toBe('ZH_INVALID_ARGUMENT')
        }
        for (const q of ['?w=0', '?w=abc', '?w=4']) {
          const res = await call('PUT', kv('bad-input', q), { body: 'must not land', headers: octets })
          expect(res.status, q).toBe(400)
          expect(errorCode(res), q).toBe('ZH_INVALID_ARGUMENT')
        }
        for (const raw of ['bad%zz', 'bad%', 'bad%C']) {
          const res = await call('PUT', `${lb!.url}/v1/kv/${raw}`, { body: 'must not land', headers: octets })
          expect(res.status, raw).toBe(400)
          expect(errorCode(res), raw).toBe('ZH_INVALID_ARGUMENT')
        }
        for (const key of ['bad-input', 'bad%zz', 'bad%', 'bad%C', 'bad']) expect((await direct!.get(key, { r: 3 })).found, key).toBe(false)
      })
    })

    describe('the SDK in load-balancer mode', () => {
      let db: Client | undefined

      beforeAll(async () => {
        if (unavailable) return
        db = await connectThrough(lb!)
      })

      afterAll(async () => {
        await db?.close()
      })

      it('put and get, and a put with the read context replaces the value; all through HAProxy', async () => {
        await through(lb!, 4, async () => {
          await db!.put('lb:greeting', 'hello')
          const res = await db!.get('lb:greeting')
          expect(res.found).toBe(true)
          expect(text(res.value)).toBe('hello')
          expect(res.siblings.map(text)).toEqual(['hello'])
          expect(typeof res.context).toBe('string')
          await db!.put('lb:greeting', 'hello, world', { context: res.context })
          expect(text((await db!.get('lb:greeting', { r: 3 })).value)).toBe('hello, world')
        })
        expect(text((await direct!.get('lb:greeting')).value)).toBe('hello, world')
      })

      it('a put without a context becomes a sibling; a put with the siblings\' context resolves them', () => through(lb!, 5, async () => {
        await db!.put('lb:blind', 'one')
        const second = await db!.put('lb:blind', 'two')
        expect(second.conflict).toBe(true)
        const conflicted = await db!.get('lb:blind', { r: 3 })
        expect(conflicted.value).toBeUndefined()
        expect(conflicted.siblings.map(text).sort()).toEqual(['one', 'two'])
        const resolved = await db!.put('lb:blind', 'one+two', { context: conflicted.context })
        expect(resolved.conflict).toBe(false)
        expect((await db!.get('lb:blind', { r: 3 })).siblings.map(text)).toEqual(['one+two'])
      }))

      it('a collection\'s merge function resolves siblings and the merge is written back', () => through(lb!, 5, async () => {
        const calls: string[][] = []
        const carts = db!.collection<string[]>({
          encoding: 'json',
          merge: (siblings) => {
            calls.push(siblings.flat().sort())
            return [...new Set(siblings.flat())].sort()
          },
        })
        const start = await carts.get('lb:cart')
        expect(start.found).toBe(false)
        await carts.put('lb:cart', ['apple'], { context: start.context })
        await carts.put('lb:cart', ['pear'], { context: start.context })
        const merged = await carts.get('lb:cart', { r: 3 })
        expect(calls).toEqual([['apple', 'pear']])
        expect(merged.merged).toBe(true)
        expect(merged.value).toEqual(['apple', 'pear'])
        const again = await carts.get('lb:cart', { r: 3 })
        expect(calls).toHaveLength(1)
        expect(again.merged).toBe(false)
        expect(again.siblings).toEqual([['apple', 'pear']])
      }))

      it('delete removes the value', () => through(lb!, 3, async () => {
        await db!.put('lb:doomed', 'x')
        await db!.delete('lb:doomed')
        const gone = await db!.get('lb:doomed', { r: 3 })
        expect(gone.found).toBe(false)
        expect(gone.siblings).toEqual([])
      }))
    })
  })

  describe('a node killed behind HAProxy under writes', () => {
    let cluster: Cluster | undefined
    let lb: HAProxy | undefined
    let db: Client | undefined

    afterEach(async () => {
      await db?.close()
      await lb?.close()
      await cluster?.close()
    })

    it('every acknowledged write reads back after a SIGKILL mid-load, and at least 90 % of the writes are acknowledged', async () => {
      cluster = await Cluster.start({ nodes: 3 })
      lb = await HAProxy.start({ servers: serversOf(cluster) })
      db = await connectThrough(lb, { timeoutMs: 2000 })

      // At most 600 writes or 20 s. The writes are paced at 100 a second, so the kill (at write 150,
      // about 1.5 s in) is followed by some 4.5 s of writes: through the time HAProxy still sends
      // requests to the dead node and well past the moment it holds it DOWN.
      const MAX_WRITES = 600
      const MAX_MS = 20_000
      const KILL_AT = 150
      const PACE_MS = 10
      const WORKERS = 4
      const acked = new Map<string, string>()
      const failures: { at: number; what: string }[] = []
      const start = Date.now()
      const before = counters(await lb.backend())
      const requestsBefore = Number((await lb.frontend()).req_tot)
      let next = 0
      let killedAt: number | undefined
      let killing: Promise<void> | undefined
      let downAt: number | undefined
      let done = false

      const writer = async () => {
        for (;;) {
          const i = next++
          if (i >= MAX_WRITES || Date.now() - start >= MAX_MS) return
          const slot = start + i * PACE_MS - Date.now()
          if (slot > 0) await new Promise((r) => setTimeout(r, slot))
          if (i === KILL_AT) {
            killedAt = Date.now()
            killing = cluster!.node('n3').kill()
          }
          const key = `load-${i}`
          const value = `value-${i}`
          try {
            await db!.put(key, value)
            acked.set(key, value)
          } catch (err) {
            const e = err as { code?: string; message: string }
            failures.push({ at: Date.now(), what: `${key}: ${e.code ?? ''} ${e.message}` })
          }
        }
      }
      // HAProxy's view of n3 while the writes run (ends with them).
      const watcher = (async () => {
        while (!done && downAt === undefined) {
          const row = await lb!.serverRows().then((rows) => rows.find((r) => r.svname === 'n3'), () => undefined)
          if (row?.status === 'DOWN') downAt = Date.now()
          else await new Promise((r) => setTimeout(r, 50))
        }
      })()
      await Promise.all(Array.from({ length: WORKERS }, writer))
      done = true
      await watcher
      await killing

      const attempted = acked.size + failures.length
      const after = counters(await lb.backend())
      const inWindow = failures.filter((f) => killedAt !== undefined && f.at >= killedAt && (downAt === undefined || f.at <= downAt)).length
      console.log(`kill behind haproxy: ${attempted} writes in ${Date.now() - start} ms, ${acked.size} acknowledged, ${failures.length} failed ` +
        `(${inWindow} between the SIGKILL and HAProxy marking n3 DOWN ${downAt && killedAt ? `${downAt - killedAt} ms later` : '(not seen)'}); ` +
        `haproxy retries ${after.retries - before.retries}, redispatches ${after.redispatches - before.redispatches}, ` +
        `connection errors ${after.connectionErrors - before.connectionErrors}, response errors ${after.responseErrors - before.responseErrors}` +
        (failures.length ? `; e.g. ${failures.slice(0, 3).map((f) => f.what).join(' | ')}` : ''))

      expect(killedAt, 'the kill happened during the writes').toBeDefined()
      expect(downAt, 'HAProxy marked n3 DOWN while the writes ran').toBeDefined()
      expect(attempted).toBe(MAX_WRITES)
      expect(acked.size / attempted).toBeGreaterThanOrEqual(0.9)
      // The SDK batches the calls in flight together (at most WORKERS at once), so at least this many requests.
      expect(Number((await lb.frontend()).req_tot) - requestsBefore, 'the writes went through HAProxy').toBeGreaterThanOrEqual(Math.ceil(attempted / WORKERS))

      // Every acknowledged write, read back at R=2 (n1 and n2 are alive) through HAProxy.
      const lost: string[] = []
      const keys = [...acked.keys()]
      for (let i = 0; i < keys.length; i += 20) {
        await Promise.all(keys.slice(i, i + 20).map(async (key) => {
          const res = await db!.get(key, { r: 2 })
          if (text(res.value) !== acked.get(key)) lost.push(`${key}: ${res.found ? `read ${res.siblings.map(text).join(', ')}` : 'not found'}`)
        }))
      }
      expect(lost).toEqual([])
    })
  })
})
