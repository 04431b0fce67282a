// Real clusters for tests and benchmarks: node processes on 127.0.0.1 (or each in a network
// namespace, see netns.ts) with real LevelDB directories in a temp folder. Faults are real: SIGKILL,
// SIGSTOP/SIGCONT, restart on the same data. Only the processes this harness started are signalled,
// by PID; the temp folder is removed on close.
import { spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { readFileSync } from 'node:fs'
import { Agent, request, type Dispatcher } from 'undici'
import type { RingResponse } from '@zerohop/core'
import { sample } from '../../server/src/metrics.js'
import { addUser } from '../../server/src/users.js'
import type { Certs } from './certs.js'
import { waitFor } from './wait.js'

export { waitFor }

export const CLI = fileURLToPath(new URL('../../server/dist/cli.js', import.meta.url))

/** Ports the OS calls free right now (bound to port 0, then released). */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
      const s = net.createServer()
      s.once('error', reject)
      s.listen(0, '127.0.0.1', () => resolve(s))
    })),
  )
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port)
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))))
  return ports
}


/**
 * Node arguments that keep background repair (hint delivery, anti-entropy) out of the way, for tests that need a
 * replica to stay stale until the feature under test (read repair, say) fixes it.
 */
export const NO_BACKGROUND_REPAIR = ['--hint-interval-ms', '3600000', '--ae-interval-ms', '3600000']

export interface ClusterOptions {
  nodes?: number
  n?: number
  partitions?: number
  /** Extra `zerohop start` arguments for every node. */
  args?: string[]
  logLevel?: string
  /**
   * Where each node listens and how it is started (default: 127.0.0.1, started directly). `exec` is a
   * command prefix such as `ip netns exec NS`; it must exec the node, so the PID stays the node's.
   */
  place?: (id: string) => { host: string; exec: string[] }
  /**
   * Secure the cluster. 'secret': a cluster secret (node-to-node requests, versions and contexts
   * signed; clients need no token). 'users': that and a users file with three users, whose tokens are
   * in `cluster.tokens`; the harness's own requests use the admin's. Both are made in the cluster's
   * temp folder.
   */
  secure?: 'secret' | 'users'
  /**
   * Serve HTTPS (see certs.ts): each node runs with its certificate and key and --tls-ca, and is
   * reached at https://. Every node id the cluster starts needs its certificate.
   */
  tls?: Certs
  /** Start only the first `launch` nodes (default all); the others are listed as seeds, and start() starts them later. */
  launch?: number
  /** Wait until every started node serves before resolving (default true). */
  wait?: boolean
}

/** Tokens of a secured cluster's users, by role. */
export interface Tokens {
  admin: string
  reader: string
  writer: string
}

export class NodeProcess {
  child?: ChildProcess
  output = ''
  paused = false

  /** Headers of the harness's own requests (a secured cluster's admin token). */
  headers: Record<string, string> = {}

  /** Verifies the node's certificate, when it serves HTTPS. */
  readonly dispatcher?: Dispatcher

  /** `ca`: the PEM file of the CA of the node's certificate, when it serves HTTPS. */
  constructor(readonly id: string, readonly port: number, readonly dataDir: string, readonly argv: string[], readonly host = '127.0.0.1', readonly exec: string[] = [], readonly ca?: string) {
    if (ca) this.dispatcher = new Agent({ connect: { ca: readFileSync(ca) } })
  }

  get url(): string {
    return `${this.ca ? 'https' : 'http'}://${this.host}:${this.port}`
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null
  }

