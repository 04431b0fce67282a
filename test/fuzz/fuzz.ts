// The endpoint fuzzer: a real 3-node cluster (server/dist), keys written through the SDK before the
// run, then `requests` generated requests (generators.ts) sent 48 at a time to every endpoint, each
// reply checked (no 500, no ZH_INTERNAL, a JSON error body on every 4xx/5xx but HEAD), node RSS
// sampled from /proc, and afterwards: every node alive and healthy, the membership unchanged, every
// checked key still holding its value at R=3. A failure names its seed and index: FUZZ_SEED=s
// FUZZ_ONLY=i replays it.
import net from 'node:net'
import { readFile } from 'node:fs/promises'
import { Agent, request } from 'undici'
import { ClusterView, type RingResponse } from '@zerohop/core'
import { connect } from '@zerohop/client'
import { Cluster, type NodeProcess, type Tokens } from '../harness/cluster.js'
import { mulberry32 } from '../harness/prng.js'
import { CHECKED_PREFIX, generate, type FuzzContext, type FuzzRequest } from './generators.js'

export interface FuzzOptions {
  seed: number
  requests: number
  /** Requests in flight at once. */
  concurrency?: number
  /** The run stops sending at this deadline even if `requests` were not all sent. */
  timeBudgetMs?: number
  /** Only these indices (a replay). */
  only?: number[]
  /**
   * Well-formed forged store sets and gossip entries (see generators.ts). Default: on against a
   * secured cluster (they must all be refused), off against an open one (they would be accepted).
   */
  forged?: boolean
  /**
   * fuzzCluster: run against a secured cluster (cluster secret and users file). Each request then goes
   * with no token, a wrong one, or a reader's, writer's or admin's (see `credentials`).
   */
  secure?: boolean
  /** Headers to add to request `index` (a bearer token); not applied to raw-socket requests. */
  credentials?: (req: FuzzRequest, index: number) => Record<string, string>
  /** Keys written before the run and checked after it. */
  checkedKeys?: number
  /** Peak RSS any node may reach. */
  maxRssBytes?: number
  log?: (line: string) => void
}

export interface FuzzFailure {
  seed: number
  index: number
  kind: string
  request: string
  why: string
}

export interface FuzzReport {
  seed: number
  sent: number
  seconds: number
  perSecond: number
  /** Replies by `status code` (code: the error body's, or '-'). */
  byStatus: Record<string, number>
  byKind: Record<string, number>
  /** Requests without a reply, by kind and error (expected for cut-off raw requests and some oversized bodies). */
  noReply: Record<string, number>
  failures: FuzzFailure[]
  rss: Record<string, { beforeMb: number; peakMb: number; afterMb: number }>
  keysChecked: number
  keysIntact: number
  /** What the run could not confirm afterwards (dead node, changed membership, a lost key). */
  problems: string[]
}

/** Node options of the fuzzed cluster: small limits, so oversized bodies are cheap to send. */
export const FUZZ_LIMITS = { maxKeyBytes: 1024, maxValueBytes: 64 * 1024, maxBodyBytes: 1024 * 1024 }

const REQUEST_TIMEOUT_MS = 30_000
const RAW_TIMEOUT_MS = 10_000

async function rssBytes(pid: number | undefined): Promise<number> {
  if (pid === undefined) return 0
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(await readFile(`/proc/${pid}/status`, 'utf8'))
    return m ? Number(m[1]) * 1024 : 0
  } catch {
    return 0
  }
}

function describe(req: FuzzRequest): string {
  const headers = Object.keys(req.headers).length > 0 ? ` ${JSON.stringify(req.headers).slice(0, 200)}` : ''
  const body = req.raw ? ` raw ${req.raw.length} B` : req.body ? ` body ${req.body.length} B` : ''
  return `${req.method} ${req.path.slice(0, 200)}${headers}${body} → node ${req.target + 1}`
}

interface Reply {
  status: number
  headers: Record<string, string | string[] | undefined>
  body: Buffer
}

