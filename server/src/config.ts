// Node options: one defaults object, merged and validated in one place. The README's configuration
// table documents each of these.
import { readFileSync } from 'node:fs'
import { X509Certificate, createPrivateKey } from 'node:crypto'
import { createSecureContext } from 'node:tls'
import { ID_PATTERN, InvalidArgumentError, MAX_WEIGHT, MIN_WEIGHT, ringDefaults } from '@zerohop/core'

export interface NodeOptions {
  /** Stable node id (required). */
  id: string
  host?: string
  port?: number
  /** URL other nodes and clients should use; default http://host:port (https:// with TLS). */
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
  /**
   * File holding the secret every member shares (at least 16 bytes; e.g. `openssl rand -base64 32`):
   * node-to-node requests are signed with it, and versions and contexts handed to clients too.
   */
  clusterSecretFile?: string
  /** The users file (`zerohop user add`): with it, every client request but /v1/health needs a token. Needs clusterSecretFile. */
  usersFile?: string
  /** Listen on an address other than loopback without a cluster secret (anyone who reaches the port can change data and membership). */
  insecure?: boolean
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent'
  /** PEM file of this node's certificate (with its chain): with tlsKey, the node serves HTTPS. */
  tlsCert?: string
  /** PEM file of the private key of tlsCert. */
  tlsKey?: string
  /**
   * PEM file of the CA that signs the cluster's node certificates: the node verifies its peers'
   * server certificates with it, presents its own as a client certificate, and marks requests whose
   * client certificate it verifies (NodeRequest.peerCertified).
   */
  tlsCa?: string
  /** Time to receive a request's headers (and, with TLS, to finish the handshake). */
  headersTimeoutMs?: number
  /** Time to receive a whole request, headers and body; a slower one gets 408 and its connection closes. */
  bodyTimeoutMs?: number
  /** How long an idle keep-alive connection stays open. */
  idleTimeoutMs?: number
  /** Most open connections in all. */
  maxConnections?: number
  /** Most open connections from one remote address. */
  maxConnectionsPerClient?: number
  /** Most bytes of request bodies being received or held by requests not yet answered. */
  maxInflightBytes?: number
}

/** The TLS material of a node, read from the files of --tls-cert, --tls-key and --tls-ca. */
export interface NodeTls {
  cert: Buffer
  key: Buffer
  ca?: Buffer
}

export type ResolvedNodeOptions = Required<Omit<NodeOptions, 'advertise' | 'data' | 'join' | 'tlsCert' | 'tlsKey' | 'tlsCa' | 'clusterSecretFile' | 'usersFile'>> & {
  advertise: string
  data: string
  join: string | undefined
  /** Undefined: the node serves plain HTTP. */
  tls: NodeTls | undefined
  clusterSecretFile: string | undefined
  usersFile: string | undefined
}

/** Addresses only this machine reaches: a node may listen there without a cluster secret. */
export function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
}

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
  headersTimeoutMs: 10_000,
  bodyTimeoutMs: 30_000,
  idleTimeoutMs: 65_000,
  maxConnections: 10_000,
  // Every node, SDK pool (16 connections per node) and bench worker of a test run connects from
  // 127.0.0.1: normal operation stays far below this.
  maxConnectionsPerClient: 1024,
  maxInflightBytes: 256 * 1024 * 1024,
  zone: 'default',
  logLevel: 'info',
} as const

function int(name: string, v: unknown, min: number, max: number, hint: string): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) {
    throw new InvalidArgumentError(`${name} must be an integer from ${min} to ${max}, got ${JSON.stringify(v)} (${hint})`)
  }
  return v
}

/**
 * A node URL as its origin. `scheme`, when given, is the only one allowed: the nodes of a cluster
 * all serve HTTPS or all plain HTTP, since a TLS node refuses plain HTTP (426).
 */