  start(): void {
    if (this.running) throw new Error(`${this.id} is already running`)
    this.output = ''
    const [cmd, ...prefix] = [...this.exec, process.execPath]
    const child = spawn(cmd, [...prefix, CLI, ...this.argv], { stdio: ['ignore', 'pipe', 'pipe'] })
    child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()))
    child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()))
    this.child = child
    this.paused = false
  }

  exited(): Promise<void> {
    const c = this.child
    if (!c || c.exitCode !== null || c.signalCode !== null) return Promise.resolve()
    return new Promise((resolve) => c.once('exit', () => resolve()))
  }

  /** Send a signal to this node's own PID. */
  signal(sig: NodeJS.Signals): void {
    if (this.child?.pid && this.running) process.kill(this.child.pid, sig)
  }

  async kill(): Promise<void> {
    this.signal('SIGKILL')
    await this.exited()
  }

  /** Graceful stop (SIGTERM), waiting for the process to exit. */
  async stop(): Promise<void> {
    if (this.paused) this.resume()
    this.signal('SIGTERM')
    await this.exited()
  }

  pause(): void {
    this.signal('SIGSTOP')
    this.paused = true
  }

  resume(): void {
    this.signal('SIGCONT')
    this.paused = false
  }

  /** The node's Prometheus text (GET /v1/metrics); read one figure with `sample()` from server/src/metrics.ts. */
  async metrics(): Promise<string> {
    const res = await request(`${this.url}/v1/metrics`, { dispatcher: this.dispatcher, headers: this.headers, headersTimeout: 5000, bodyTimeout: 5000 })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`${this.id}: GET /v1/metrics answered HTTP ${res.statusCode}`)
    return text
  }

  /** GET /v1/ring: the member entries this node knows and the peers it holds down. */
  async ring(): Promise<RingResponse> {
    const res = await request(`${this.url}/v1/ring`, { dispatcher: this.dispatcher, headers: this.headers, headersTimeout: 2000, bodyTimeout: 2000 })
    if (res.statusCode !== 200) throw new Error(`${this.id}: GET /v1/ring answered HTTP ${res.statusCode}`)
    return (await res.body.json()) as RingResponse
  }

  async ready(timeoutMs = 15_000): Promise<void> {
    await waitFor(async () => {
      if (!this.running) throw new Error(`${this.id} exited: ${this.output.slice(-2000)}`)
      const res = await request(`${this.url}/v1/ring`, { dispatcher: this.dispatcher, headers: this.headers, headersTimeout: 1000, bodyTimeout: 1000 })
      await res.body.dump()
      return res.statusCode === 200
    }, { timeoutMs, what: `${this.id} to serve its ring` })
  }
}

/** One metric (with its labels, if given) summed over `nodes`; absent counts as 0. */
export async function sumMetric(nodes: NodeProcess[], name: string, labels = ''): Promise<number> {
  let sum = 0
  for (const n of nodes) sum += sample(await n.metrics(), name, labels) ?? 0
  return sum
}

/** Run a `zerohop` command to completion (60 s at most). */
export function zerohop(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return zerohopWith({}, ...args).then((r) => ({ code: r.code, stdout: r.stdout.toString('utf8'), stderr: r.stderr }))
}

/** Run a `zerohop` command with `input` on its stdin and `env` added; stdout as bytes. */
export function zerohopWith(o: { input?: Uint8Array | string; env?: Record<string, string | undefined> }, ...args: string[]): Promise<{ code: number; stdout: Buffer; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env: { ...process.env, ...o.env }, stdio: ['pipe', 'pipe', 'pipe'] })
    const out: Buffer[] = []
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => out.push(d))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code: code ?? (signal ? 128 : 1), stdout: Buffer.concat(out), stderr })
    })
    child.stdin.end(o.input ?? '')
  })
}

