#!/usr/bin/env node
// The `zerohop` command: `start` runs one storage node, `dev` a local 3-node cluster.
import { parseArgs } from 'node:util'
import { ZerohopError } from '@zerohop/core'
import { StorageNode } from './node.js'
import { runDevCluster } from './dev.js'

const USAGE = `zerohop — a Dynamo-style key-value store

Usage:
  zerohop start --id n1 --port 7001 --data ./data/n1 --seeds http://127.0.0.1:7001,http://127.0.0.1:7002,...
  zerohop dev [--nodes 3] [--base-port 7001] [--data ./data]
  zerohop help

start options:
  --id ID                 node id (required), 1-64 of A-Z a-z 0-9 . _ -
  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port to listen on (default 7001)
  --advertise URL         URL other nodes and clients use (default http://HOST:PORT)
  --data DIR              LevelDB directory (default ./data/ID)
  --seeds URL,URL,...     the cluster's nodes (this version: the static membership)
  --n N                   replicas per key (default 3; the same on every node)
  --partitions Q          partitions, a power of two (default 256; the same on every node)
  --weight W              relative capacity (default 1)
  --max-key-bytes B       largest key (default 1024)
  --max-value-bytes B     largest value (default 1048576)
  --max-body-bytes B      largest request body (default 16777216)
  --fsync                 fsync every write
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
  await node.start()
}

async function main(): Promise<void> {
  const [command, ...rest] = process.argv.slice(2)
  switch (command) {
    case 'start':
      return start(rest)
    case 'dev':
      return runDevCluster(rest)
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
