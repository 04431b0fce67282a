// Node options: one defaults object, merged and validated in one place. The README's configuration
// table documents each of these.
import { InvalidArgumentError, ringDefaults } from '@zerohop/core'

export interface NodeOptions {
  /** Stable node id (required). */
  id: string
  host?: string
  port?: number
  /** URL other nodes and clients should use; default http://host:port. */
  advertise?: string
  /** Data directory (LevelDB). */
  data?: string
  /**
   * Seed URLs. Founding members list each other: a new cluster serves once every seed has answered,
   * or a majority of them has for `seedGraceMs` (the others join when they start). Seeds are also
   * gossiped with now and then, so clusters started apart merge.
   */
  seeds?: string[]
  /** URL of a node of a running cluster to join (the new node takes its share of partitions). */
  join?: string
  /** Failure-domain label, e.g. a rack or availability zone. */
  zone?: string
  /** N: replicas per key (fixed when the cluster is created). */
  n?: number
  /** Q: partitions, a power of two (fixed when the cluster is created). */
  partitions?: number
  weight?: number
  maxKeyBytes?: number
  maxValueBytes?: number
  /** Largest request body accepted. */
  maxBodyBytes?: number
  /** fsync each write to LevelDB. */
  fsync?: boolean
  /** How often a starting node polls seeds it has not heard from yet. */
  discoveryIntervalMs?: number
  /**
   * How long a founding node that has heard from a majority of the seeds waits for the rest before it
   * serves without them (a seed that died at birth must not keep the cluster unavailable).
   */
  seedGraceMs?: number
  /** Gossip round period. */
  gossipIntervalMs?: number
  /** Chance per round of also gossiping with a seed. */
  seedProbability?: number
  /** Phi accrual threshold above which a silent peer is considered down. */
  phiThreshold?: number
  /** Most bytes per second a joining node pulls when taking over partitions. */
  handoffRateBytes?: number
  /** Items per page of a partition transfer. */
  handoffPageItems?: number
  /** How long a node keeps a partition it has handed off, after the transition ends. */
  dropDelayMs?: number
  /** Most bytes of hints kept for one target node; the oldest are dropped beyond it. */
  maxHintBytes?: number
  /** How often hints are offered to their nodes. */
  hintIntervalMs?: number
  /** A hint not delivered this long after it was stored is dropped (anti-entropy repairs instead). */
  hintTtlMs?: number
  /** How long every replica must have held a tombstone before it is reaped; longer than hintTtlMs. */
  tombstoneGraceMs?: number
  /** Time between two tombstone reaping rounds. */
  reapIntervalMs?: number
  /** Time between two anti-entropy exchanges (one partition with one other replica each). */
  aeIntervalMs?: number
  /** Most keys anti-entropy compares and repairs per second. */
  aeMaxKeysPerSecond?: number
  /** Read quorum of the requests this node coordinates for clients without the SDK (default min(2, N)); `?r=` overrides it per request. */
  r?: number
  /** Write quorum of those requests (default min(2, N)); `?w=` overrides it per request. */
  w?: number
  /** Deadline of a request this node coordinates, in ms; `?timeout=` overrides it per request. */
  timeoutMs?: number
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
}

export type ResolvedNodeOptions = Required<Omit<NodeOptions, 'advertise' | 'data' | 'join'>> & { advertise: string; data: string; join: string | undefined }

/** How much longer than the hint TTL the tombstone grace period must be. */
export const TOMBSTONE_GRACE_MARGIN_MS = 10_000

export const nodeDefaults = {
  host: '127.0.0.1',
  port: 7001,
  n: ringDefaults.n,
  partitions: ringDefaults.partitions,
  weight: 1,
  maxKeyBytes: 1024,
  maxValueBytes: 1024 * 1024,
  maxBodyBytes: 16 * 1024 * 1024,
  fsync: false,
  discoveryIntervalMs: 200,
  seedGraceMs: 2000,
  gossipIntervalMs: 1000,
  seedProbability: 0.1,
  phiThreshold: 8,
  handoffRateBytes: 8 * 1024 * 1024,
  handoffPageItems: 500,
  dropDelayMs: 30_000,
  maxHintBytes: 64 * 1024 * 1024,
  hintIntervalMs: 1000,
  hintTtlMs: 3 * 3600_000,
  tombstoneGraceMs: 24 * 3600_000,
  reapIntervalMs: 60_000,
  aeIntervalMs: 10_000,
  aeMaxKeysPerSecond: 5000,
  timeoutMs: 2000,
  zone: 'default',
  logLevel: 'info',
} as const

