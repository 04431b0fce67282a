// A new cluster is writable from its first second: connect() to nodes that are still starting, with
// one of them SIGKILLed at birth or later, and every write succeeds; founding seeds serve without a
// seed that died at birth (or never started), and that seed joins when it does start.
import { afterEach, describe, expect, it } from 'vitest'
import { request } from 'undici'
import { connect, type Client } from '@zerohop/client'
import { Cluster, waitFor, type NodeProcess } from '../harness/cluster.js'

const KEYS = 300
/** Writes in flight at once: enough that some meet a node as it starts or dies. */
const PARALLEL = 8

async function serves(n: NodeProcess): Promise<boolean> {
  const res = await request(`${n.url}/v1/health`, { headersTimeout: 1000, bodyTimeout: 1000 })
  await res.body.dump()
  return res.statusCode === 200
}

/** Put `keys` at W=2, PARALLEL at a time; the failures, as messages. */
async function writeAll(db: Client, keys: string[]): Promise<string[]> {
  const failures: string[] = []
  let next = 0
  await Promise.all(Array.from({ length: PARALLEL }, async () => {
    while (next < keys.length) {
      const k = keys[next++]
      try {
        await db.put(k, `v-${k}`, { w: 2 })
      } catch (err) {
        failures.push(`${k}: ${(err as Error).message}`)
      }
    }
  }))
  return failures
}

/** Read `keys` at R=2; the keys that did not read back their value. */
async function unreadable(db: Client, keys: string[]): Promise<string[]> {
  const bad: string[] = []
  for (const k of keys) {
    try {
      const r = await db.get(k, { r: 2 })
      if (!r.found || Buffer.from(r.value as Uint8Array).toString() !== `v-${k}`) bad.push(`${k}: ${r.found ? 'wrong value' : 'not found'}`)
    } catch (err) {
      bad.push(`${k}: ${(err as Error).message}`)
    }
  }
  return bad
}

/** Every running node lists `id` as a normal member, and all agree on the rings. */
async function member(nodes: NodeProcess[], id: string): Promise<boolean> {
  const rings = await Promise.all(nodes.filter((n) => n.running).map((n) => n.ring()))
  return rings.every((r) => r.members.find((m) => m.id === id)?.status === 'normal') && new Set(rings.map((r) => r.epoch.split('-')[1])).size === 1
}

describe('writable from the first second', () => {
  let cluster: Cluster | undefined
  let db: Client | undefined

  afterEach(async () => {
    await db?.close()
    db = undefined
    await cluster?.close()
    cluster = undefined
  })

  // Three moments to lose a node: at birth (before it could announce itself), as the first node
  // serves, and right after connect() resolved, before the first write.
  const rounds = [
    { victim: 'n3', when: 'at birth' },
    { victim: 'n1', when: 'as the first node serves' },
    { victim: 'n2', when: 'after connect() resolved' },
  ] as const

  it('3 fresh nodes, connect() at once, one SIGKILLed: every W=2 write succeeds and reads back, in each of 3 rounds', async () => {
    const figures: string[] = []
    for (const [i, { victim, when }] of rounds.entries()) {
      cluster = await Cluster.start({ nodes: 3, partitions: 64, wait: false })
      const started = Date.now()
      const victimNode = cluster.node(victim)
      const connecting = connect({ seeds: cluster.seeds, timeoutMs: 2000, connectTimeoutMs: 15_000 })
      connecting.catch(() => undefined)
      if (when === 'at birth') await victimNode.kill()
      if (when === 'as the first node serves') {
        await waitFor(async () => (await Promise.all(cluster!.nodes.map((n) => serves(n).catch(() => false)))).some(Boolean), { timeoutMs: 15_000, intervalMs: 10, what: 'a node to serve' })
        await victimNode.kill()
      }
      db = await connecting
      const connected = Date.now() - started
      if (when === 'after connect() resolved') await victimNode.kill()

      const keys = Array.from({ length: KEYS }, (_, k) => `r${i}-k${k}`)
      const failures = await writeAll(db, keys)
      const written = Date.now() - started
      expect(failures, `round ${i + 1} (${victim} killed ${when}): failed writes`).toEqual([])
      expect(await unreadable(db, keys), `round ${i + 1}: keys not read back`).toEqual([])
      figures.push(`round ${i + 1}, ${victim} killed ${when}: connect() after ${connected} ms, ${KEYS} writes done ${written} ms after start`)

      await db.close()
      db = undefined
      await cluster.close()
      cluster = undefined
    }
    console.log(figures.join('\n'))
  }, 90_000)

  it('two of three founding seeds serve without the third (never started), take W=2 writes and R=2 reads; the third joins when it starts', async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, launch: 2, wait: false, args: ['--gossip-interval-ms', '200'] })
    const started = Date.now()
    const [n1, n2, n3] = cluster.nodes
    await waitFor(async () => (await serves(n1)) && (await serves(n2)), { timeoutMs: 10_000, intervalMs: 20, what: 'n1 and n2 to serve without n3' })
    const serving = Date.now() - started
    expect((await n1.ring()).members.map((m) => m.id)).toEqual(['n1', 'n2'])

    db = await connect({ seeds: cluster.seeds, timeoutMs: 2000 })
    const keys = Array.from({ length: 100 }, (_, k) => `k${k}`)
    expect(await writeAll(db, keys)).toEqual([])
    expect(await unreadable(db, keys)).toEqual([])

    n3.start()
    await n3.ready()
    await waitFor(() => member(cluster!.nodes, 'n3'), { timeoutMs: 30_000, intervalMs: 50, what: 'every node to list n3 as a normal member' })
    const joined = Date.now() - started
    await waitFor(() => db!.view.current.member('n3') !== undefined, { timeoutMs: 15_000, what: 'the SDK to see n3' })
    // n3 joined with a handoff: it holds its share of what was written before it came.
    const missing: string[] = []
    for (const k of keys) {
      const r = await db.explain(k)
      for (const rep of r.replicas) if (rep.id === 'n3' && !rep.found) missing.push(k)
    }
    expect(missing, 'keys n3 should hold after its join').toEqual([])
    expect(await unreadable(db, keys)).toEqual([])
    console.log(`founding pair without n3: serving ${serving} ms after start; n3 a normal member ${joined - serving} ms after that`)
  }, 60_000)

  it('a seed SIGKILLed at birth does not keep the others unavailable; restarted on its data directory, it rejoins', async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, wait: false, args: ['--gossip-interval-ms', '200'] })
    const started = Date.now()
    const [n1, n2, n3] = cluster.nodes
    await n3.kill()
    await waitFor(async () => (await serves(n1)) && (await serves(n2)), { timeoutMs: 10_000, intervalMs: 20, what: 'n1 and n2 to serve with n3 dead' })
    const serving = Date.now() - started

    db = await connect({ seeds: cluster.seeds, timeoutMs: 2000 })
    const keys = Array.from({ length: 100 }, (_, k) => `k${k}`)
    expect(await writeAll(db, keys)).toEqual([])
    expect(await unreadable(db, keys)).toEqual([])

    await cluster.restart('n3')
    await waitFor(() => member(cluster!.nodes, 'n3'), { timeoutMs: 30_000, intervalMs: 50, what: 'every node to list n3 as a normal member' })
    expect(await serves(n3)).toBe(true)
    expect(await unreadable(db, keys)).toEqual([])
    console.log(`founding pair with n3 killed at birth: serving ${serving} ms after start`)
  }, 60_000)
})