/** A node of the cluster: where it listens (options.place) and its `zerohop start` arguments. */
function nodeProcess(o: ClusterOptions, dir: string, id: string, port: number, membership: string[], extra: string[] = [], tokens?: Tokens): NodeProcess {
  const where = o.place?.(id)
  const dataDir = path.join(dir, id)
  const tls = o.tls && o.tls.nodes[id]
  if (o.tls && !tls) throw new Error(`no certificate for ${id}: make one with makeCerts`)
  const tlsArgs = tls ? ['--tls-cert', tls.cert, '--tls-key', tls.key, '--tls-ca', o.tls!.ca] : []
  // Nodes in network namespaces listen beyond loopback, on addresses only the test's namespaces reach.
  const argv = ['start', '--id', id, ...(where ? ['--host', where.host, ...(o.secure ? [] : ['--insecure'])] : []), '--port', String(port), '--data', dataDir, ...membership,
    '--n', String(o.n ?? 3), '--partitions', String(o.partitions ?? 64), '--log-level', o.logLevel ?? 'warn', ...tlsArgs, ...(o.args ?? []), ...extra,
    ...(o.secure ? ['--cluster-secret-file', path.join(dir, 'cluster.secret')] : []),
    ...(o.secure === 'users' ? ['--users-file', path.join(dir, 'users.json')] : [])]
  const node = new NodeProcess(id, port, dataDir, argv, where?.host, where?.exec, o.tls?.ca)
  if (tokens) node.headers = { authorization: `Bearer ${tokens.admin}` }
  return node
}

/** A secured cluster's secret and (with 'users') its users file, in `dir`; the users' tokens. */
async function secure(dir: string, how: 'secret' | 'users'): Promise<Tokens | undefined> {
  await writeFile(path.join(dir, 'cluster.secret'), randomBytes(32).toString('base64'), { mode: 0o600 })
  if (how === 'secret') return undefined
  const file = path.join(dir, 'users.json')
  return {
    admin: await addUser(file, 'admin', ['read', 'write', 'admin']),
    reader: await addUser(file, 'reader', ['read']),
    writer: await addUser(file, 'writer', ['read', 'write']),
  }
}

export class Cluster {
  private constructor(readonly dir: string, readonly nodes: NodeProcess[], readonly options: ClusterOptions, readonly tokens?: Tokens) {}

  static async start(options: ClusterOptions = {}): Promise<Cluster> {
    const count = options.nodes ?? 3
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-test-'))
    const tokens = options.secure ? await secure(dir, options.secure) : undefined
    const ports = await freePorts(count)
    const ids = ports.map((_, i) => `n${i + 1}`)
    const scheme = options.tls ? 'https' : 'http'
    const seeds = ids.map((id, i) => `${scheme}://${options.place?.(id).host ?? '127.0.0.1'}:${ports[i]}`).join(',')
    const nodes = ids.map((id, i) => nodeProcess(options, dir, id, ports[i], ['--seeds', seeds], [], tokens))
    const cluster = new Cluster(dir, nodes, options, tokens)
    try {
      const launched = nodes.slice(0, options.launch ?? count)
      for (const n of launched) n.start()
      if (options.wait ?? true) await Promise.all(launched.map((n) => n.ready()))
    } catch (err) {
      await cluster.close()
      throw err
    }
    return cluster
  }

  get seeds(): string[] {
    return this.nodes.map((n) => n.url)
  }

  node(id: string): NodeProcess {
    const n = this.nodes.find((x) => x.id === id)
    if (!n) throw new Error(`no node ${id}`)
    return n
  }

  /** Start one more node that joins the running cluster through the first node. */
  async join(id: string, extra: string[] = []): Promise<NodeProcess> {
    const [port] = await freePorts(1)
    const node = nodeProcess(this.options, this.dir, id, port, ['--join', this.nodes[0].url], extra, this.tokens)
    this.nodes.push(node)
    node.start()
    await node.ready()
    return node
  }

  /** Restart a stopped or killed node on its own data directory and wait until it serves. */
  async restart(id: string): Promise<void> {
    const n = this.node(id)
    if (n.running) await n.stop()
    n.start()
    await n.ready()
  }

  /** Kill every process this cluster started and remove its data. */
  async close(): Promise<void> {
    await Promise.all(this.nodes.map(async (n) => {
      if (n.paused) n.resume()
      await n.kill()
      await n.dispatcher?.close()
    }))
    await rm(this.dir, { recursive: true, force: true })
  }
}