function int(name: string, v: unknown, min: number, max: number, hint: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)} (${hint})`)
  }
  return v
}

export function normalizeUrl(u: string, what: string): string {
  let url: URL
  try {
    url = new URL(u)
  } catch {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(u)} is not a URL; write it as http://host:port`)
  }
  if (url.protocol !== 'http:') throw new InvalidArgumentError(`${what} ${u} must use http://`)
  if (url.pathname !== '/' || url.search || url.hash) throw new InvalidArgumentError(`${what} ${u} must be just http://host:port, without a path`)
  return url.origin
}

export function resolveNodeOptions(o: NodeOptions): ResolvedNodeOptions {
  if (typeof o.id !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(o.id)) {
    throw new InvalidArgumentError(`id ${JSON.stringify(o.id)} must be 1-64 characters of A-Z a-z 0-9 . _ - (e.g. --id n1)`)
  }
  const host = o.host ?? nodeDefaults.host
  const port = int('port', o.port ?? nodeDefaults.port, 1, 65535, 'use --port')
  const advertise = normalizeUrl(o.advertise ?? `http://${host.includes(':') ? `[${host}]` : host}:${port}`, 'advertise URL')
  const join = o.join === undefined ? undefined : normalizeUrl(o.join, 'join URL')
  if (join === advertise) throw new InvalidArgumentError(`--join ${join} is this node's own address; give the URL of a node of the running cluster`)
  const seeds = (o.seeds ?? []).map((s) => normalizeUrl(s, 'seed'))
  if (join && !seeds.includes(join)) seeds.push(join)
  if (!join && !seeds.includes(advertise)) seeds.push(advertise)
  const zone = o.zone ?? nodeDefaults.zone
  if (typeof zone !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(zone)) throw new InvalidArgumentError(`zone ${JSON.stringify(zone)} must be 1-64 characters of A-Z a-z 0-9 . _ - (e.g. --zone rack1)`)
  const seedProbability = o.seedProbability ?? nodeDefaults.seedProbability
  if (typeof seedProbability !== 'number' || !(seedProbability >= 0 && seedProbability <= 1)) throw new InvalidArgumentError(`seedProbability must be a number from 0 to 1, got ${seedProbability}`)
  const phiThreshold = o.phiThreshold ?? nodeDefaults.phiThreshold
  if (typeof phiThreshold !== 'number' || !(phiThreshold >= 1 && phiThreshold <= 100)) throw new InvalidArgumentError(`phiThreshold must be a number from 1 to 100, got ${phiThreshold} (use --phi-threshold; 8 is typical)`)
  const partitions = int('partitions', o.partitions ?? nodeDefaults.partitions, 2, 65536, 'use --partitions with a power of two')
  if ((partitions & (partitions - 1)) !== 0) throw new InvalidArgumentError(`partitions must be a power of two, got ${partitions}`)
  const weight = o.weight ?? nodeDefaults.weight
  if (typeof weight !== 'number' || !(weight > 0) || !Number.isFinite(weight)) throw new InvalidArgumentError(`weight must be a positive number, got ${weight}`)
  const maxValueBytes = int('maxValueBytes', o.maxValueBytes ?? nodeDefaults.maxValueBytes, 1, 64 * 1024 * 1024, 'use --max-value-bytes')
  const maxBodyBytes = int('maxBodyBytes', o.maxBodyBytes ?? Math.max(nodeDefaults.maxBodyBytes, 4 * maxValueBytes), 1024, 1024 * 1024 * 1024, 'use --max-body-bytes')
  const hintTtlMs = int('hintTtlMs', o.hintTtlMs ?? nodeDefaults.hintTtlMs, 100, 30 * 24 * 3600_000, 'use --hint-ttl-ms')
  const tombstoneGraceMs = int('tombstoneGraceMs', o.tombstoneGraceMs ?? nodeDefaults.tombstoneGraceMs, 10_000, 365 * 24 * 3600_000, 'use --tombstone-grace-ms')
  // A hint older than a tombstone could carry a value the tombstone deleted: it must expire first, with
  // room for the longest node-to-node request that may carry an old value (a hint send, 5 s; an
  // anti-entropy request, 10 s).
  if (tombstoneGraceMs < hintTtlMs + TOMBSTONE_GRACE_MARGIN_MS) {
    throw new InvalidArgumentError(`tombstoneGraceMs (${tombstoneGraceMs}) must be at least hintTtlMs (${hintTtlMs}) + ${TOMBSTONE_GRACE_MARGIN_MS}, or a late hint could bring a deleted value back; raise --tombstone-grace-ms or lower --hint-ttl-ms`)
  }
  const n = int('n', o.n ?? nodeDefaults.n, 1, 16, 'use --n')
  const logLevel = o.logLevel ?? nodeDefaults.logLevel
  if (!['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'].includes(logLevel)) throw new InvalidArgumentError(`logLevel must be one of fatal, error, warn, info, debug, trace, silent; got ${logLevel}`)
  return {
    id: o.id,
    host,
    port,
    advertise,
    data: o.data ?? `./data/${o.id}`,
    seeds,
    join,
    zone,
    n,
    partitions,
    weight,
    maxKeyBytes: int('maxKeyBytes', o.maxKeyBytes ?? nodeDefaults.maxKeyBytes, 1, 65536, 'use --max-key-bytes'),
    maxValueBytes,
    maxBodyBytes,
    fsync: o.fsync ?? nodeDefaults.fsync,
    discoveryIntervalMs: int('discoveryIntervalMs', o.discoveryIntervalMs ?? nodeDefaults.discoveryIntervalMs, 10, 60_000, 'in milliseconds'),
    seedGraceMs: int('seedGraceMs', o.seedGraceMs ?? nodeDefaults.seedGraceMs, 0, 600_000, 'use --seed-grace-ms'),
    gossipIntervalMs: int('gossipIntervalMs', o.gossipIntervalMs ?? nodeDefaults.gossipIntervalMs, 10, 60_000, 'use --gossip-interval-ms'),
    seedProbability,
    phiThreshold,
    handoffRateBytes: int('handoffRateBytes', o.handoffRateBytes ?? nodeDefaults.handoffRateBytes, 1024, 1024 * 1024 * 1024, 'use --handoff-rate-bytes'),
    handoffPageItems: int('handoffPageItems', o.handoffPageItems ?? nodeDefaults.handoffPageItems, 1, 10_000, 'use --handoff-page-items'),
    maxHintBytes: int('maxHintBytes', o.maxHintBytes ?? nodeDefaults.maxHintBytes, 1024, 64 * 1024 * 1024 * 1024, 'use --max-hint-bytes'),
    hintIntervalMs: int('hintIntervalMs', o.hintIntervalMs ?? nodeDefaults.hintIntervalMs, 10, 3600_000, 'use --hint-interval-ms'),
    hintTtlMs,
    tombstoneGraceMs,
    reapIntervalMs: int('reapIntervalMs', o.reapIntervalMs ?? nodeDefaults.reapIntervalMs, 10, 24 * 3600_000, 'use --reap-interval-ms'),
    aeIntervalMs: int('aeIntervalMs', o.aeIntervalMs ?? nodeDefaults.aeIntervalMs, 10, 24 * 3600_000, 'use --ae-interval-ms'),
    aeMaxKeysPerSecond: int('aeMaxKeysPerSecond', o.aeMaxKeysPerSecond ?? nodeDefaults.aeMaxKeysPerSecond, 1, 10_000_000, 'use --ae-max-keys-per-second'),
    r: int('r', o.r ?? Math.min(2, n), 1, n, 'use --r, at most --n'),
    w: int('w', o.w ?? Math.min(2, n), 1, n, 'use --w, at most --n'),
    timeoutMs: int('timeoutMs', o.timeoutMs ?? nodeDefaults.timeoutMs, 1, 3600_000, 'use --timeout-ms'),
    dropDelayMs: int('dropDelayMs', o.dropDelayMs ?? nodeDefaults.dropDelayMs, 0, 24 * 3600_000, 'use --drop-delay-ms'),
    logLevel,
  }
}
