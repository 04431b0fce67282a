// Prometheus metrics of one node (GET /v1/metrics), read from the components' own counters when
// scraped, so the hot paths pay nothing for them. One registry per node: several nodes can share a
// process (tests) without mixing their figures.
import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { LATENCY_BUCKETS, type RequestLatency } from '@zerohop/core'

export interface MetricSources {
  hints: () => { stored: number; delivered: number; dropped: number; expired: number; held: Record<string, number> }
  handoff: () => { items: number; bytes: number; partitions: number; dropped: number }
  antiEntropy?: () => { rounds: number; exchanges: number; keysRepaired: number; bytesSent: number; bytesReceived: number }
  tombstones?: () => { held: number; reaped: number }
  peersDown: () => number
  /** Requests served, by route and by how they came: over HTTP, or from this node itself (no HTTP). */
  requests?: () => ReadonlyMap<string, number>
  /** Requests refused by authentication or authorization, by reason. */
  refused?: () => ReadonlyMap<string, number>
}

/** The key of `requests`: route and way in, as `route via`. */
export function requestKey(route: string, via: Via): string {
  return `${route} ${via}`
}

/** How a request came in: over HTTP, over the framed protocol, or in-process (local). */
export type Via = RequestLatency['via']

/**
 * Requests served, counted by route and way in, and timed per operation (route, method, way in) in
 * the histogram zerohop_request_duration_seconds: replica endpoints and the requests this node
 * coordinates (/v1/kv). The labels are bounded: routes are the node's own (unknown paths are one).
 */
export class RequestMetrics {
  readonly counts = new Map<string, number>()
  readonly #histogram: Histogram<'route' | 'method' | 'via'>
  readonly #children = new Map<string, { observe(v: number): void }>()

  constructor(registry: Registry) {
    this.#histogram = new Histogram({
      name: 'zerohop_request_duration_seconds',
      help: 'Time to serve a request, by route, method and way in (http, or local: this node coordinating a key it replicates)',
      labelNames: ['route', 'method', 'via'],
      buckets: [...LATENCY_BUCKETS],
      registers: [registry],
    })
  }

  served(route: string, method: string, via: Via, seconds: number): void {
    const counted = requestKey(route, via)
    this.counts.set(counted, (this.counts.get(counted) ?? 0) + 1)
    const key = `${counted} ${method}`
    let child = this.#children.get(key)
    if (!child) this.#children.set(key, (child = this.#histogram.labels({ route, method, via })))
    child.observe(seconds)
  }

  /** Each operation's histogram (cumulative buckets, as LATENCY_BUCKETS), for /v1/stats. */
  async latencies(): Promise<RequestLatency[]> {
    const byKey = new Map<string, RequestLatency>()
    for (const v of (await this.#histogram.get()).values) {
      const l = v.labels as { route: string; method: string; via: Via; le?: string | number }
      const key = `${l.route} ${l.method} ${l.via}`
      let out = byKey.get(key)
      if (!out) byKey.set(key, (out = { route: l.route, method: l.method, via: l.via, count: 0, sum: 0, buckets: [] }))
      if (v.metricName?.endsWith('_bucket')) {
        if (l.le !== '+Inf') out.buckets.push(v.value)
      } else if (v.metricName?.endsWith('_sum')) out.sum = v.value
      else if (v.metricName?.endsWith('_count')) out.count = v.value
    }
    return [...byKey.values()]
  }
}

/** A counter whose value is a running total kept elsewhere. */
function total(registry: Registry, name: string, help: string, read: () => number): void {
  let last = 0
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      const now = read()
      if (now > last) this.inc(now - last)
      last = now
    },
  })
}

/** A counter per label set, whose running totals are kept elsewhere, keyed by the label values joined with spaces. */
function labelledTotals(registry: Registry, name: string, help: string, labelNames: string[], read: () => ReadonlyMap<string, number>): void {
  const last = new Map<string, number>()
  new Counter({
    name,
    help,
    labelNames,
    registers: [registry],
    collect() {
      for (const [key, n] of read()) {
        const values = key.split(' ')
        const labels = Object.fromEntries(labelNames.map((l, i) => [l, values[i]]))
        const before = last.get(key) ?? 0
        if (n > before) this.inc(labels, n - before)
        last.set(key, n)
      }
    },
  })
}

