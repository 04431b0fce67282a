// The SDK's membership view against a fake transport that serves /v1/ring: refresh on a newer epoch,
// no regression from a node that knows less, the watch, and the liveness view with its events.
import { afterEach, describe, expect, it } from 'vitest'
import { ClusterView, Paths, TransportError, type MemberState, type RingResponse } from '@zerohop/core'
import { RingWatch } from '../src/membership.js'
import { systemClock } from '../src/clock.js'
import type { Reply, SendOptions, Transport } from '../src/transport.js'
import { waitFor } from '../../../test/harness/wait.js'

function entry(id: string, patch: Partial<MemberState> = {}): MemberState {
  return { id, url: `http://${id}`, zone: 'z', weight: 1, status: 'normal', incarnation: 'i', version: 1, heartbeat: 0, since: 0, until: 0, removed: false, ready: '', ...patch }
}

function ringOf(members: MemberState[], down: string[] = []): RingResponse {
  const view = new ClusterView(members, { partitions: 16, n: 3 })
  return { epoch: view.epoch, partitions: 16, n: 3, spares: 2, members, down, limits: { maxKeyBytes: 1024, maxValueBytes: 1024, maxBodyBytes: 1 << 20 } }
}

/** Each node serves its own ring; `?wait=` requests are held until the node's ring changes. */
class RingTransport implements Transport {
  rings = new Map<string, RingResponse>()
  gets: string[] = []
  #waiters: (() => void)[] = []
  set(url: string, ring: RingResponse): void {
    this.rings.set(url, ring)
    const w = this.#waiters
    this.#waiters = []
    for (const f of w) f()
  }
  async get(url: string, path: string, options: SendOptions = {}): Promise<Reply> {
    this.gets.push(`${url}${path}`)
    const wait = new URL(path, 'http://x').searchParams.get('wait')
    if (wait !== null && wait === this.rings.get(url)?.epoch) {
      await new Promise<void>((resolve, reject) => {
        this.#waiters.push(resolve)
        options.signal?.addEventListener('abort', () => reject(new TransportError('aborted', 'aborted', { delivered: true })))
      })
    }
    const ring = this.rings.get(url)
    if (!ring) throw new TransportError('refused', 'connection refused', { delivered: false })
    return { status: 200, epoch: ring.epoch, body: Buffer.from(JSON.stringify(ring)) }
  }
  async post(): Promise<Reply> {
    throw new Error('not used')
  }
  async close(): Promise<void> {}
}

const options = { refreshIntervalMs: 60_000, refreshDebounceMs: 0, backoffMs: 50 }
const founders = ['a', 'b', 'c'].map((id) => entry(id))
let open: RingWatch[] = []
afterEach(() => {
  for (const m of open) m.close()
  open = []
})

async function connected(t: RingTransport): Promise<RingWatch> {
  const m = await RingWatch.connect(t, ['http://dead', 'http://a'], systemClock, Date.now() + 1000, options)
  open.push(m)
  return m
}

