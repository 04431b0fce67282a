// Always writable, on real node processes: writes are accepted while replicas are down (the copies
// they miss wait as hints on live nodes) and reach those replicas once they return. The hint,
// anti-entropy and reaping tests run with a cluster secret: their node-to-node requests are signed.
import { rm } from 'node:fs/promises'
import { afterEach, describe, expect, it } from 'vitest'
import { connect, QuorumError, type Client } from '@zerohop/client'
import { Cluster, NO_BACKGROUND_REPAIR, sumMetric, waitFor, type NodeProcess } from '../harness/cluster.js'
import { sample } from '../../server/src/metrics.js'

const FAST = ['--gossip-interval-ms', '200', '--hint-interval-ms', '200']

const hintsFor = (nodes: NodeProcess[], target: string) => sumMetric(nodes, 'zerohop_hints', `target="${target}"`)

/** Keys (of `keys`) that some replica in the preference list does not hold. */
async function missing(db: Client, keys: string[]): Promise<string[]> {
  const out: string[] = []
  for (const k of keys) {
    const r = await db.explain(k)
    for (const rep of r.replicas) if (!rep.found) out.push(`${k}@${rep.id}`)
  }
  return out
}

/**
 * The shortest tombstone grace the node takes (hint TTL + 10 s), reaping and anti-entropy often; a
 * short drop delay, since reaping waits until every node has dropped handed-off data (also at start).
 */
const GRACE_MS = 10_500
const REAP = ['--tombstone-grace-ms', String(GRACE_MS), '--hint-ttl-ms', '500', '--reap-interval-ms', '200', '--ae-interval-ms', '200', '--drop-delay-ms', '200']

/** Per key, what each replica holds: 'gone' (nothing), 'tombstone', or the live values. */
async function states(db: Client, keys: string[]): Promise<Set<string>> {
  const out = new Set<string>()
  for (const k of keys) {
    for (const r of (await db.explain(k)).replicas) {
      if (r.error) out.add(`error: ${r.error}`)
      else out.add(r.tombstone ? 'tombstone' : r.found ? `live@${r.id}` : 'gone')
    }
  }
  return out
}

