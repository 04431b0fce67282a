// Static membership: the seed list is the cluster. A starting node asks every seed for its identity
// (GET /v1/health) until all have answered, then builds the ring. Gossip replaces this later; the
// ring it produces is the same pure function of the membership.
import { request } from 'undici'
import { Paths, Ring, sleep, type Clock, type HealthResponse, type Member } from '@zerohop/core'
import type { Logger } from 'pino'

export interface DiscoveryOptions {
  self: Member
  seeds: string[]
  n: number
  partitions: number
  intervalMs: number
  log: Logger
  clock: Clock
  signal: AbortSignal
}

async function identify(url: string, signal: AbortSignal): Promise<HealthResponse> {
  const res = await request(`${url}${Paths.health}`, { method: 'GET', signal, headersTimeout: 2000, bodyTimeout: 2000 })
  const body = (await res.body.json()) as HealthResponse
  if (res.statusCode !== 200 || typeof body?.id !== 'string') throw new Error(`status ${res.statusCode}`)
  return body
}

/** Resolves with the ring once every seed has told us who it is (or undefined if aborted). */
export async function discoverRing(o: DiscoveryOptions): Promise<Ring | undefined> {
  const known = new Map<string, Member>([[o.self.url, o.self]])
  let lastWarn = 0
  while (!o.signal.aborted) {
    const missing = o.seeds.filter((s) => !known.has(s))
    await Promise.all(
      missing.map(async (url) => {
        try {
          const h = await identify(url, o.signal)
          if (h.n !== o.n || h.partitions !== o.partitions) {
            o.log.error({ seed: url, n: h.n, partitions: h.partitions }, `seed ${url} runs with n=${h.n} partitions=${h.partitions}, this node with n=${o.n} partitions=${o.partitions}; every node of a cluster needs the same --n and --partitions`)
            return
          }
          known.set(url, { id: h.id, url: h.url, weight: h.weight })
        } catch {
          // not up yet
        }
      }),
    )
    if (known.size === o.seeds.length) {
      const members = [...known.values()]
      const ids = new Set(members.map((m) => m.id))
      if (ids.size === members.length) return new Ring(members, { partitions: o.partitions, n: o.n })
      o.log.error({ members }, 'two seeds report the same node id; every node needs its own --id')
      known.clear()
      known.set(o.self.url, o.self)
    }
    if (o.clock.now() - lastWarn > 5000) {
      lastWarn = o.clock.now()
      o.log.info({ waitingFor: o.seeds.filter((s) => !known.has(s)) }, 'waiting for seeds')
    }
    await sleep(o.clock, o.intervalMs, o.signal)
  }
  return undefined
}