describe('RingWatch', () => {
  it('connect skips a dead seed and takes the ring of the first that answers', async () => {
    const t = new RingTransport()
    t.set('http://a', ringOf(founders))
    const m = await connected(t)
    expect([...m.view.members.keys()]).toEqual(['a', 'b', 'c'])
    expect(t.gets[0]).toBe(`http://dead${Paths.ring}`)
  })

  it('a response naming other rings refreshes from that node and emits ring; the same rings at another version do not', async () => {
    const t = new RingTransport()
    const old = ringOf(founders)
    for (const u of ['http://a', 'http://b', 'http://c']) t.rings.set(u, old)
    const m = await connected(t)
    const rings: string[] = []
    m.on('ring', (v) => rings.push(v.epoch))
    const joined = ringOf([...founders, entry('d', { status: 'joining', since: 5 })])
    t.rings.set('http://b', joined)
    m.observe(joined.epoch, 'http://b')
    await waitFor(() => rings.length === 1, { timeoutMs: 2000, intervalMs: 5 })
    expect(m.view.epoch).toBe(joined.epoch)
    expect(m.view.transition).toBe(true)
    const before = t.gets.length
    const digest = m.view.epoch.split('-')[1]
    m.observe(`99-${digest}`, 'http://a')
    expect(t.gets.length).toBe(before)
  })

  it('never goes back: a refresh from a node that knows less keeps what the SDK knew', async () => {
    const t = new RingTransport()
    const joined = ringOf([...founders, entry('d', { status: 'joining', since: 5 })])
    t.set('http://a', joined)
    const m = await connected(t)
    t.rings.set('http://c', ringOf(founders))
    await m.refresh('http://c')
    expect(m.view.epoch).toBe(joined.epoch)
    expect(m.view.members.has('d')).toBe(true)
  })

  it('the watch hears a ring change without any request traffic', async () => {
    const t = new RingTransport()
    for (const u of ['http://a', 'http://b', 'http://c']) t.set(u, ringOf(founders))
    const m = await connected(t)
    await waitFor(() => t.gets.some((g) => g.includes('?wait=')), { timeoutMs: 2000, intervalMs: 5 })
    const joined = ringOf([...founders, entry('d', { status: 'joining', since: 5 })])
    for (const u of ['http://a', 'http://b', 'http://c']) t.set(u, joined)
    await waitFor(() => m.view.epoch === joined.epoch, { timeoutMs: 2000, intervalMs: 5 })
  })

  it('refused connections put a node in back-off (node-down); an answer brings it back (node-up)', async () => {
    const t = new RingTransport()
    t.set('http://a', ringOf(founders))
    const m = await connected(t)
    const events: string[] = []
    m.on('node-down', (e) => events.push(`down ${e.id}`))
    m.on('node-up', (e) => events.push(`up ${e.id}`))
    const b = { id: 'b', url: 'http://b', weight: 1 }
    expect(m.up('b')).toBe(true)
    m.failed(b, { id: 'b', url: 'http://b', cause: 'refused', message: 'refused' })
    expect(m.up('b')).toBe(false)
    expect(events).toEqual(['down b'])
    // An HTTP 4xx is the node answering: not a liveness failure.
    m.failed({ id: 'c', url: 'http://c', weight: 1 }, { id: 'c', url: 'http://c', cause: 'http', status: 409, message: 'stale' })
    expect(m.up('c')).toBe(true)
    // The back-off expires by itself: the node is asked again.
    await waitFor(() => m.up('b'), { timeoutMs: 2000, intervalMs: 5 })
    m.ok(b)
    expect(events).toEqual(['down b', 'up b'])
  })

  it('a node the cluster holds down is skipped until it answers the SDK itself', async () => {
    const t = new RingTransport()
    t.set('http://a', ringOf(founders, ['c']))
    const m = await connected(t)
    expect(m.up('c')).toBe(false)
    m.ok({ id: 'c', url: 'http://c', weight: 1 })
    expect(m.up('c')).toBe(true)
  })
})

describe('RingWatch.serving (what connect() waits for after the ring)', () => {
  /** Each node's GET /v1/health: serving, starting, stopping, or refusing connections. */
  class HealthTransport extends RingTransport {
    health = new Map<string, 'ok' | 'starting' | 'stopping' | 'refused'>()
    override async get(url: string, path: string, options: SendOptions = {}): Promise<Reply> {
      if (path !== Paths.health) return super.get(url, path, options)
      this.gets.push(`${url}${path}`)
      const h = this.health.get(url) ?? 'refused'
      if (h === 'refused') throw new TransportError('refused', 'connection refused', { delivered: false })
      return { status: h === 'ok' ? 200 : 503, body: Buffer.from(JSON.stringify({ status: h })) }
    }
  }

  function watch(health: Record<string, 'ok' | 'starting' | 'stopping' | 'refused'>): { m: RingWatch; t: HealthTransport } {
    const t = new HealthTransport()
    for (const [id, h] of Object.entries(health)) t.health.set(`http://${id}`, h)
    const m = RingWatch.from(t, systemClock, ringOf(founders), options)
    open.push(m)
    return { m, t }
  }

  it('waits for a starting member until every partition has W serving replicas', async () => {
    const { m, t } = watch({ a: 'ok', b: 'starting', c: 'refused' })
    setTimeout(() => t.health.set('http://b', 'ok'), 150)
    const started = Date.now()
    await m.serving(2, Date.now() + 5000)
    expect(Date.now() - started).toBeGreaterThanOrEqual(140)
    expect(Date.now() - started).toBeLessThan(1000)
  })

  it('does not wait for members that are down or stopping: they would not come', async () => {
    const { m } = watch({ a: 'ok', b: 'stopping', c: 'refused' })
    const started = Date.now()
    await m.serving(2, Date.now() + 5000)
    expect(Date.now() - started).toBeLessThan(500)
  })

  it('resolves at the deadline if members are still starting (calls then wait for them themselves)', async () => {
    const { m } = watch({ a: 'ok', b: 'starting', c: 'starting' })
    const started = Date.now()
    await m.serving(2, Date.now() + 300)
    expect(Date.now() - started).toBeGreaterThanOrEqual(290)
    expect(Date.now() - started).toBeLessThan(1500)
  })
})
