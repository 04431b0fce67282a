#!/usr/bin/env node
// The `zerohop` command: `start` runs one storage node, `dev` a local cluster, `user` edits a users
// file; the data and cluster commands (get, put, delete, explain, status, ring, leave, remove) are in
// commands.ts.
import { parseArgs } from 'node:util'
import { ErrorCodes, ZerohopError } from '@zerohop/core'
import { StorageNode } from './node.js'
import type { NodeOptions } from './config.js'
import { runDevCluster } from './dev.js'
import { Exit, UsageError, deleteCommand, table, exitCodeOf, explainCommand, getCommand, leaveCommand, putCommand, removeCommand, ringCommand, statusCommand } from './commands.js'
import { addUser, parseRoles, readUsersFile, removeUser } from './users.js'

const USAGE = `zerohop — a Dynamo-style key-value store

Usage:
  zerohop start --id n1 --port 7001 --data ./data/n1 --seeds http://127.0.0.1:7001,http://127.0.0.1:7002,...
  zerohop start --id n4 --port 7004 --join http://127.0.0.1:7001     join a running cluster
  zerohop dev [--nodes 3] [--base-port 7001] [--data ./data] [--cluster-secret-file PATH] [--users-file PATH]

  zerohop get KEY [--r R]                the value to stdout (siblings: --json)
  zerohop put KEY VALUE [--w W] [--context CTX]   VALUE - reads stdin; prints the new context
  zerohop delete KEY [--w W] [--context CTX]      without --context it reads first
  zerohop explain KEY                    partition, preference list, each replica's versions, hints, moves
  zerohop status                         one row per member: status, up/down, share, hints, handoff, ...
  zerohop ring                           ownership per node, balance, pending moves [--moves N]
  zerohop leave [--no-wait]              the node asked hands off its data and leaves (shows progress)
  zerohop remove NODE_ID                 remove a dead node; the others re-replicate its data
  zerohop user add NAME --roles read,write,admin --users-file PATH   a token for a client (printed once)
  zerohop help

  Options of those commands:
  --node ADDR             the node to ask: host:port or a URL (default $ZEROHOP_NODE, else
                          http://127.0.0.1:7001, the dev cluster's first node)
  --json                  JSON instead of tables and text
  --token TOKEN           for a node with a users file (default $ZEROHOP_TOKEN)
  --ca PATH               verify an https:// node with this PEM CA instead of the system's
  --timeout-ms MS         deadline of a get, put, delete or explain (default 2000); of leave's wait (1 h)

  Exit codes: 0 ok; 1 not found (no such key or member); 2 usage (bad arguments, refused token or
  role, a change the cluster's state does not allow); 3 unreachable, quorum not met, or timed out.

start options:
  --id ID                 node id (required), 1-64 of A-Z a-z 0-9 . _ -
  --host HOST             address to listen on (default 127.0.0.1)
  --port PORT             port to listen on (default 7001)
  --advertise URL         URL other nodes and clients use (default http://HOST:PORT, https:// with TLS)
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
  --cluster-secret-file PATH  secret shared by every member (16+ bytes): node-to-node requests,
                          versions and contexts are signed with it; required to listen beyond loopback
  --users-file PATH       users and their roles (zerohop user add): client requests need a token;
                          required, with the secret, to listen beyond loopback
  --insecure              listen beyond loopback without a cluster secret and users file (open to anyone)
  --log-level LEVEL       fatal|error|warn|info|debug|trace|silent (default info)
  --tls-cert PATH         PEM certificate of this node; with --tls-key it serves HTTPS only (plain
                          HTTP gets 426) and advertises https://HOST:PORT
  --tls-key PATH          PEM private key of --tls-cert
  --tls-ca PATH           PEM CA of the cluster: peers are verified with it and shown this node's
                          certificate (mutual TLS); clients need no certificate
  --headers-timeout-ms MS time to receive a request's headers (default 10000)
  --body-timeout-ms MS    time to receive a whole request; a slower one gets 408 (default 30000)
  --idle-timeout-ms MS    an idle keep-alive connection is closed after this (default 65000)
  --max-connections N     most open connections (default 10000)
  --max-connections-per-client N  most open connections from one address (default 1024)
  --max-inflight-bytes B  most bytes of request bodies held at once; beyond, 503 (default 268435456)

user commands (the users file is read by every node; copy it to each):
  zerohop user add NAME --roles read,write,admin --users-file PATH   prints a new token, once
  zerohop user remove NAME --users-file PATH
  zerohop user list --users-file PATH
`