/** Why a reply breaks the contract, or undefined. */
function checkReply(req: FuzzRequest, r: Reply): { why?: string; code: string } {
  if (!(r.status >= 100 && r.status <= 599)) return { why: `status ${r.status}`, code: '-' }
  const type = String(r.headers['content-type'] ?? '')
  let code = '-'
  if (r.status >= 400 && req.method !== 'HEAD') {
    let e: { code?: unknown; message?: unknown } | undefined
    try {
      e = (JSON.parse(r.body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } }).error
    } catch {
      return { why: `HTTP ${r.status} without a JSON body: ${JSON.stringify(r.body.subarray(0, 120).toString('utf8'))}`, code }
    }
    if (!e || typeof e.code !== 'string' || typeof e.message !== 'string') return { why: `HTTP ${r.status} body is not {"error":{"code","message"}}`, code }
    code = e.code
    if (!type.startsWith('application/json')) return { why: `HTTP ${r.status} error body with content-type ${type}`, code }
  }
  if (r.status === 500 || code === 'ZH_INTERNAL') return { why: `HTTP ${r.status} ${code}`, code }
  return { code }
}

/** A raw request over its own socket: the reply's status line and body, or undefined without one. */
function sendRaw(url: string, req: FuzzRequest): Promise<Reply | undefined> {
  const { hostname, port } = new URL(url)
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: hostname, port: Number(port) })
    const chunks: Buffer[] = []
    const timer = setTimeout(() => {
      socket.destroy()
      if (req.cut) resolve(undefined)
      else reject(new Error(`no complete reply within ${RAW_TIMEOUT_MS} ms`))
    }, RAW_TIMEOUT_MS)
    socket.on('connect', () => {
      socket.write(req.raw!)
      if (req.cut) socket.end()
    })
    socket.on('data', (c: Buffer) => chunks.push(c))
    socket.on('error', () => {}) // a reset after the reply: judged on what arrived
    socket.on('close', () => {
      clearTimeout(timer)
      const text = Buffer.concat(chunks)
      if (text.length === 0) return resolve(undefined)
      const end = text.indexOf('\r\n\r\n')
      const head = text.subarray(0, end < 0 ? text.length : end).toString('latin1').split('\r\n')
      const m = /^HTTP\/1\.[01] (\d{3}) /.exec(head[0] ?? '')
      if (!m) return reject(new Error(`not an HTTP reply: ${JSON.stringify(head[0]?.slice(0, 80))}`))
      const headers: Record<string, string> = {}
      for (const line of head.slice(1)) {
        const i = line.indexOf(':')
        if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim()
      }
      resolve({ status: Number(m[1]), headers, body: end < 0 ? Buffer.alloc(0) : text.subarray(end + 4) })
    })
  })
}

/**
 * Run the fuzzer against a running cluster. Returns the figures and every failed check; throws only
 * on a broken harness.
 */
