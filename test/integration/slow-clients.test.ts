// Slow or stalled clients against a real node process started with small listener limits: a body or
// headers sent a byte at a time are cut off with 408 within the limit while the node serves others;
// thousands of idle connections from one address are held to the per-client limit and do not keep the
// SDK out; bodies over the in-flight budget get 503 ZH_OVERLOADED, and their bytes come back when
// they are answered or aborted. Raw sockets on 127.0.0.1, and 127.0.0.2/127.0.0.3 as other clients
// (Linux routes all of 127/8 to lo).
import net from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Client } from '@zerohop/client'
import { ErrorCodes } from '@zerohop/core'
import { Cluster, waitFor, type NodeProcess } from '../harness/cluster.js'

/** --headers-timeout-ms; the whole request has BODY_MS (--body-timeout-ms), so each cut-off shows which limit made it. */
const LIMIT_MS = 1000
const BODY_MS = 2000
const PER_CLIENT = 50
const MIB = 1024 * 1024
const MAX_BODY = MIB
const INFLIGHT = 4 * MIB
/** A large body: under --max-body-bytes, four fit in the in-flight budget, five do not. */
const LARGE = 1_000_000

const LIMITS = ['--max-connections-per-client', String(PER_CLIENT), '--max-body-bytes', String(MAX_BODY), '--max-inflight-bytes', String(INFLIGHT)]

let cluster: Cluster
let node: NodeProcess
let db: Client
const sockets = new Set<net.Socket>()

/** One node with the limits (its timeouts apart) and an SDK client of it. */
async function startNode(bodyTimeoutMs: number, headersTimeoutMs = LIMIT_MS): Promise<void> {
  cluster = await Cluster.start({ nodes: 1, n: 1, args: [...LIMITS, '--headers-timeout-ms', String(headersTimeoutMs), '--body-timeout-ms', String(bodyTimeoutMs)] })
  node = cluster.nodes[0]
  db = await connect({ seeds: cluster.seeds, r: 1, w: 1, connections: 4 })
}

async function stopNode(): Promise<void> {
  for (const s of sockets) s.destroy()
  await db?.close()
  await cluster?.close()
}

/** A raw connection to the node: what it has received so far, and when it closed. */
interface Raw {
  socket: net.Socket
  received: () => string
  closed: Promise<number>
  isClosed: () => boolean
}

function open(localAddress = '127.0.0.1'): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port: node.port, localAddress })
    sockets.add(socket)
    let data = ''
    let closedAt = 0
    socket.on('data', (d) => (data += d.toString()))
    socket.on('error', () => {})
    const closed = new Promise<number>((r) => socket.once('close', () => {
      sockets.delete(socket)
      r((closedAt = Date.now()))
    }))
    socket.once('connect', () => resolve({ socket, received: () => data, closed, isClosed: () => closedAt > 0 }))
    socket.once('error', reject)
  })
}

/** The status line and the parsed JSON error body of a raw HTTP answer. */
function parse(raw: string): { status: number; code?: string } {
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(raw)?.[1])
  const body = raw.slice(raw.indexOf('\r\n\r\n') + 4)
  try {
    return { status, code: (JSON.parse(body) as { error?: { code?: string } }).error?.code }
  } catch {
    return { status }
  }
}

/** Write `bytes` one at a time, every `everyMs`, until the socket closes or they are all sent. */
function dribble(raw: Raw, bytes: string, everyMs: number): void {
  let i = 0
  const timer = setInterval(() => {
    if (raw.isClosed() || i >= bytes.length) return clearInterval(timer)
    raw.socket.write(bytes[i++])
  }, everyMs)
  void raw.closed.then(() => clearInterval(timer))
}

/** The SDK writes and reads while something else goes on. */
async function sdkWorks(key: string): Promise<void> {
  await db.put(key, `v-${key}`)
  expect(Buffer.from((await db.get(key)).value as Uint8Array).toString()).toBe(`v-${key}`)
}

