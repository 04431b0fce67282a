// Faults on real processes: SIGKILL, SIGSTOP and restarts on the same LevelDB directory. With N=3 on
// 3 nodes every key lives on every node, so each fault below hits a replica of every key.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { connect, QuorumError, AbortError, TransportError, UndiciTransport, type Client } from '@zerohop/client'
import { request } from 'undici'
import { Cluster, waitFor, NO_BACKGROUND_REPAIR } from '../harness/cluster.js'

async function actorOf(url: string): Promise<string> {
  const res = await request(`${url}/v1/health`)
  return ((await res.body.json()) as { actor: string }).actor
}

const text = (b: Uint8Array | string | undefined) => (b === undefined ? undefined : Buffer.from(b as Uint8Array).toString())

let cluster: Cluster
let db: Client

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3, args: NO_BACKGROUND_REPAIR })
  db = await connect({ seeds: cluster.seeds, timeoutMs: 1500 })
})

afterEach(async () => {
  // Every test leaves the cluster whole for the next one.
  for (const n of cluster.nodes) {
    if (n.paused) n.resume()
    if (!n.running) await cluster.restart(n.id)
  }
})

afterAll(async () => {
  await db?.close()
  await cluster?.close()
})

describe('faults', () => {
  it('read repair: a replica that missed a write is repaired by a later read', async () => {
    await cluster.node('n3').kill()
    await db.put('repair-me', 'fresh')
    await cluster.restart('n3')
    const before = await db.explain('repair-me')
    expect(before.replicas.find((r) => r.id === 'n3')).toMatchObject({ found: false, digest: null })
    const res = await db.get('repair-me')
    expect(text(res.value)).toBe('fresh')
    const after = await waitFor(async () => {
      const info = await db.explain('repair-me')
      return info.replicas.every((r) => r.found && r.digest === info.replicas[0].digest) ? info : undefined
    }, { timeoutMs: 5000, what: 'n3 to be repaired' })
    expect(after.replicas.find((r) => r.id === 'n3')!.siblings.map(text)).toEqual(['fresh'])
  })

  it('read repair is off when readRepair: false (the stale replica stays stale)', async () => {
    const plain = await connect({ seeds: cluster.seeds, readRepair: false })
    try {
      await cluster.node('n2').kill()
      await plain.put('no-repair', 'v')
      await cluster.restart('n2')
      for (let i = 0; i < 3; i++) expect(text((await plain.get('no-repair', { r: 3 })).value)).toBe('v')
      const info = await plain.explain('no-repair')
      expect(info.replicas.find((r) => r.id === 'n2')!.found).toBe(false)
    } finally {
      await plain.close()
    }
  })

  it('with one of three nodes killed, R=2 and W=2 still succeed', async () => {
    await db.put('survivor', 'v1', { w: 3 })
    await cluster.node('n1').kill()
    const read = await db.get('survivor')
    expect(text(read.value)).toBe('v1')
    await db.put('survivor', 'v2', { context: read.context })
    expect(text((await db.get('survivor')).value)).toBe('v2')
    await db.put('survivor-new', 'fresh')
    expect(text((await db.get('survivor-new')).value)).toBe('fresh')
  })

  it('with two of three nodes killed, get and put reject with QuorumError naming each cause', async () => {
    await cluster.node('n2').kill()
    await cluster.node('n3').kill()
    const getErr = await db.get('anything').catch((e) => e)
    expect(getErr).toBeInstanceOf(QuorumError)
    expect(getErr.code).toBe('ZH_QUORUM_NOT_MET')
    expect(getErr.required).toBe(2)
    expect(getErr.succeeded).toBeLessThanOrEqual(1)
    expect(getErr.replicas.map((r: { id: string }) => r.id).sort()).toEqual(['n2', 'n3'])
    for (const r of getErr.replicas) expect(r.cause).toBe('refused')
    const putErr = await db.put('anything', 'v').catch((e) => e)
    expect(putErr).toBeInstanceOf(QuorumError)
    expect(putErr.replicas.map((r: { id: string }) => r.id).sort()).toEqual(['n2', 'n3'])
    // R=1 / W=1 still work with one node.
    await db.put('lonely', 'v', { w: 1 })
    expect(text((await db.get('lonely', { r: 1 })).value)).toBe('v')
  })

  it('a paused (SIGSTOP) replica does not block R=2/W=2; two paused time out with cause "timeout"', async () => {
    await db.put('paused', 'v0', { w: 3 })
    cluster.node('n3').pause()
    const t0 = Date.now()
    const read = await db.get('paused')
    expect(text(read.value)).toBe('v0')
    await db.put('paused', 'v1', { context: read.context })
    expect(Date.now() - t0).toBeLessThan(1500)
    cluster.node('n2').pause()
    const err = await db.get('paused', { timeoutMs: 300 }).catch((e) => e)
    expect(err).toBeInstanceOf(QuorumError)
    expect(err.replicas.map((r: { id: string; cause: string }) => [r.id, r.cause]).sort()).toEqual([['n2', 'timeout'], ['n3', 'timeout']])
  })

  it('an AbortSignal cancels requests in flight', async () => {
    // Record how each request ends: a request cancelled by the signal rejects with an abort error at
    // once, not at its 10 s timeout.
    const ended: string[] = []
    class Recording extends UndiciTransport {
      override async post(...args: Parameters<UndiciTransport['post']>) {
        try {
          return await super.post(...args)
        } catch (err) {
          ended.push(err instanceof TransportError ? err.kind : (err as Error).name)
          throw err
        }
      }
    }
    const tracked = await connect({ seeds: cluster.seeds, transport: new Recording() })
    try {
      cluster.node('n2').pause()
      cluster.node('n3').pause()
      const ac = new AbortController()
      const pending = tracked.get('abortable', { timeoutMs: 10_000, signal: ac.signal })
      setTimeout(() => ac.abort(), 50)
      const t0 = Date.now()
      await expect(pending).rejects.toBeInstanceOf(AbortError)
      expect(Date.now() - t0).toBeLessThan(2000)
      await waitFor(() => ended.filter((e) => /abort/i.test(e)).length >= 2, { timeoutMs: 2000, what: 'the requests to the paused nodes to be cancelled' })
    } finally {
      await tracked.close()
    }
  })

  it('a restarted node still has its data (SIGKILL, then restart on the same directory)', async () => {
    await db.put('durable', 'kept', { w: 3 })
    const before = await db.explain('durable')
    await cluster.node('n2').kill()
    await cluster.restart('n2')
    const after = await db.explain('durable')
    const n2 = after.replicas.find((r) => r.id === 'n2')!
    expect(n2.found).toBe(true)
    expect(n2.siblings.map(text)).toEqual(['kept'])
    expect(n2.digest).toBe(before.replicas.find((r) => r.id === 'n2')!.digest)
  })

  it('an unclean stop (SIGKILL) takes a new incarnation (actor id) at restart; a graceful one keeps it', async () => {
    const n2 = cluster.node('n2')
    const before = await actorOf(n2.url)
    await n2.stop()
    await cluster.restart('n2')
    expect(await actorOf(n2.url)).toBe(before)
    await n2.kill()
    await cluster.restart('n2')
    const after = await actorOf(n2.url)
    expect(after).not.toBe(before)
    expect(after.startsWith('n2~')).toBe(true)
  })

  it('a graceful stop (SIGTERM) exits 0 and keeps the data', async () => {
    await db.put('graceful', 'kept', { w: 3 })
    const n1 = cluster.node('n1')
    await n1.stop()
    expect(n1.child!.exitCode).toBe(0)
    await cluster.restart('n1')
    expect((await db.explain('graceful')).replicas.find((r) => r.id === 'n1')!.siblings.map(text)).toEqual(['kept'])
  })
})
