#!/usr/bin/env node
// The `zerohop` command: `start` runs one storage node, `dev` a local 3-node cluster, and `leave`,
// `remove` and `status` are the operator's membership commands (JSON over HTTP to one node).
import { parseArgs } from 'node:util'
import { request } from 'undici'
import { Paths, ZerohopError, type RingResponse } from '@zerohop/core'
import { StorageNode } from './node.js'
import { runDevCluster } from './dev.js'

const USAGE = `zerohop — a Dynamo-style key-value store

Usage:
  zerohop start --id n1 --port 7001 --data ./data/n1 --seeds http://127.0.0.1:7001,http://127.0.0.1:7002,...
  zerohop start --id n4 --port 7004 --join http://127.0.0.1:7001     join a running cluster
  zerohop leave --node URL              the node at URL hands off its data and leaves
  zerohop remove NODE_ID --node URL     remove a dead node; the others re-replicate its data
  zerohop status --node URL             members, their status and what URL's node believes down
  zerohop dev [--nodes 3] [--base-port 7001] [--data ./data]
  zerohop help

start options:
  --id ID                 node id (required), 1-64 of A-Z a-z 0-9 . _ -
  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port to listen on (default 7001)
  --advertise URL         URL other nodes and clients use (default http://HOST:PORT)
  --data DIR              LevelDB directory (default ./data/ID)
  --seeds URL,URL,...     founding members: a new cluster serves once every seed answered, or a
                          majority did for --seed-grace-ms (the others join when they start)
  --seed-grace-ms MS      how long a founding node with a majority of the seeds waits for the rest
                          (default 2000)
  --join URL              join the running cluster that URL's node belongs to
  --zone NAME             failure domain label (default "default")
  --n N                   replicas per key (default 3; the same on every node)
  --partitions Q          partitions, a power of two (default 256; the same on every node)
  --weight W              relative capacity (default 1)
  --max-key-bytes B       largest key (default 1024)
  --max-value-bytes B     largest value (default 1048576)
  --max-body-bytes B      largest request body (default 16777216)
  --fsync                 fsync every write
  --gossip-interval-ms MS gossip round period (default 1000)
  --phi-threshold PHI     failure detector threshold (default 8)
  --handoff-rate-bytes B  most bytes/s pulled while taking over partitions (default 8388608)
  --drop-delay-ms MS      keep handed-off partitions this long after a transition (default 30000)
  --max-hint-bytes B      hints kept per unreachable node before the oldest are dropped (default 67108864)
  --hint-interval-ms MS   how often hints are offered to their nodes (default 1000)
  --hint-ttl-ms MS        hints not delivered this long after they were stored are dropped (default 10800000, 3 h)
  --tombstone-grace-ms MS every replica holds a tombstone this long before it is reaped; longer than
                          --hint-ttl-ms (default 86400000, 24 h)
  --reap-interval-ms MS   time between tombstone reaping rounds (default 60000)
  --ae-interval-ms MS     time between anti-entropy exchanges, one partition each (default 10000)
  --ae-max-keys-per-second N  most keys anti-entropy repairs per second (default 5000)
  --r R                   read quorum of requests this node coordinates (/v1/kv; default min(2, N))
  --w W                   write quorum of those requests (default min(2, N))
  --timeout-ms MS         deadline of those requests (default 2000)
  --log-level LEVEL       fatal|error|warn|info|debug|trace|silent (default info)
`

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n)) throw new ZerohopError('ZH_INVALID_ARGUMENT', `--${name} takes a number, got ${JSON.stringify(v)}`)
  return n
}

async function start(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      id: { type: 'string' },
      host: { type: 'string' },
      port: { type: 'string' },
      advertise: { type: 'string' },
      data: { type: 'string' },
      seeds: { type: 'string' },
      join: { type: 'string' },
      zone: { type: 'string' },
      'gossip-interval-ms': { type: 'string' },
      'phi-threshold': { type: 'string' },
      'handoff-rate-bytes': { type: 'string' },
      'drop-delay-ms': { type: 'string' },
      'seed-grace-ms': { type: 'string' },
      'max-hint-bytes': { type: 'string' },
      'hint-interval-ms': { type: 'string' },
      'hint-ttl-ms': { type: 'string' },
      'tombstone-grace-ms': { type: 'string' },
      'reap-interval-ms': { type: 'string' },
      'ae-interval-ms': { type: 'string' },
      'ae-max-keys-per-second': { type: 'string' },
      r: { type: 'string' },
      w: { type: 'string' },
      'timeout-ms': { type: 'string' },
      n: { type: 'string' },
      partitions: { type: 'string' },
      weight: { type: 'string' },
      'max-key-bytes': { type: 'string' },
      'max-value-bytes': { type: 'string' },
      'max-body-bytes': { type: 'string' },
      fsync: { type: 'boolean' },
      'log-level': { type: 'string' },
    },
  })
  if (!values.id) throw new ZerohopError('ZH_INVALID_ARGUMENT', 'zerohop start needs --id (e.g. --id n1)')
  const node = new StorageNode({
    id: values.id,
    host: values.host,
    port: num('port', values.port),
    advertise: values.advertise,
    data: values.data,
    seeds: values.seeds ? values.seeds.split(',').map((s) => s.trim()).filter(Boolean) : undefined,
    join: values.join,
    zone: values.zone,
    gossipIntervalMs: num('gossip-interval-ms', values['gossip-interval-ms']),
    phiThreshold: num('phi-threshold', values['phi-threshold']),
    handoffRateBytes: num('handoff-rate-bytes', values['handoff-rate-bytes']),
    dropDelayMs: num('drop-delay-ms', values['drop-delay-ms']),
    seedGraceMs: num('seed-grace-ms', values['seed-grace-ms']),
    maxHintBytes: num('max-hint-bytes', values['max-hint-bytes']),
    hintIntervalMs: num('hint-interval-ms', values['hint-interval-ms']),
    hintTtlMs: num('hint-ttl-ms', values['hint-ttl-ms']),
    tombstoneGraceMs: num('tombstone-grace-ms', values['tombstone-grace-ms']),
    reapIntervalMs: num('reap-interval-ms', values['reap-interval-ms']),
    aeIntervalMs: num('ae-interval-ms', values['ae-interval-ms']),
    aeMaxKeysPerSecond: num('ae-max-keys-per-second', values['ae-max-keys-per-second']),
    r: num('r', values.r),
    w: num('w', values.w),
    timeoutMs: num('timeout-ms', values['timeout-ms']),
    n: num('n', values.n),
    partitions: num('partitions', values.partitions),
    weight: num('weight', values.weight),
    maxKeyBytes: num('max-key-bytes', values['max-key-bytes']),
    maxValueBytes: num('max-value-bytes', values['max-value-bytes']),
    maxBodyBytes: num('max-body-bytes', values['max-body-bytes']),
    fsync: values.fsync,
    logLevel: values['log-level'] as never,
  })
  let stopping = false
  const shutdown = (signal: string) => {
    // Ctrl-C under `zerohop dev` reaches a node twice: from the terminal and from the dev runner.
    if (stopping) return
    stopping = true
    node.log.info({ signal }, 'shutting down')
    node.stop().then(
      () => process.exit(0),
      (err) => {
        node.log.error({ err }, 'shutdown failed')
        process.exit(1)
      },
    )
  }
  process.once('SIGTERM', () => shutdown('SIGTERM'))
  process.once('SIGINT', () => shutdown('SIGINT'))
  void node.left.then(() => shutdown('left the cluster'))
  await node.start()
}