describe('slow clients are cut off', () => {
  beforeAll(() => startNode(BODY_MS))
  afterAll(stopNode)

  it('a body sent a byte every 200 ms gets 408 ZH_REQUEST_TIMEOUT within --body-timeout-ms, and the node serves others meanwhile', async () => {
    const raw = await open()
    const started = Date.now()
    raw.socket.write(`PUT /v1/kv/slow-body HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: 100\r\n\r\n`)
    dribble(raw, 'x'.repeat(100), 200)
    expect(100 * 200).toBeGreaterThan(BODY_MS * 2)
    // Other clients are served while the slow one is held.
    let served = 0
    while (!raw.isClosed() && served < 20) {
      await sdkWorks(`meanwhile-${served++}`)
    }
    const closedAt = await Promise.race([raw.closed, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('not cut off after 5 s')), 5000))])
    const took = closedAt - started
    expect(parse(raw.received())).toEqual({ status: 408, code: ErrorCodes.REQUEST_TIMEOUT })
    // node:http checks its timers every 500 ms (half the shorter timeout).
    expect(took).toBeGreaterThanOrEqual(BODY_MS - 50)
    expect(took).toBeLessThan(BODY_MS + 1500)
    expect(served).toBeGreaterThan(0)
    console.log(`slow body cut off after ${took} ms (--body-timeout-ms ${BODY_MS}); ${served} SDK put+get meanwhile`)
    await expect(db.get('slow-body').then((r) => r.found)).resolves.toBe(false)
  })

  it('headers sent a byte every 200 ms get 408 within --headers-timeout-ms', async () => {
    const raw = await open()
    const started = Date.now()
    dribble(raw, `GET /v1/ring HTTP/1.1\r\nhost: x\r\nx-filler: ${'y'.repeat(80)}\r\n\r\n`, 200)
    const closedAt = await Promise.race([raw.closed, new Promise<number>((_, reject) => setTimeout(() => reject(new Error('not cut off after 5 s')), 5000))])
    expect(parse(raw.received())).toEqual({ status: 408, code: ErrorCodes.REQUEST_TIMEOUT })
    // The headers timeout, not the whole request's.
    const took = closedAt - started
    expect(took).toBeGreaterThanOrEqual(LIMIT_MS - 50)
    expect(took).toBeLessThan(BODY_MS)
    console.log(`slow headers cut off after ${took} ms (--headers-timeout-ms ${LIMIT_MS})`)
  })
})

describe('connections per client', () => {
  // Connecting 2000 takes about a second: a longer headers timeout, so that no admitted connection is
  // closed (and its slot freed) before they are all counted.
  const HEADERS_MS = 5000
  beforeAll(() => startNode(HEADERS_MS, HEADERS_MS))
  afterAll(stopNode)

  it('2000 idle connections from 127.0.0.2: at most the per-client limit stay open (until the headers timeout), the rest get 503 ZH_OVERLOADED, and the SDK still reads and writes', async () => {
    const TOTAL = 2000
    const raws: Raw[] = []
    // In batches, so the listen backlog never overflows into SYN retransmits.
    for (let i = 0; i < TOTAL; i += 200) {
      raws.push(...await Promise.all(Array.from({ length: Math.min(200, TOTAL - i) }, () => open('127.0.0.2'))))
    }
    try {
      await sdkWorks('while-flooded')
      const refused = await waitFor(() => {
        const n = raws.filter((r) => r.isClosed()).length
        return n >= TOTAL - PER_CLIENT ? n : 0
      }, { timeoutMs: 10_000, what: 'connections over the limit to be closed' })
      const stillOpen = raws.filter((r) => !r.isClosed()).length
      expect(stillOpen).toBe(PER_CLIENT)
      expect(refused).toBe(TOTAL - PER_CLIENT)
      const answered = raws.filter((r) => r.received().length > 0).map((r) => parse(r.received()))
      expect(answered.filter((a) => a.status === 503 && a.code === ErrorCodes.OVERLOADED).length).toBe(TOTAL - PER_CLIENT)
      await sdkWorks('while-flooded-2')
      // The admitted ones never sent a byte: --headers-timeout-ms closes them too.
      await waitFor(() => raws.every((r) => r.isClosed()), { timeoutMs: HEADERS_MS * 3, what: 'the silent connections to be closed by the headers timeout' })
    } finally {
      for (const r of raws) r.socket.destroy()
    }
    // Once they are gone, the address may connect again.
    const again = await waitFor(async () => {
      const r = await open('127.0.0.2')
      r.socket.write('GET /v1/health HTTP/1.1\r\nhost: x\r\n\r\n')
      const ok = await waitFor(() => (r.received().includes('\r\n\r\n') ? r.received() : undefined), { timeoutMs: 2000, what: 'an answer' }).catch(() => '')
      r.socket.destroy()
      return parse(ok).status === 200
    }, { timeoutMs: 10_000, what: '127.0.0.2 to be served again' })
    expect(again).toBe(true)
  })
})

