// The operator's and the shell's commands of `zerohop`: data (get, put, delete, explain) through the
// node's client API with the SDK's load-balancer routing, and the cluster (status, ring, leave,
// remove) through the node's JSON endpoints. Every command takes --node (or ZEROHOP_NODE; host:port
// is enough), prints tables for people and JSON with --json, and exits with a documented code.
import { readFileSync } from 'node:fs'
import { parseArgs, type ParseArgsConfig } from 'node:util'
import { Agent, request } from 'undici'
import { ErrorCodes, Paths, ZerohopError, type ClusterMember, type ClusterResponse, type MemberState } from '@zerohop/core'
import { connect, type Client, type ExplainResult } from '@zerohop/client'

/** The exit codes of every command (README, CLI section). */
export const Exit = { ok: 0, notFound: 1, usage: 2, unavailable: 3 } as const

/** The local dev cluster's first node: the default of --node. */
export const DEFAULT_NODE = 'http://127.0.0.1:7001'

const USAGE_CODES = new Set<string>([
  ErrorCodes.INVALID_ARGUMENT,
  ErrorCodes.BAD_CONTEXT,
  ErrorCodes.KEY_TOO_LARGE,
  ErrorCodes.VALUE_TOO_LARGE,
  ErrorCodes.BAD_BODY,
  ErrorCodes.BODY_TOO_LARGE,
  ErrorCodes.CONFLICT,
  ErrorCodes.UNAUTHENTICATED,
  ErrorCodes.FORBIDDEN,
  ErrorCodes.TLS_REQUIRED,
  ErrorCodes.CLUSTER_MISMATCH,
  ErrorCodes.METHOD_NOT_ALLOWED,
])

/** 1 for a key or member that is not there, 2 for what the caller must change, 3 for the cluster not answering enough. */
export function exitCodeOf(err: unknown): number {
  const code = (err as { code?: string }).code
  if (code === ErrorCodes.KEY_NOT_FOUND || code === ErrorCodes.NOT_FOUND) return Exit.notFound
  if (code !== undefined && (USAGE_CODES.has(code) || code.startsWith('ERR_PARSE_ARGS'))) return Exit.usage
  return Exit.unavailable
}

export class UsageError extends ZerohopError {
  constructor(message: string) {
    super(ErrorCodes.INVALID_ARGUMENT, message)
  }
}

/** The node a command asks, how to verify it (--ca) and the token it takes. */
export interface Target {
  url: string
  ca?: Buffer
  token?: string
  json: boolean
}