export function nodeMetrics(src: MetricSources, registry = new Registry()): Registry {
  total(registry, 'zerohop_hints_stored_total', 'Hints stored for other nodes (sloppy quorum)', () => src.hints().stored)
  total(registry, 'zerohop_hints_delivered_total', 'Hints delivered to their nodes and deleted', () => src.hints().delivered)
  total(registry, 'zerohop_hints_dropped_total', 'Hints dropped because a target went over --max-hint-bytes', () => src.hints().dropped)
  total(registry, 'zerohop_hints_expired_total', 'Hints dropped undelivered after --hint-ttl-ms', () => src.hints().expired)
  new Gauge({
    name: 'zerohop_hints',
    help: 'Hints held, per target node',
    labelNames: ['target'],
    registers: [registry],
    collect() {
      this.reset()
      for (const [target, n] of Object.entries(src.hints().held)) this.set({ target }, n)
    },
  })
  total(registry, 'zerohop_handoff_items_total', 'Items pulled while taking over partitions', () => src.handoff().items)
  total(registry, 'zerohop_handoff_bytes_total', 'Bytes pulled while taking over partitions', () => src.handoff().bytes)
  total(registry, 'zerohop_handoff_partitions_total', 'Partitions taken over', () => src.handoff().partitions)
  total(registry, 'zerohop_handoff_dropped_keys_total', 'Keys deleted after their partition was handed off', () => src.handoff().dropped)
  if (src.antiEntropy) {
    const ae = src.antiEntropy
    total(registry, 'zerohop_ae_rounds_total', 'Anti-entropy roots comparisons: every partition shared with one other replica, in one request', () => ae().rounds)
    total(registry, 'zerohop_ae_exchanges_total', 'Anti-entropy exchanges with other replicas: partitions whose roots differed, descended and synced', () => ae().exchanges)
    total(registry, 'zerohop_ae_keys_repaired_total', 'Keys that differed and were synced by anti-entropy', () => ae().keysRepaired)
    total(registry, 'zerohop_ae_bytes_sent_total', 'Bytes sent by anti-entropy', () => ae().bytesSent)
    total(registry, 'zerohop_ae_bytes_received_total', 'Bytes received by anti-entropy', () => ae().bytesReceived)
  }
  if (src.tombstones) {
    const t = src.tombstones
    total(registry, 'zerohop_tombstones_reaped_total', 'Tombstones deleted after every replica held them for --tombstone-grace-ms', () => t().reaped)
    new Gauge({
      name: 'zerohop_tombstones',
      help: 'Keys this node holds only as tombstones',
      registers: [registry],
      collect() {
        this.set(t().held)
      },
    })
  }
  if (src.requests) {
    labelledTotals(registry, 'zerohop_requests_total', 'Requests served, by route and by way in: http, frames (the framed protocol), or local (this node coordinating a key it replicates, with no request to itself)', ['route', 'via'], src.requests)
  }
  if (src.refused) {
    labelledTotals(registry, 'zerohop_auth_refused_total', 'Requests refused (401, 403, or a forged version or context), by reason: unsigned, uncertified, bad-signature, replay, no-token, bad-token, forbidden, bad-proof, bad-context', ['reason'], src.refused)
  }
  new Gauge({
    name: 'zerohop_peers_down',
    help: 'Members this node holds down',
    registers: [registry],
    collect() {
      this.set(src.peersDown())
    },
  })
  return registry
}

/** Read one sample from Prometheus text (tests and the CLI). */
export function sample(text: string, name: string, labels = ''): number | undefined {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels ? `{${labels}}` : ''} `))
  return line ? Number(line.slice(line.lastIndexOf(' ') + 1)) : undefined
}