describe('always writable', () => {
  let cluster: Cluster | undefined
  let db: Client | undefined

  afterEach(async () => {
    await db?.close()
    db = undefined
    await cluster?.close()
    cluster = undefined
  })

  it('with one of 3 nodes dead, 1000 writes at W=2 succeed and leave hints; restarted, the node holds every key within 30 s', async () => {
    cluster = await Cluster.start({ secure: 'secret', nodes: 3, partitions: 64, args: FAST })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 })
    await cluster.node('n3').kill()
    const keys = Array.from({ length: 1000 }, (_, i) => `hinted${i}`)
    for (const k of keys) await db.put(k, `v-${k}`, { w: 2 })
    const live = [cluster.node('n1'), cluster.node('n2')]
    // With no spare the coordinator keeps the hint, sent without waiting: the last may still travel.
    await waitFor(async () => (await hintsFor(live, 'n3')) === 1000, { timeoutMs: 5000, what: '1000 hints held for n3' })
    // The client's own view of n3 recovers quickly; the node's answers must come from n3's storage.
    await cluster.restart('n3')
    const restarted = Date.now()
    await waitFor(async () => (await hintsFor(live, 'n3')) === 0, { timeoutMs: 30_000, intervalMs: 200, what: 'every hint to be delivered' })
    const delivered = Date.now() - restarted
    expect(await missing(db, keys)).toEqual([])
    expect(await sumMetric(live, 'zerohop_hints_delivered_total')).toBe(1000)
    console.log(`hinted handoff: 1000 hints delivered ${delivered} ms after the restart`)
  })

  it('with a single live node a W=1 write succeeds (W=2 fails clearly) and reaches every replica when the others return', async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, args: FAST })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000, timeoutMs: 1000 })
    await cluster.node('n2').kill()
    await cluster.node('n3').kill()
    await db.put('alone', 'written with one node', { w: 1 })
    expect(Buffer.from((await db.get('alone', { r: 1 })).value as Uint8Array).toString()).toBe('written with one node')
    const two = await db.put('alone2', 'v', { w: 2 }).catch((e) => e)
    expect(two).toBeInstanceOf(QuorumError)
    expect(two.required).toBe(2)
    await waitFor(async () => (await hintsFor([cluster!.node('n1')], 'n2')) >= 1 && (await hintsFor([cluster!.node('n1')], 'n3')) >= 1, { timeoutMs: 5000, what: 'n1 to hold hints for n2 and n3' })

    await cluster.restart('n2')
    await cluster.restart('n3')
    await waitFor(async () => (await missing(db!, ['alone'])).length === 0, { timeoutMs: 30_000, intervalMs: 200, what: 'the write to reach every replica' })
  })

  it('a sloppy quorum counts a fallback node for a dead replica; a strict write does not', async () => {
    cluster = await Cluster.start({ nodes: 4, partitions: 64, args: FAST })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000, timeoutMs: 1000 })
    const ring = db.ring
    const key = 'sloppy'
    const pref = ring.preferenceList(ring.partitionOf(Buffer.from(key))).map((m) => m.id)
    const [, victim] = pref
    const fallback = pref[3]
    await cluster.node(victim).kill()
    await db.put(key, 'v1', { w: 3 })
    expect(await hintsFor([cluster.node(fallback)], victim)).toBe(1)
    const strict = await db.put(key, 'v2', { w: 3, strict: true }).catch((e) => e)
    expect(strict).toBeInstanceOf(QuorumError)
    expect(strict.replicas.map((r: { id: string }) => r.id)).toContain(victim)
    await cluster.restart(victim)
    await waitFor(async () => (await missing(db!, [key])).length === 0, { timeoutMs: 30_000, intervalMs: 200, what: 'the hint to reach the restarted replica' })
  })

  it('a node whose data directory was wiped gets every key back by anti-entropy within 60 s', async () => {
    cluster = await Cluster.start({ secure: 'secret', nodes: 3, partitions: 64, args: [...FAST, '--ae-interval-ms', '100'] })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 })
    const keys = Array.from({ length: 1000 }, (_, i) => `ae${i}`)
    for (const k of keys) await db.put(k, `value-${k}-${'x'.repeat(100)}`, { w: 3 })
    const n3 = cluster.node('n3')
    await n3.stop()
    await rm(n3.dataDir, { recursive: true, force: true })
    await cluster.restart('n3')
    const restarted = Date.now()
    await waitFor(async () => (await missing(db!, keys)).length === 0, { timeoutMs: 60_000, intervalMs: 1000, what: 'anti-entropy to restore every key on n3' })
    const took = Date.now() - restarted
    // Exchanges run both ways: count what every node's exchanges repaired and moved.
    const repaired = await sumMetric(cluster.nodes, 'zerohop_ae_keys_repaired_total')
    const bytes = (await sumMetric(cluster.nodes, 'zerohop_ae_bytes_sent_total')) + (await sumMetric(cluster.nodes, 'zerohop_ae_bytes_received_total'))
    expect(repaired).toBeGreaterThanOrEqual(1000)
    console.log(`anti-entropy: 1000 keys (about ${Math.round((1000 * 120) / 1024)} KiB of keys and values) restored on a wiped node in ${took} ms; ${repaired} keys repaired, ${Math.round(bytes / 1024)} KiB counted by the exchanges (sent + received, all nodes)`)
  })

  it('deleted keys are reaped from every replica once all held the tombstone for the grace period, stay deleted, and can be written again', async () => {
    cluster = await Cluster.start({ secure: 'secret', nodes: 3, partitions: 64, args: [...FAST, ...REAP] })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 })
    const keys = Array.from({ length: 100 }, (_, i) => `reap${i}`)
    for (const k of keys) await db.put(k, `v-${k}`, { w: 3 })
    const started = Date.now()
    for (const k of keys) await db.delete(k, { w: 3 })
    // Well inside the grace period, every replica still holds every tombstone.
    const tombstones = await states(db, keys)
    expect(Date.now() - started, 'the deletes and reads outran the grace period').toBeLessThan(GRACE_MS)
    expect([...tombstones]).toEqual(['tombstone'])
    await waitFor(async () => [...(await states(db!, keys))].join() === 'gone', { timeoutMs: 30_000, intervalMs: 250, what: 'every replica to reap every tombstone' })
    const took = Date.now() - started
    expect(took).toBeGreaterThanOrEqual(GRACE_MS)
    expect(await sumMetric(cluster.nodes, 'zerohop_tombstones_reaped_total')).toBeGreaterThanOrEqual(300)
    // Let anti-entropy run at least ten more rounds per node (each compares every partition with a
    // peer, and exchanges any that differ): nothing comes back.
    const rounds = await Promise.all(cluster.nodes.map(async (n) => sample(await n.metrics(), 'zerohop_ae_rounds_total') ?? 0))
    await waitFor(async () => (await Promise.all(cluster!.nodes.map(async (n, i) => (sample(await n.metrics(), 'zerohop_ae_rounds_total') ?? 0) >= rounds[i] + 10))).every(Boolean), { timeoutMs: 20_000, intervalMs: 200, what: 'ten more anti-entropy rounds on every node' })
    expect([...(await states(db, keys))]).toEqual(['gone'])
    expect((await db.get(keys[0], { r: 3 })).found).toBe(false)
    // A reaped key takes new writes like a new key, on every replica.
    await db.put(keys[0], 'again', { w: 3 })
    expect((await db.explain(keys[0])).replicas.map((r) => r.siblings.map((v) => Buffer.from(v as Uint8Array).toString()))).toEqual([['again'], ['again'], ['again']])
    console.log(`reaping: 100 deleted keys gone from all 3 replicas ${took} ms after the deletes began (grace ${GRACE_MS} ms)`)
  })

  it('a replica that was down through the delete, the hint TTL and the grace period returns with the old values: the key stays deleted', async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, args: [...FAST, ...REAP] })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000, timeoutMs: 1000 })
    const keys = Array.from({ length: 50 }, (_, i) => `down${i}`)
    for (const k of keys) await db.put(k, `old-${k}`, { w: 3 })
    await cluster.node('n3').kill()
    const deleted = Date.now()
    for (const k of keys) await db.delete(k, { w: 2 })
    const live = [cluster.node('n1'), cluster.node('n2')]
    // The hints for n3 expire and the grace period passes; nothing may be reaped meanwhile.
    await waitFor(async () => (await sumMetric(live, 'zerohop_hints_expired_total')) >= 1 && Date.now() - deleted > GRACE_MS + 1000, { timeoutMs: 30_000, intervalMs: 200, what: 'the hints to expire and the grace period to pass' })
    expect(await sumMetric(live, 'zerohop_tombstones_reaped_total')).toBe(0)
    await cluster.restart('n3')
    // n3 holds the old values: anti-entropy gives it the tombstones (never the values to the others),
    // then every replica reaps.
    await waitFor(async () => [...(await states(db!, keys))].join() === 'gone', { timeoutMs: 45_000, intervalMs: 250, what: 'every replica to reap every tombstone after n3 returned' })
    const rounds = await sumMetric(cluster.nodes, 'zerohop_ae_rounds_total')
    await waitFor(async () => (await sumMetric(cluster!.nodes, 'zerohop_ae_rounds_total')) >= rounds + 30, { timeoutMs: 20_000, intervalMs: 200, what: 'thirty more anti-entropy rounds' })
    expect([...(await states(db, keys))]).toEqual(['gone'])
    for (const k of keys.slice(0, 5)) expect((await db.get(k, { r: 3 })).found).toBe(false)
  })

  it('kv679: a node that lost its disk coordinates new writes under a new actor, so none is silently dropped', async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, args: NO_BACKGROUND_REPAIR })
    db = await connect({ seeds: cluster.seeds, refreshIntervalMs: 1000 })
    const ring = db.ring
    let key = ''
    for (let i = 0; !key; i++) if (ring.preferenceList(ring.partitionOf(Buffer.from(`kv679-${i}`)))[0].id === 'n1') key = `kv679-${i}`
    // n1 coordinates (first of the preference list): its counter for this key reaches 3 everywhere.
    let context: string | undefined
    for (const v of ['v1', 'v2', 'v3']) context = (await db.put(key, v, { context, w: 3 })).context
    const n1 = cluster.node('n1')
    await n1.stop()
    await rm(n1.dataDir, { recursive: true, force: true })
    await cluster.restart('n1')
    // A blind write coordinated by the empty n1: with its old actor id it would mint counter 1, which
    // the other replicas have already seen, and they would drop it although it was acknowledged.
    const res = await db.put(key, 'after-disk-loss', { w: 3 })
    expect(res.siblings.map((b) => Buffer.from(b as Uint8Array).toString())).toEqual(['after-disk-loss'])
    const read = await db.get(key, { r: 3 })
    expect(read.siblings.map((b) => Buffer.from(b as Uint8Array).toString()).sort()).toEqual(['after-disk-loss', 'v3'])
  })
})