function num(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isFinite(n)) throw new ZerohopError('ZH_INVALID_ARGUMENT', `--${name} takes a number, got ${JSON.stringify(v)}`)
  return n
}

/**
 * The options of `zerohop start`, by kind: each is the flag of its name in kebab case (`timeoutMs` is
 * --timeout-ms). `seeds` is a comma-separated list. One table, so a new option is one word here.
 */
const START_OPTIONS = {
  number: ['port', 'gossipIntervalMs', 'phiThreshold', 'handoffRateBytes', 'dropDelayMs', 'seedGraceMs', 'maxHintBytes', 'hintIntervalMs', 'hintTtlMs', 'tombstoneGraceMs', 'reapIntervalMs', 'aeIntervalMs', 'aeMaxKeysPerSecond', 'r', 'w', 'timeoutMs', 'n', 'partitions', 'weight', 'maxKeyBytes', 'maxValueBytes', 'maxBodyBytes', 'headersTimeoutMs', 'bodyTimeoutMs', 'idleTimeoutMs', 'maxConnections', 'maxConnectionsPerClient', 'maxInflightBytes'],
  string: ['id', 'host', 'advertise', 'data', 'join', 'zone', 'clusterSecretFile', 'usersFile', 'logLevel', 'tlsCert', 'tlsKey', 'tlsCa'],
  boolean: ['fsync', 'insecure'],
} as const satisfies Record<'number' | 'string' | 'boolean', readonly (keyof NodeOptions)[]>

const flagOf = (option: string) => option.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)