describe('bytes of bodies in flight', () => {
  // The held bodies must outlive the steps of the test: a body timeout longer than they take.
  beforeAll(() => startNode(30_000))
  afterAll(stopNode)

  /** Start a PUT of a LARGE body from 127.0.0.3 and send only its first bytes. */
  async function startLarge(key: string): Promise<Raw> {
    const raw = await open('127.0.0.3')
    raw.socket.write(`PUT /v1/kv/${key} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${LARGE}\r\n\r\n`)
    raw.socket.write(Buffer.alloc(1000, 1))
    return raw
  }

  async function answer(raw: Raw): Promise<{ status: number; code?: string }> {
    const text = await waitFor(() => (raw.received().includes('\r\n\r\n') ? raw.received() : undefined), { timeoutMs: 5000, what: 'an answer' })
    return parse(text)
  }

  /** A whole LARGE PUT; its status. */
  async function putLarge(key: string): Promise<number> {
    const raw = await open('127.0.0.3')
    raw.socket.write(`PUT /v1/kv/${key} HTTP/1.1\r\nhost: x\r\ncontent-type: application/octet-stream\r\ncontent-length: ${LARGE}\r\nconnection: close\r\n\r\n`)
    raw.socket.write(Buffer.alloc(LARGE, 2))
    const { status } = await answer(raw)
    raw.socket.destroy()
    return status
  }

  it('bodies over --max-inflight-bytes get 503 ZH_OVERLOADED while a small request works; their bytes come back when answered or aborted', async () => {
    const held: Raw[] = []
    for (let i = 0; i < 4; i++) held.push(await startLarge(`large-${i}`))
    // Make sure the four are being read (reserved) before the next ones arrive.
    await sdkWorks('before-over')
    const over = await Promise.all([0, 1, 2].map((i) => startLarge(`over-${i}`)))
    for (const r of over) expect(await answer(r)).toEqual({ status: 503, code: ErrorCodes.OVERLOADED })
    // Nothing was written for them.
    for (let i = 0; i < 3; i++) expect((await db.get(`over-${i}`)).found).toBe(false)
    // A small request still fits.
    await sdkWorks('small-while-full')
    // Two are answered (the rest of the body sent), two aborted.
    held[0].socket.write(Buffer.alloc(LARGE - 1000, 1))
    held[1].socket.write(Buffer.alloc(LARGE - 1000, 1))
    expect((await answer(held[0])).status).toBe(204)
    expect((await answer(held[1])).status).toBe(204)
    held[2].socket.destroy()
    held[3].socket.destroy()
    await Promise.all([held[2].closed, held[3].closed])
    for (const r of over) r.socket.destroy()
    // Four whole large bodies at once fit again only if every byte came back.
    const statuses = await waitFor(async () => {
      const s = await Promise.all([0, 1, 2, 3].map((i) => putLarge(`after-${i}`)))
      return s.every((x) => x === 204) && s
    }, { timeoutMs: 5000, what: 'four large bodies to be accepted together' })
    expect(statuses).toEqual([204, 204, 204, 204])
    for (const r of held) r.socket.destroy()
  })
})