/** One operator request to a node; prints the JSON answer, or the error with its code. */
async function admin(url: string, path: string, method: 'GET' | 'POST', body?: object): Promise<unknown> {
  let res
  try {
    res = await request(`${url.replace(/\/$/, '')}${path}`, {
      method,
      body: body ? JSON.stringify(body) : undefined,
      headers: body ? { 'content-type': 'application/json' } : undefined,
      headersTimeout: 10_000,
      bodyTimeout: 10_000,
    })
  } catch (err) {
    throw new ZerohopError('ZH_NO_SEED_REACHABLE', `cannot reach ${url}: ${(err as Error).message}`)
  }
  const text = await res.body.text()
  let json: { error?: { code?: string; message?: string } }
  try {
    json = JSON.parse(text)
  } catch {
    throw new ZerohopError('ZH_INTERNAL', `${url} answered HTTP ${res.statusCode} with a body that is not JSON`)
  }
  if (res.statusCode >= 400) throw new ZerohopError((json.error?.code as never) ?? 'ZH_INTERNAL', json.error?.message ?? `HTTP ${res.statusCode}`)
  return json
}

function nodeUrl(args: string[], positionals: number): { url: string; rest: string[] } {
  const { values, positionals: rest } = parseArgs({ args, strict: true, allowPositionals: true, options: { node: { type: 'string' } } })
  if (!values.node) throw new ZerohopError('ZH_INVALID_ARGUMENT', 'give the node to ask with --node http://host:port')
  if (rest.length !== positionals) throw new ZerohopError('ZH_INVALID_ARGUMENT', `expected ${positionals} argument(s) before --node, got ${rest.length}; run zerohop help`)
  return { url: values.node, rest }
}

async function status(args: string[]): Promise<void> {
  const { url } = nodeUrl(args, 0)
  const ring = (await admin(url, Paths.ring, 'GET')) as RingResponse
  const down = new Set(ring.down)
  process.stdout.write(`epoch ${ring.epoch}  n=${ring.n}  partitions=${ring.partitions}\n`)
  for (const m of ring.members) {
    const state = m.status === 'left' ? '' : down.has(m.id) ? 'down' : 'up'
    process.stdout.write(`${m.id.padEnd(12)} ${m.url.padEnd(28)} ${m.status.padEnd(8)} ${state.padEnd(5)} weight=${m.weight} zone=${m.zone}${m.removed ? ' removed' : ''}\n`)
  }
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  switch (command) {
    case 'start':
      return start(rest)
    case 'dev':
      return runDevCluster(rest)
    case 'leave': {
      const { url } = nodeUrl(rest, 0)
      const out = (await admin(url, Paths.leave, 'POST', {})) as { member: { id: string; status: string } }
      process.stdout.write(`${out.member.id}: ${out.member.status} (it hands off its partitions, then stops)\n`)
      return
    }
    case 'remove': {
      const { url, rest: [id] } = nodeUrl(rest, 1)
      const out = (await admin(url, Paths.remove, 'POST', { id })) as { member: { id: string; status: string } }
      process.stdout.write(`${out.member.id}: removed; the other nodes re-replicate its partitions\n`)
      return
    }
    case 'status':
      return status(rest)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return
    default:
      throw new ZerohopError('ZH_INVALID_ARGUMENT', `unknown command ${JSON.stringify(command)}; run zerohop help`)
  }
}

main().catch((err: unknown) => {
  const e = err as { code?: string; message?: string }
  process.stderr.write(`zerohop: ${e.message ?? String(err)}${e.code ? ` [${e.code}]` : ''}\n`)
  process.exit(2)
})