export async function fuzz(cluster: Cluster, o: FuzzOptions): Promise<FuzzReport> {
  const log = o.log ?? (() => {})
  const nodes = cluster.nodes
  const concurrency = o.concurrency ?? 48
  const deadline = Date.now() + (o.timeBudgetMs ?? 15 * 60_000)
  const problems: string[] = []

  // Before: the ring, the checked keys (SDK, W=3) and a few real contexts of scratch keys.
  const ring: RingResponse = await nodes[0].ring()
  const view = new ClusterView(ring.members, { partitions: ring.partitions, n: ring.n })
  const db = await connect({ seeds: cluster.seeds, token: cluster.tokens?.writer })
  const checked = new Map<string, Buffer>()
  const contexts: string[] = []
  try {
    const count = o.checkedKeys ?? 200
    for (let i = 0; i < count; i += 20) {
      await Promise.all(Array.from({ length: Math.min(20, count - i) }, async (_, j) => {
        const key = `${CHECKED_PREFIX}${i + j}`
        const value = Buffer.from(`value of ${key} (seed ${o.seed})`)
        await db.put(key, value, { w: 3 })
        checked.set(key, value)
      }))
    }
    for (let i = 0; i < 8; i++) contexts.push((await db.put(`fuzz-scratch-${i}`, Buffer.from('x'))).context)
  } finally {
    await db.close()
  }
  const ctx: FuzzContext = {
    nodes: nodes.length,
    partitions: ring.partitions,
    n: ring.n,
    ring: view.current,
    members: ring.members,
    epoch: ring.epoch,
    checkedKeys: [...checked.keys()].map((k) => Buffer.from(k)),
    contexts,
    ...FUZZ_LIMITS,
    forged: o.forged ?? cluster.tokens !== undefined,
  }

  // RSS: before, sampled each second during, after.
  const rss = new Map<string, { before: number; peak: number; after: number }>()
  for (const n of nodes) {
    const b = await rssBytes(n.pid)
    rss.set(n.id, { before: b, peak: b, after: b })
  }
  const sampleRss = async () => {
    for (const n of nodes) {
      const r = rss.get(n.id)!
      r.peak = Math.max(r.peak, await rssBytes(n.pid))
    }
  }
  let sampling: Promise<void> = Promise.resolve()
  const sampler = setInterval(() => (sampling = sampling.then(sampleRss)), 1000)

  const agent = new Agent({ connections: 24, pipelining: 1, headersTimeout: REQUEST_TIMEOUT_MS, bodyTimeout: REQUEST_TIMEOUT_MS })
  const byStatus: Record<string, number> = {}
  const byKind: Record<string, number> = {}
  const noReply: Record<string, number> = {}
  const failures: FuzzFailure[] = []
  const indices = o.only ?? Array.from({ length: o.requests }, (_, i) => i)
  let next = 0
  let sent = 0
  const started = Date.now()

  const one = async (index: number) => {
    let req: FuzzRequest
    try {
      req = generate(o.seed, index, ctx)
    } catch (err) {
      failures.push({ seed: o.seed, index, kind: 'generator', request: '-', why: `the generator threw: ${(err as Error).stack}` })
      return
    }
    const node: NodeProcess = nodes[req.target]
    byKind[req.kind] = (byKind[req.kind] ?? 0) + 1
    const fail = (why: string) => {
      failures.push({ seed: o.seed, index, kind: req.kind, request: describe(req), why })
      log(`FAIL seed=${o.seed} index=${index} ${req.kind}: ${why}\n  ${describe(req)}`)
    }
    let reply: Reply | undefined
    try {
      if (req.raw) reply = await sendRaw(node.url, req)
      else {
        const headers = { ...req.headers, ...o.credentials?.(req, index) }
        const res = await request(`${node.url}${req.path}`, { method: req.method as 'GET', headers, body: req.body, dispatcher: agent })
        reply = { status: res.statusCode, headers: res.headers, body: Buffer.from(await res.body.arrayBuffer()) }
      }
    } catch (err) {
      const e = err as { code?: string; message?: string }
      const what = e.code ?? e.message ?? String(err)
      // The node may close on an oversized body while it is still being sent; anything else is a dropped request.
      if (req.oversized && /SOCKET|ECONNRESET|EPIPE|closed/i.test(`${e.code} ${e.message}`)) {
        noReply[`${req.kind}: ${what}`] = (noReply[`${req.kind}: ${what}`] ?? 0) + 1
      } else fail(`no reply: ${what}${e.message && e.message !== what ? ` (${e.message})` : ''}`)
      return
    }
    if (!reply) {
      if (!req.cut) fail('the connection closed without a reply')
      noReply[`${req.kind}: closed`] = (noReply[`${req.kind}: closed`] ?? 0) + 1
      return
    }
    const { why, code } = checkReply(req, reply)
    const label = `${reply.status} ${code}`
    byStatus[label] = (byStatus[label] ?? 0) + 1
    if (why) fail(why)
  }

  try {
    await Promise.all(Array.from({ length: concurrency }, async () => {
      while (next < indices.length && Date.now() < deadline) {
        const index = indices[next++]
        await one(index)
        sent++
        if (sent % 10_000 === 0) log(`  ${sent} requests, ${Math.round(sent / ((Date.now() - started) / 1000))}/s, ${failures.length} failures`)
      }
    }))
  } finally {
    clearInterval(sampler)
    await sampling
    await agent.close()
  }
  const seconds = (Date.now() - started) / 1000
  if (sent < indices.length) problems.push(`only ${sent} of ${indices.length} requests were sent before the time budget ran out`)

  // After: every node alive and serving, the membership as it was, every checked key unchanged.
  for (const n of nodes) {
    if (!n.running) {
      problems.push(`${n.id} (pid ${n.pid}) is not running: ${n.output.slice(-2000)}`)
      continue
    }
    try {
      const res = await request(`${n.url}/v1/health`, { headersTimeout: 5000, bodyTimeout: 5000 })
      await res.body.dump()
      if (res.statusCode !== 200) problems.push(`${n.id}: /v1/health answered ${res.statusCode}`)
      const members = (await n.ring()).members.map((m) => `${m.id}:${m.status}${m.removed ? ':removed' : ''}`).sort()
      const before = ring.members.map((m) => `${m.id}:${m.status}${m.removed ? ':removed' : ''}`).sort()
      if (members.join() !== before.join()) problems.push(`${n.id}: membership changed from ${before.join(' ')} to ${members.join(' ')}`)
    } catch (err) {
      problems.push(`${n.id}: ${(err as Error).message}`)
    }
  }
  for (const n of nodes) rss.get(n.id)!.after = await rssBytes(n.pid)
  const maxRss = o.maxRssBytes ?? 600 * 1024 * 1024
  for (const [id, r] of rss) if (r.peak > maxRss) problems.push(`${id}: peak RSS ${(r.peak / 2 ** 20).toFixed(0)} MB is over ${(maxRss / 2 ** 20).toFixed(0)} MB`)

  let keysIntact = 0
  const after = await connect({ seeds: cluster.seeds, token: cluster.tokens?.writer })
  try {
    for (const [key, value] of checked) {
      try {
        const got = await after.get(key, { r: 3 })
        const ok = got.found && got.siblings.length === 1 && Buffer.from(got.siblings[0] as Uint8Array).equals(value)
        if (ok) keysIntact++
        else problems.push(`key ${key}: found=${got.found}, ${got.siblings.length} siblings, not the value written`)
      } catch (err) {
        problems.push(`key ${key}: ${(err as Error).message}`)
      }
    }
  } finally {
    await after.close()
  }

  const mb = (b: number) => Math.round((b / 2 ** 20) * 10) / 10
  return {
    seed: o.seed,
    sent,
    seconds,
    perSecond: Math.round(sent / seconds),
    byStatus,
    byKind,
    noReply,
    failures,
    rss: Object.fromEntries([...rss].map(([id, r]) => [id, { beforeMb: mb(r.before), peakMb: mb(r.peak), afterMb: mb(r.after) }])),
    keysChecked: checked.size,
    keysIntact,
    problems,
  }
}