async function start(args: string[]): Promise<void> {
  const kinds = Object.entries(START_OPTIONS) as ['number' | 'string' | 'boolean', readonly string[]][]
  const options = Object.fromEntries([
    ['seeds', { type: 'string' as const }],
    ...kinds.flatMap(([kind, keys]) => keys.map((k) => [flagOf(k), { type: kind === 'boolean' ? ('boolean' as const) : ('string' as const) }])),
  ])
  const { values } = parseArgs({ args, strict: true, options }) as { values: Record<string, string | boolean | undefined> }
  if (!values.id) throw new ZerohopError('ZH_INVALID_ARGUMENT', 'zerohop start needs --id (e.g. --id n1)')
  const o: Record<string, unknown> = {}
  for (const [kind, keys] of kinds) {
    for (const k of keys) {
      const v = values[flagOf(k)]
      o[k] = kind === 'number' ? num(flagOf(k), v as string | undefined) : v
    }
  }
  const seeds = values.seeds as string | undefined
  o.seeds = seeds ? seeds.split(',').map((x) => x.trim()).filter(Boolean) : undefined
  const node = new StorageNode(o as unknown as NodeOptions)
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

/** `zerohop user add|remove|list`: edits the users file; `add` prints the new token alone on the last line (or in --json). */
async function user(args: string[]): Promise<number> {
  const [sub, ...rest] = args
  let parsed
  try {
    parsed = parseArgs({ args: rest, strict: true, allowPositionals: true, options: { roles: { type: 'string' }, 'users-file': { type: 'string' }, json: { type: 'boolean' } } })
  } catch (err) {
    throw new UsageError(`${(err as Error).message}; run zerohop help`)
  }
  const { values, positionals } = parsed
  const file = values['users-file']
  const json = values.json === true
  const print = (x: object) => process.stdout.write(`${JSON.stringify(x, null, 2)}\n`)
  if (sub !== 'add' && sub !== 'remove' && sub !== 'list') throw new UsageError(`unknown command zerohop user ${sub ?? ''}; use add, remove or list`)
  if (!file) throw new UsageError(`zerohop user ${sub} needs --users-file PATH (the file every node reads with --users-file)`)
  if (sub === 'list') {
    const users = (await readUsersFile(file)).users
    if (json) print({ users: users.map((u) => ({ name: u.name, roles: u.roles, created: u.created })) })
    else process.stdout.write(table([['NAME', 'ROLES', 'CREATED'], ...users.map((u) => [u.name, u.roles.join(','), u.created])]))
    return Exit.ok
  }
  if (positionals.length !== 1) throw new UsageError(`zerohop user ${sub} takes one user name, e.g. zerohop user ${sub} app --users-file ${file}`)
  const [name] = positionals
  if (sub === 'add') {
    if (!values.roles) throw new UsageError('zerohop user add needs --roles, a comma-separated list of read, write, admin')
    const roles = parseRoles(values.roles)
    const token = await addUser(file, name, roles)
    if (json) print({ name, roles, token })
    else process.stdout.write(`added user ${name} (${roles.join(',')}) to ${file}; nodes reading it pick the change up within a second.\nIts token, shown only now (the file keeps only a hash of it):\n${token}\n`)
    return Exit.ok
  }
  if (!(await removeUser(file, name))) throw new ZerohopError(ErrorCodes.NOT_FOUND, `there is no user ${name} in ${file}; zerohop user list --users-file ${file} lists them`)
  if (json) print({ name, removed: true })
  else process.stdout.write(`removed user ${name}: its token stops working within a second on nodes reading ${file}\n`)
  return Exit.ok
}

// Output piped into a reader that stops early (zerohop status | head): stop quietly, not with a stack.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(Exit.ok)
  throw err
})

/** Runs the command; resolves to its exit code (a long-running start or dev resolves 0 and keeps running). */
async function main(): Promise<number> {
  const [command, ...rest] = process.argv.slice(2)
  switch (command) {
    case 'start':
      await start(rest)
      return Exit.ok
    case 'dev':
      await runDevCluster(rest)
      return Exit.ok
    case 'get':
      return getCommand(rest)
    case 'put':
      return putCommand(rest)
    case 'delete':
      return deleteCommand(rest)
    case 'explain':
      return explainCommand(rest)
    case 'status':
      return statusCommand(rest)
    case 'ring':
      return ringCommand(rest)
    case 'leave':
      return leaveCommand(rest, (ms) => new Promise((r) => setTimeout(r, ms)))
    case 'remove':
      return removeCommand(rest)
    case 'user':
      return user(rest)
    case undefined:
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(USAGE)
      return Exit.ok
    default:
      throw new UsageError(`unknown command ${JSON.stringify(command)}; run zerohop help`)
  }
}

/** The error on stderr (as JSON with --json), with its code; the exit code says what kind it was. */
main().then(
  (code) => {
    if (code !== Exit.ok) process.exitCode = code
  },
  (err: unknown) => {
    const e = err as { code?: string; message?: string }
    let message = e.message ?? String(err)
    if ((e.code === ErrorCodes.UNAUTHENTICATED || e.code === ErrorCodes.FORBIDDEN) && !process.argv.includes('--token')) {
      message += process.env.ZEROHOP_TOKEN ? ' (the token in ZEROHOP_TOKEN was refused: pass another with --token TOKEN)' : ' (this node has a users file: pass --token TOKEN or set ZEROHOP_TOKEN)'
    }
    if (process.argv.includes('--json')) process.stderr.write(`${JSON.stringify({ error: { code: e.code ?? ErrorCodes.INTERNAL, message } })}\n`)
    else process.stderr.write(`zerohop: ${message}${e.code ? ` [${e.code}]` : ''}\n`)
    process.exit(exitCodeOf(err))
  },
)