/** `host:port` or a URL, as http(s)://host:port; a usage error naming the fix otherwise. */
export function nodeUrlOf(given: string, https: boolean): string {
  const raw = /^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? given : `${https ? 'https' : 'http'}://${given}`
  let u: URL
  try {
    u = new URL(raw)
  } catch {
    throw new UsageError(`--node ${JSON.stringify(given)} is not a node's address; give host:port or a URL, e.g. --node 127.0.0.1:7001 or --node http://127.0.0.1:7001`)
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new UsageError(`--node ${given}: a node is reached over http:// or https://, not ${u.protocol}//`)
  if (u.pathname !== '/' || u.search || u.hash) throw new UsageError(`--node ${given}: give the node's address only (scheme, host and port), e.g. ${u.protocol}//${u.host}`)
  return `${u.protocol}//${u.host}`
}

const COMMON = {
  node: { type: 'string' },
  ca: { type: 'string' },
  token: { type: 'string' },
  json: { type: 'boolean' },
} as const satisfies ParseArgsConfig['options']

/** Parse a command's arguments: its own options and the common ones, and exactly `positionals` arguments. */
export function parseCommand<O extends ParseArgsConfig['options']>(command: string, args: string[], options: O, positionals: string[]): { target: Target; values: Record<string, string | boolean | undefined>; rest: string[] } {
  let parsed
  try {
    parsed = parseArgs({ args, strict: true, allowPositionals: true, options: { ...COMMON, ...options } })
  } catch (err) {
    throw new UsageError(`${(err as Error).message.replace(/\. To specify a positional.*$/s, '')}; run zerohop help`)
  }
  const { values, positionals: rest } = parsed as { values: Record<string, string | boolean | undefined>; positionals: string[] }
  if (rest.length !== positionals.length) {
    const want = positionals.length === 0 ? 'no arguments' : positionals.join(' ')
    throw new UsageError(`zerohop ${command} takes ${want}, got ${rest.length === 0 ? 'none' : rest.map((r) => JSON.stringify(r)).join(' ')}; usage: zerohop ${command}${positionals.length ? ' ' + positionals.join(' ') : ''} [--node host:port]`)
  }
  let ca: Buffer | undefined
  if (typeof values.ca === 'string') {
    try {
      ca = readFileSync(values.ca)
    } catch (err) {
      throw new UsageError(`--ca ${values.ca} cannot be read: ${(err as Error).message}`)
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--ca ${values.ca} is not a PEM certificate`)
  }
  const given = (values.node as string | undefined) ?? (process.env.ZEROHOP_NODE || DEFAULT_NODE)
  const token = (values.token as string | undefined) ?? (process.env.ZEROHOP_TOKEN || undefined)
  return { target: { url: nodeUrlOf(given, ca !== undefined), ca, token, json: values.json === true }, values, rest }
}

/** One request to a node's JSON endpoint; its answer, or its error as a typed ZerohopError. */
export async function ask<T>(target: Target, path: string, method: 'GET' | 'POST' = 'GET', body?: object, timeoutMs = 10_000): Promise<T> {
  const { url, token } = target
  const dispatcher = target.ca ? new Agent({ connect: { ca: target.ca } }) : undefined
  const headers: Record<string, string> = {}
  if (body) headers['content-type'] = 'application/json'
  if (token) headers.authorization = `Bearer ${token}`
  try {
    let res
    try {
      res = await request(`${url}${path}`, { dispatcher, method, body: body ? JSON.stringify(body) : undefined, headers, headersTimeout: timeoutMs, bodyTimeout: timeoutMs })
    } catch (err) {
      const code = (err as { code?: string }).code
      const hint = code && /CERT|SELF_SIGNED|UNABLE_TO/.test(code) ? "; give the CA that signed the node's certificate with --ca PATH" : url === DEFAULT_NODE ? ' (the local dev cluster: is npm start running? Otherwise give --node host:port)' : ''
      throw new ZerohopError(ErrorCodes.NO_SEED_REACHABLE, `cannot reach ${url}: ${(err as Error).message}${hint}`)
    }
    const text = await res.body.text()
    let json: { error?: { code?: string; message?: string } }
    try {
      json = JSON.parse(text)
    } catch {
      throw new ZerohopError(ErrorCodes.INVALID_RESPONSE, `${url} answered HTTP ${res.statusCode} with a body that is not JSON (is it a Zerohop node?)`)
    }
    if (res.statusCode >= 400) throw new ZerohopError((json.error?.code as never) ?? ErrorCodes.INTERNAL, json.error?.message ?? `HTTP ${res.statusCode}`)
    return json as T
  } finally {
    await dispatcher?.close()
  }
}

/** An SDK client of the target node in load-balancer routing: the node coordinates each request. */
async function clientOf(target: Target, timeoutMs: number): Promise<Client<Uint8Array>> {
  try {
    return (await connect({ seeds: [target.url], routing: 'load-balancer', token: target.token, tls: target.ca ? { ca: target.ca } : undefined, connectTimeoutMs: timeoutMs })) as Client<Uint8Array>
  } catch (err) {
    if ((err as { code?: string }).code === ErrorCodes.NO_SEED_REACHABLE && target.url === DEFAULT_NODE) {
      ;(err as Error).message += ' (the local dev cluster: is npm start running? Otherwise give --node host:port)'
    }
    throw err
  }
}

function out(text: string): void {
  process.stdout.write(text)
}

function printJson(x: unknown): void {
  out(`${JSON.stringify(x, null, 2)}\n`)
}

const b64 = (v: Uint8Array) => Buffer.from(v).toString('base64')

/** A value for people: its text when it is printable UTF-8, else its size and first bytes in hex. */
export function showValue(v: Uint8Array, max = 60): string {
  const b = Buffer.from(v)
  const text = b.toString('utf8')
  if (!text.includes('\uFFFD') && !/[\x00-\x08\x0e-\x1f\x7f]/.test(text)) return JSON.stringify(text.length > max ? `${text.slice(0, max)}…` : text)
  return `<${b.length} bytes: ${b.subarray(0, 8).toString('hex')}${b.length > 8 ? '…' : ''}>`
}

/** Columns padded to their widest cell. */
export function table(rows: string[][]): string {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd()).join('\n') + '\n'
}

export function bytesOf(n: number): string {
  if (n < 1024) return `${n} B`
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`
  if (n < 1024 ** 3) return `${(n / 1024 / 1024).toFixed(1)} MiB`
  return `${(n / 1024 ** 3).toFixed(1)} GiB`
}

function ago(at: number, now: number): string {
  if (at === 0) return 'never'
  const s = Math.max(0, Math.round((now - at) / 1000))
  return s < 120 ? `${s}s ago` : s < 7200 ? `${Math.round(s / 60)}m ago` : `${Math.round(s / 3600)}h ago`
}

function quorum(values: Record<string, string | boolean | undefined>, name: 'r' | 'w'): number | undefined {
  const v = values[name]
  if (v === undefined) return undefined
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--${name} takes a whole number of replicas (1 to N), got ${JSON.stringify(v)}`)
  return n
}

function timeoutOf(values: Record<string, string | boolean | undefined>, fallback: number): number {
  const v = values['timeout-ms']
  if (v === undefined) return fallback
  const n = Number(v)
  if (!Number.isInteger(n) || n < 1) throw new UsageError(`--timeout-ms takes a positive number of milliseconds, got ${JSON.stringify(v)}`)
  return n
}

const DATA = { r: { type: 'string' }, w: { type: 'string' }, context: { type: 'string' }, 'timeout-ms': { type: 'string' } } as const

async function withClient<T>(target: Target, timeoutMs: number, f: (db: Client<Uint8Array>) => Promise<T>): Promise<T> {
  const db = await clientOf(target, timeoutMs)
  try {
    return await f(db)
  } finally {
    await db.close()
  }
}

/** `zerohop get KEY`: the value to stdout; with several values (siblings) only --json shows them. */
export async function getCommand(args: string[]): Promise<number> {
  const { target, values, rest: [key] } = parseCommand('get', args, DATA, ['KEY'])
  if (values.context !== undefined || values.w !== undefined) throw new UsageError('zerohop get takes --r, not --w or --context (those are for put and delete)')
  const timeoutMs = timeoutOf(values, 2000)
  const r = quorum(values, 'r')
  const res = await withClient(target, timeoutMs, (db) => db.get(key, { r, timeoutMs }))
  if (target.json) {
    printJson({ key, found: res.found, ...(res.siblings.length === 1 ? { value: b64(res.siblings[0]) } : {}), siblings: res.siblings.map(b64), context: res.context })
    return res.found ? Exit.ok : Exit.notFound
  }
  if (!res.found) {
    process.stderr.write(`zerohop: no value for ${JSON.stringify(key)} (never written, or deleted) [ZH_KEY_NOT_FOUND]\n`)
    return Exit.notFound
  }
  if (res.siblings.length > 1) {
    process.stderr.write(`${JSON.stringify(key)} has ${res.siblings.length} concurrent values (siblings): see them with zerohop get ${key} --json, and keep one with zerohop put ${key} VALUE --context CONTEXT (the context it prints)\n`)
    return Exit.ok
  }
  const value = res.siblings[0]
  process.stdout.write(value)
  if (process.stdout.isTTY && value[value.length - 1] !== 0x0a) out('\n')
  return Exit.ok
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const c of process.stdin) chunks.push(c as Buffer)
  return Buffer.concat(chunks)
}

/** `zerohop put KEY VALUE` (VALUE `-` reads stdin): prints the new context. */
export async function putCommand(args: string[]): Promise<number> {
  const { target, values, rest: [key, given] } = parseCommand('put', args, DATA, ['KEY', 'VALUE'])
  if (values.r !== undefined) throw new UsageError('zerohop put takes --w and --context, not --r')
  const timeoutMs = timeoutOf(values, 2000)
  const w = quorum(values, 'w')
  const value = given === '-' ? await readStdin() : Buffer.from(given, 'utf8')
  const context = values.context as string | undefined
  const res = await withClient(target, timeoutMs, (db) => db.put(key, value, { w, context, timeoutMs }))
  if (target.json) {
    printJson({ key, context: res.context, conflict: res.conflict, siblings: res.siblings.map(b64) })
    return Exit.ok
  }
  out(`stored ${JSON.stringify(key)} (${value.byteLength} bytes)${res.conflict ? `; ${res.siblings.length} concurrent values remain (siblings): read with --json and write with --context to resolve` : ''}\ncontext ${res.context}\n`)
  return Exit.ok
}

/** `zerohop delete KEY`: without --context it reads first and deletes what it finds. */
export async function deleteCommand(args: string[]): Promise<number> {
  const { target, values, rest: [key] } = parseCommand('delete', args, DATA, ['KEY'])
  if (values.r !== undefined) throw new UsageError('zerohop delete takes --w and --context, not --r')
  const timeoutMs = timeoutOf(values, 2000)
  const w = quorum(values, 'w')
  const res = await withClient(target, timeoutMs, (db) => db.delete(key, { w, context: values.context as string | undefined, timeoutMs }))
  if (target.json) printJson({ key, context: res.context, conflict: res.conflict })
  else out(`deleted ${JSON.stringify(key)}${res.conflict ? '; values concurrent with the delete remain' : ''}\n`)
  return Exit.ok
}

/** The explanation as JSON: values in base64, as GET /v1/explain/{key} answers. */
function explainJson(key: string, e: ExplainResult<Uint8Array>): object {
  return { key, ...e, replicas: e.replicas.map((r) => ({ ...r, siblings: r.siblings.map(b64) })), hints: e.hints.map((h) => ({ ...h, siblings: h.siblings.map(b64) })) }
}

/** `zerohop explain KEY`: where the key lives and what each replica holds. */
export async function explainCommand(args: string[]): Promise<number> {
  const { target, values, rest: [key] } = parseCommand('explain', args, { 'timeout-ms': { type: 'string' } }, ['KEY'])
  const timeoutMs = timeoutOf(values, 2000)
  const e = await withClient(target, timeoutMs, (db) => db.explain(key, { timeoutMs }))
  if (target.json) {
    printJson(explainJson(key, e))
    return Exit.ok
  }
  out(`key ${JSON.stringify(key)}: partition ${e.partition} of ring ${e.epoch}, as ${target.url} sees it\n`)
  out(`preference list: ${e.preferenceList.map((m) => `${m.id} (${m.role}, ${m.up ? 'up' : 'down'})`).join(', ')}\n\n`)
  const rows = [['REPLICA', 'ROLE', 'HOLDS', 'VALUES', 'DIGEST']]
  for (const r of e.replicas) {
    const holds = r.error ? `error: ${r.error.cause}${r.error.status ? ` ${r.error.status}` : ''}` : r.found ? (r.siblings.length > 1 ? `${r.siblings.length} siblings` : 'value') : r.tombstone ? 'tombstone' : 'nothing'
    rows.push([r.id, r.role, holds, r.siblings.map((v) => showValue(v, 24)).join(', ') || '-', r.digest?.slice(0, 12) ?? '-'])
  }
  out(table(rows))
  out(`\nreplicas agree: ${e.agree ? 'yes' : 'no (read repair or anti-entropy brings them together)'}\n`)
  if (e.hints.length === 0) out('hints: none held for this key\n')
  for (const h of e.hints) out(`hint: ${h.holder} holds ${h.tombstone ? 'a tombstone' : h.siblings.map((v) => showValue(v, 24)).join(', ')} for ${h.target} (digest ${h.digest.slice(0, 12)}), until ${h.target} is back\n`)
  if (e.unasked.length > 0) out(`not asked for hints (down or not answering): ${e.unasked.join(', ')}\n`)
  out(e.moving ? `moving: a join or leave moves this partition from ${e.moving.from.join(',')} to ${e.moving.to.join(',')}; ready: ${e.moving.ready.join(',') || 'none yet'}\n` : 'moving: no\n')
  return Exit.ok
}

function healthOf(m: ClusterMember): string {
  if (m.status === 'left' || m.status === 'removed') return '-'
  return m.health === 'self' ? 'up (asked)' : m.health
}

/** `zerohop status`: one row per member. */
export async function statusCommand(args: string[]): Promise<number> {
  const { target } = parseCommand('status', args, {}, [])
  const c = await ask<ClusterResponse>(target, Paths.cluster)
  if (target.json) {
    printJson(c)
    return Exit.ok
  }
  out(`cluster ring ${c.epoch}: n=${c.n}, ${c.partitions} partitions, ${c.members.filter((m) => m.status === 'normal').length} normal members; as ${c.node} sees it\n`)
  if (c.transition) out(`a join or leave is in progress: ${c.moves.length} partitions move; ${c.handoff.pulled} of ${c.handoff.gained} handed off\n`)
  out('\n')
  const rows = [['ID', 'URL', 'ZONE', 'WEIGHT', 'STATUS', 'HEALTH', 'OWNS', 'HINTS', 'HANDOFF', 'ANTI-ENTROPY', 'TOMBSTONES']]
  for (const m of c.members) {
    const s = m.stats
    rows.push([
      m.id,
      m.url,
      m.zone,
      String(m.weight),
      m.status,
      healthOf(m),
      `${(m.share * 100).toFixed(1)}%`,
      s ? (s.hints.items === 0 ? '0' : `${s.hints.items} (${bytesOf(s.hints.bytes)})`) : '?',
      s ? (s.handoff.active ? `${s.handoff.pulled}/${s.handoff.gained} partitions` : '-') : '?',
      s ? `${ago(s.antiEntropy.lastRoundAt, s.time)}, ${s.antiEntropy.keysRepaired} repaired` : '?',
      s ? String(s.tombstones.held) : '?',
    ])
  }
  out(table(rows))
  const missing = c.members.filter((m) => m.error && m.status !== 'left' && m.status !== 'removed')
  if (missing.length > 0) out(`\n? figures not available: ${missing.map((m) => `${m.id} (${m.error})`).join('; ')}\n`)
  return Exit.ok
}

/** `zerohop ring`: ownership per node, balance and the moves of a join or leave. */
export async function ringCommand(args: string[]): Promise<number> {
  const { target, values } = parseCommand('ring', args, { moves: { type: 'string' } }, [])
  const c = await ask<ClusterResponse>(target, Paths.cluster)
  if (target.json) {
    printJson({ node: c.node, epoch: c.epoch, n: c.n, partitions: c.partitions, balance: c.balance, members: c.members.map(({ id, status, share, weight }) => ({ id, status, weight, share, primaries: c.owners.filter((o) => o === id).length })), owners: c.owners, moves: c.moves, handoff: c.handoff })
    return Exit.ok
  }
  // As the server counts shares: each partition has min(N, members holding replicas) of them.
  const slots = c.partitions * Math.min(c.n, c.members.filter((m) => m.share > 0).length)
  out(`ring ${c.epoch}: ${c.partitions} partitions, n=${c.n}; balance ${c.balance.toFixed(2)} (largest share over the mean; 1.00 is even)\n\n`)
  const rows = [['ID', 'STATUS', 'WEIGHT', 'PRIMARY', 'REPLICAS', 'SHARE']]
  for (const m of c.members) {
    if (m.status === 'left') continue
    rows.push([m.id, m.status, String(m.weight), String(c.owners.filter((o) => o === m.id).length), String(Math.round(m.share * slots)), `${(m.share * 100).toFixed(1)}%`])
  }
  out(table(rows))
  if (c.moves.length === 0) {
    out('\npending moves: none\n')
    return Exit.ok
  }
  const shown = values.moves === undefined ? 10 : Number(values.moves)
  if (!Number.isInteger(shown) || shown < 0) throw new UsageError(`--moves takes how many moves to list, got ${JSON.stringify(values.moves)}`)
  out(`\npending moves: ${c.moves.length} partitions (${c.handoff.pulled} of ${c.handoff.gained} handed off)\n`)
  for (const m of c.moves.slice(0, shown)) out(`  partition ${m.partition}: ${m.from.join(',')} -> ${m.to.join(',')}\n`)
  if (c.moves.length > shown) out(`  … and ${c.moves.length - shown} more (--moves ${c.moves.length} lists them, --json too)\n`)
  return Exit.ok
}

/** `zerohop remove ID`: the others re-replicate a dead node's partitions. */
export async function removeCommand(args: string[]): Promise<number> {
  const { target, rest: [id] } = parseCommand('remove', args, {}, ['NODE_ID'])
  const res = await ask<{ member: MemberState; changed: boolean }>(target, Paths.remove, 'POST', { id })
  if (target.json) printJson(res)
  else if (res.changed) out(`${id}: removed; the other nodes now re-replicate its partitions from the remaining replicas (zerohop status shows the handoff)\n`)
  else out(`${id}: already removed; its partitions are being re-replicated (zerohop status shows the handoff)\n`)
  return Exit.ok
}

function bar(done: number, total: number): string {
  const width = 30
  const filled = total === 0 ? width : Math.round((done / total) * width)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${done}/${total} partitions`
}

/**
 * `zerohop leave`: the node hands off its partitions, then stops. Unless --no-wait, the handoff's
 * progress is shown (a bar on a terminal, a line per change otherwise) until the node has left.
 */
export async function leaveCommand(args: string[], sleep: (ms: number) => Promise<void>): Promise<number> {
  const { target, values } = parseCommand('leave', args, { 'no-wait': { type: 'boolean' }, 'timeout-ms': { type: 'string' } }, [])
  // The one command that cannot be undone: it never falls back to ZEROHOP_NODE or the dev cluster.
  if (values.node === undefined) throw new UsageError('zerohop leave makes the node it asks leave the cluster for good; name that node: --node host:port')
  const timeoutMs = timeoutOf(values, 3_600_000)
  const res = await ask<{ member: MemberState; changed: boolean }>(target, Paths.leave, 'POST', {})
  const id = res.member.id
  if (!target.json) out(`${id}: ${res.changed ? 'leaving' : `already ${res.member.status}`}; it hands off its partitions, then stops\n`)
  if (values['no-wait']) {
    if (target.json) printJson(res)
    return Exit.ok
  }
  // The leaving node stops once it has left: the other members are asked then.
  let others: string[] = []
  let last = ''
  const tty = process.stdout.isTTY === true && !target.json
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline) {
    let c: ClusterResponse | undefined
    for (const url of [target.url, ...others]) {
      try {
        c = await ask<ClusterResponse>({ ...target, url }, Paths.cluster, 'GET', undefined, 5000)
        break
      } catch {
        // that one is gone or not answering: the next
      }
    }
    const me = c?.members.find((m) => m.id === id)
    if (c) others = c.members.filter((m) => m.id !== id && m.status !== 'left' && m.status !== 'removed').map((m) => m.url)
    if (me && (me.status === 'left' || me.status === 'removed')) {
      if (tty) out('\n')
      if (target.json) printJson({ member: { id, status: me.status }, handoff: c!.handoff })
      else out(`${id}: left the cluster; its partitions are on the other nodes\n`)
      return Exit.ok
    }
    if (c) {
      const line = c.transition ? bar(c.handoff.pulled, c.handoff.gained) : 'waiting for the handoff to start'
      if (tty) out(`\r${line}`)
      else if (line !== last && !target.json) out(`${line}\n`)
      last = line
    } else if (others.length === 0) {
      throw new ZerohopError(ErrorCodes.NO_SEED_REACHABLE, `no member answers; ${id} may have left (zerohop status --node another-node shows it)`)
    }
    await sleep(1000)
  }
  if (tty) out('\n')
  throw new ZerohopError(ErrorCodes.REQUEST_TIMEOUT, `${id} is still leaving after ${timeoutMs} ms; the handoff goes on (zerohop status shows it)`)
}