/** Start a 3-node cluster with the fuzz limits, fuzz it, close it (also on failure). */
export async function fuzzCluster(o: FuzzOptions): Promise<FuzzReport> {
  const cluster = await Cluster.start({
    nodes: 3,
    partitions: 64,
    secure: o.secure ? 'users' : undefined,
    args: ['--max-key-bytes', String(FUZZ_LIMITS.maxKeyBytes), '--max-value-bytes', String(FUZZ_LIMITS.maxValueBytes), '--max-body-bytes', String(FUZZ_LIMITS.maxBodyBytes)],
  })
  try {
    return await fuzz(cluster, { ...o, credentials: o.credentials ?? (cluster.tokens && mixedCredentials(o.seed, cluster.tokens)) })
  } finally {
    await cluster.close()
  }
}

/**
 * A seeded mix of credentials, by request index (a replay sends the same): none (30%), a wrong token
 * (15%), a malformed authorization (5%), a reader's (15%), a writer's (25%) or an admin's (10%).
 */
export function mixedCredentials(seed: number, tokens: Tokens): (req: FuzzRequest, index: number) => Record<string, string> {
  const wrong = `zh_writer_${'A'.repeat(43)}`
  return (_req, index): Record<string, string> => {
    const x = mulberry32((seed ^ Math.imul(index + 1, 0x9e3779b1)) >>> 0)()
    const token = x < 0.3 ? undefined : x < 0.45 ? wrong : x < 0.5 ? null : x < 0.65 ? tokens.reader : x < 0.9 ? tokens.writer : tokens.admin
    if (token === undefined) return {}
    return { authorization: token === null ? 'Bearer' : `Bearer ${token}` }
  }
}

/** The report as text: figures first, then failures and problems. */
export function formatReport(r: FuzzReport): string {
  const lines = [
    `seed ${r.seed}: ${r.sent} requests in ${r.seconds.toFixed(1)} s (${r.perSecond}/s); ${r.failures.length} failures, ${r.problems.length} problems`,
    `replies by status and code: ${Object.entries(r.byStatus).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k}=${v}`).join(', ')}`,
    `no reply (expected kinds): ${Object.entries(r.noReply).map(([k, v]) => `${k}=${v}`).join(', ') || 'none'}`,
    `RSS MB before/peak/after: ${Object.entries(r.rss).map(([id, x]) => `${id} ${x.beforeMb}/${x.peakMb}/${x.afterMb}`).join(', ')}`,
    `checked keys intact at R=3: ${r.keysIntact}/${r.keysChecked}`,
  ]
  for (const f of r.failures.slice(0, 50)) lines.push(`FAIL (replay: FUZZ_SEED=${f.seed} FUZZ_ONLY=${f.index}) ${f.kind}: ${f.why}\n  ${f.request}`)
  if (r.failures.length > 50) lines.push(`... and ${r.failures.length - 50} more failures`)
  for (const p of r.problems) lines.push(`PROBLEM: ${p}`)
  return lines.join('\n')
}