export function normalizeUrl(u: string, what: string, scheme?: 'http' | 'https'): string {
  let url: URL
  try {
    url = new URL(u)
  } catch {
    throw new InvalidArgumentError(`${what} ${JSON.stringify(u)} is not a URL; write it as ${scheme ?? 'http'}://host:port`)
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new InvalidArgumentError(`${what} ${u} must use http:// or https://`)
  if (scheme && url.protocol !== `${scheme}:`) {
    throw new InvalidArgumentError(scheme === 'https'
      ? `${what} ${u} uses http://, but this node serves HTTPS (--tls-cert): the nodes of a cluster all use https://`
      : `${what} ${u} uses https://, but this node serves plain HTTP: give it --tls-cert and --tls-key, or use http://`)
  }
  if (url.pathname !== '/' || url.search || url.hash) throw new InvalidArgumentError(`${what} ${u} must be just ${url.protocol}//host:port, without a path`)
  return url.origin
}

function readPem(flag: string, file: unknown, kind: 'certificate' | 'key'): Buffer {
  if (typeof file !== 'string' || file.length === 0) throw new InvalidArgumentError(`${flag} must be the path of a PEM file, got ${JSON.stringify(file)}`)
  let pem: Buffer
  try {
    pem = readFileSync(file)
  } catch (err) {
    throw new InvalidArgumentError(`${flag} ${file} cannot be read: ${(err as Error).message}`, { cause: err })
  }
  try {
    if (kind === 'key') createPrivateKey(pem)
    else new X509Certificate(pem)
  } catch (err) {
    throw new InvalidArgumentError(`${flag} ${file} is not a PEM ${kind === 'key' ? 'private key' : 'certificate'}: ${(err as Error).message}`, { cause: err })
  }
  return pem
}

function resolveTls(o: NodeOptions): NodeTls | undefined {
  if (o.tlsCert === undefined && o.tlsKey === undefined) {
    if (o.tlsCa !== undefined) throw new InvalidArgumentError('--tls-ca needs --tls-cert and --tls-key: a node verifies its peers only when it serves HTTPS itself')
    return undefined
  }
  if (o.tlsCert === undefined || o.tlsKey === undefined) throw new InvalidArgumentError(`${o.tlsCert === undefined ? '--tls-key' : '--tls-cert'} was given without ${o.tlsCert === undefined ? '--tls-cert' : '--tls-key'}: HTTPS needs both`)
  const cert = readPem('--tls-cert', o.tlsCert, 'certificate')
  const key = readPem('--tls-key', o.tlsKey, 'key')
  const ca = o.tlsCa === undefined ? undefined : readPem('--tls-ca', o.tlsCa, 'certificate')
  try {
    createSecureContext({ cert, key, ca })
  } catch (err) {
    throw new InvalidArgumentError(`--tls-key ${o.tlsKey} does not fit --tls-cert ${o.tlsCert}: ${(err as Error).message}`, { cause: err })
  }
  return { cert, key, ca }
}

export function resolveNodeOptions(o: NodeOptions): ResolvedNodeOptions {
  if (typeof o.id !== 'string' || !ID_PATTERN.test(o.id)) {
    throw new InvalidArgumentError(`id ${JSON.stringify(o.id)} must be 1-64 characters of A-Z a-z 0-9 . _ - (e.g. --id n1)`)
  }
  const host = o.host ?? nodeDefaults.host
  const port = int('port', o.port ?? nodeDefaults.port, 1, 65535, 'use --port')
  const tls = resolveTls(o)
  const scheme = tls ? 'https' : 'http'
  const advertise = normalizeUrl(o.advertise ?? `${scheme}://${host.includes(':') ? `[${host}]` : host}:${port}`, 'advertise URL', scheme)
  const join = o.join === undefined ? undefined : normalizeUrl(o.join, 'join URL', scheme)
  if (join === advertise) throw new InvalidArgumentError(`--join ${join} is this node's own address; give the URL of a node of the running cluster`)
  const seeds = (o.seeds ?? []).map((s) => normalizeUrl(s, 'seed', scheme))
  if (join && !seeds.includes(join)) seeds.push(join)
  if (!join && !seeds.includes(advertise)) seeds.push(advertise)
  const zone = o.zone ?? nodeDefaults.zone
  if (typeof zone !== 'string' || !ID_PATTERN.test(zone)) throw new InvalidArgumentError(`zone ${JSON.stringify(zone)} must be 1-64 characters of A-Z a-z 0-9 . _ - (e.g. --zone rack1)`)
  const seedProbability = o.seedProbability ?? nodeDefaults.seedProbability
  if (typeof seedProbability !== 'number' || !(seedProbability >= 0 && seedProbability <= 1)) throw new InvalidArgumentError(`seedProbability must be a number from 0 to 1, got ${seedProbability}`)
  const phiThreshold = o.phiThreshold ?? nodeDefaults.phiThreshold
  if (typeof phiThreshold !== 'number' || !(phiThreshold >= 1 && phiThreshold <= 100)) throw new InvalidArgumentError(`phiThreshold must be a number from 1 to 100, got ${phiThreshold} (use --phi-threshold; 8 is typical)`)
  const partitions = int('partitions', o.partitions ?? nodeDefaults.partitions, 2, 65536, 'use --partitions with a power of two')
  if ((partitions & (partitions - 1)) !== 0) throw new InvalidArgumentError(`partitions must be a power of two, got ${partitions}`)
  const weight = o.weight ?? nodeDefaults.weight
  if (typeof weight !== 'number' || !(weight >= MIN_WEIGHT && weight <= MAX_WEIGHT)) throw new InvalidArgumentError(`weight must be a number from ${MIN_WEIGHT} to ${MAX_WEIGHT}, got ${weight} (use --weight; 1 is typical)`)
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
  for (const [name, flag] of [['clusterSecretFile', '--cluster-secret-file'], ['usersFile', '--users-file']] as const) {
    const v = o[name]
    if (v !== undefined && (typeof v !== 'string' || v.length === 0)) throw new InvalidArgumentError(`${name} must be a file path (${flag} PATH)`)
  }
  if (o.insecure !== undefined && typeof o.insecure !== 'boolean') throw new InvalidArgumentError('insecure must be true or false')
  if (o.usersFile !== undefined && o.clusterSecretFile === undefined) {
    throw new InvalidArgumentError('--users-file needs --cluster-secret-file too: without a cluster secret the node-to-node endpoints stay open, and anyone could write around the tokens')
  }
  // Protected mode: beyond loopback, a node takes neither nodes nor clients on trust.
  if (!o.insecure && !isLoopback(host) && (o.clusterSecretFile === undefined || o.usersFile === undefined)) {
    const missing = o.clusterSecretFile === undefined
      ? 'without a cluster secret anyone who reaches the port can act as a node and change data and membership: add --cluster-secret-file PATH and --users-file PATH'
      : 'without a users file any client that reaches the port can write, delete and make nodes leave: add --users-file PATH'
    throw new InvalidArgumentError(`--host ${host} is reachable from other machines, and ${missing} (or --insecure to run open anyway)`)
  }
  const headersTimeoutMs = int('headersTimeoutMs', o.headersTimeoutMs ?? nodeDefaults.headersTimeoutMs, 100, 3600_000, 'use --headers-timeout-ms')
  const bodyTimeoutMs = int('bodyTimeoutMs', o.bodyTimeoutMs ?? nodeDefaults.bodyTimeoutMs, 100, 3600_000, 'use --body-timeout-ms')
  // The whole request includes its headers (node:http refuses a request timeout below the headers timeout).
  if (bodyTimeoutMs < headersTimeoutMs) throw new InvalidArgumentError(`bodyTimeoutMs (${bodyTimeoutMs}) must be at least headersTimeoutMs (${headersTimeoutMs}): it is the time to receive the whole request, headers included; raise --body-timeout-ms or lower --headers-timeout-ms`)
  const maxConnections = int('maxConnections', o.maxConnections ?? nodeDefaults.maxConnections, 1, 1_000_000, 'use --max-connections')
  const maxConnectionsPerClient = int('maxConnectionsPerClient', o.maxConnectionsPerClient ?? nodeDefaults.maxConnectionsPerClient, 1, maxConnections, 'use --max-connections-per-client, at most --max-connections')
  const maxInflightBytes = int('maxInflightBytes', o.maxInflightBytes ?? Math.max(nodeDefaults.maxInflightBytes, maxBodyBytes), maxBodyBytes, 64 * 1024 * 1024 * 1024, 'use --max-inflight-bytes, at least --max-body-bytes')
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
    clusterSecretFile: o.clusterSecretFile,
    usersFile: o.usersFile,
    insecure: o.insecure ?? false,
    dropDelayMs: int('dropDelayMs', o.dropDelayMs ?? nodeDefaults.dropDelayMs, 0, 24 * 3600_000, 'use --drop-delay-ms'),
    logLevel,
    tls,
    headersTimeoutMs,
    bodyTimeoutMs,
    idleTimeoutMs: int('idleTimeoutMs', o.idleTimeoutMs ?? nodeDefaults.idleTimeoutMs, 100, 3600_000, 'use --idle-timeout-ms'),
    maxConnections,
    maxConnectionsPerClient,
    maxInflightBytes,
  }
}
