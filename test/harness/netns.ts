// A private test network of Linux network namespaces, so fault tests can cut real node processes off
// the network: one namespace per host (a node, or an SDK client that must sit on one side of a
// partition), each joined by a veth pair to a bridge in the root namespace, where the test driver
// runs and reaches every host. Needs root and iproute2 (`ip`). Only what this module created is ever
// changed or deleted: its namespaces, veths and bridge all carry this run's tag in their names.
//
// Two kinds of fault, the two shapes a real network failure takes:
// - cut(host): the host's root-side veth goes down, so every packet to or from the host is silently
//   dropped. Peers see timeouts (connect and request), never a refusal: a dead switch port, a
//   pulled cable.
// - partition(a, b): inside each namespace, an `unreachable` route for every address of the other
//   side. A new connection fails at once with EHOSTUNREACH, the errno a process gets when a router
//   on the path answers ICMP host unreachable, while established connections see their packets
//   vanish (TCP treats that ICMP as a soft error) and time out. Both sides and the driver still
//   reach their own side. The other route types were rejected because no real network produces
//   their errors: `blackhole` gives the sender EINVAL and `prohibit` EACCES.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)

/** Runs `ip` (iproute2) with the given arguments; rejects with its stderr. */
async function ip(...args: string[]): Promise<string> {
  try {
    return (await run('ip', args, { timeout: 10_000 })).stdout
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new Error(`ip ${args.join(' ')}: ${e.stderr?.trim() || e.message}`)
  }
}

function ipSync(...args: string[]): string {
  return execFileSync('ip', args, { timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).toString()
}

let reason: string | null | undefined

/**
 * Why this machine cannot build test networks, or undefined if it can. Probes by doing it once: a
 * namespace with a veth pair inside, deleted again (root alone is not enough in some containers).
 */
export function unavailableReason(): string | undefined {
  if (reason !== undefined) return reason ?? undefined
  reason = null
  if (process.platform !== 'linux') reason = `network namespaces are Linux only (this is ${process.platform})`
  else if (process.getuid?.() !== 0) reason = 'network namespaces need root'
  else {
    const probe = `zh${tagOf(process.pid, seq++)}-probe`
    try {
      ipSync('netns', 'add', probe)
      ipSync('-n', probe, 'link', 'add', 'zhprobe0', 'type', 'veth', 'peer', 'name', 'zhprobe1')
    } catch (err) {
      const e = err as { code?: string; stderr?: Buffer; message: string }
      reason = e.code === 'ENOENT' ? 'the ip command (iproute2) is not installed' : `ip netns does not work here: ${e.stderr?.toString().trim() || e.message}`
    } finally {
      try {
        ipSync('netns', 'del', probe)
      } catch {
        // never created
      }
    }
  }
  return reason ?? undefined
}

let seq = 0

/** A short name part unique to this process and network: interface names are at most 15 bytes. */
function tagOf(pid: number, n: number): string {
  return `${pid.toString(36)}${n.toString(36)}`
}

/** IPv4 networks (as [address, prefix length]) the root namespace already has addresses or routes in. */
function networksInUse(): [number, number][] {
  const out: [number, number][] = []
  const text = `${ipSync('-o', '-4', 'addr', 'show')}\n${ipSync('-4', 'route', 'show', 'table', 'all')}`
  for (const m of text.matchAll(/(?:^|\s)(\d+\.\d+\.\d+\.\d+)(?:\/(\d+))?(?=\s)/g)) {
    out.push([toInt(m[1]), m[2] === undefined ? 32 : Number(m[2])])
  }
  return out
}

function toInt(a: string): number {
  return a.split('.').reduce((acc, o) => acc * 256 + Number(o), 0)
}

function overlaps([a, alen]: [number, number], [b, blen]: [number, number]): boolean {
  const len = Math.min(alen, blen)
  const mask = len === 0 ? 0 : (0xffffffff << (32 - len)) >>> 0
  return ((a & mask) >>> 0) === ((b & mask) >>> 0)
}

/** Every network this process made and has not closed, for the exit handler. */
const open = new Set<TestNetwork>()
let exitHandler = false

/** Where a node of a Cluster listens and how it is started: see ClusterOptions.place. */
export interface Placement {
  host: string
  exec: string[]
}

export class TestNetwork {
  readonly #tag: string
  readonly #subnet: string
  readonly #hosts: string[]
  readonly bridge: string
  /** Created so far, so a failure half-way through still cleans up what exists. */
  readonly #namespaces: string[] = []
  readonly #veths: string[] = []
  #bridgeMade = false
  /** Routes added by partition(): [namespace, address]. */
  #blocked: [string, string][] = []
  readonly #cut = new Set<string>()
  #closed = false

  private constructor(tag: string, subnet: string, hosts: string[]) {
    this.#tag = tag
    this.#subnet = subnet
    this.#hosts = hosts
    this.bridge = `zh${tag}br`
  }

  /**
   * Build the network: a bridge at 10.X.Y.254/24, and per host a namespace with `lo` up and a veth
   * at 10.X.Y.(i+1)/24. X.Y come from the PID, moved on past any network the machine already uses.
   */
  static async create(hosts: string[]): Promise<TestNetwork> {
    const why = unavailableReason()
    if (why) throw new Error(`cannot build a test network: ${why}`)
    if (hosts.length === 0 || hosts.length > 250) throw new Error('a test network has 1 to 250 hosts')
    if (new Set(hosts).size !== hosts.length || hosts.some((h) => !/^[A-Za-z0-9_-]{1,32}$/.test(h))) {
      throw new Error(`host names must be distinct, 1-32 of A-Z a-z 0-9 _ -: ${hosts.join(', ')}`)
    }
    const n = seq++
    const tag = tagOf(process.pid, n)
    const used = [...networksInUse(), ...[...open].map((t): [number, number] => [toInt(`${t.#subnet}.0`), 24])]
    let subnet: string | undefined
    for (let attempt = 0; attempt < 256 && !subnet; attempt++) {
      const k = (process.pid * 7 + n * 131 + attempt * 977) % (128 * 256)
      const candidate = `10.${64 + (k >> 8)}.${k & 255}`
      if (!used.some((u) => overlaps(u, [toInt(`${candidate}.0`), 24]))) subnet = candidate
    }
    if (!subnet) throw new Error('no free 10.X.Y.0/24 for a test network')
    const net = new TestNetwork(tag, subnet, hosts)
    open.add(net)
    if (!exitHandler) {
      exitHandler = true
      // A run that crashes or forgets close() still removes its namespaces (synchronously: 'exit').
      process.on('exit', () => {
        for (const t of open) t.#closeSync()
      })
    }
    try {
      await net.#build()
    } catch (err) {
      await net.close()
      throw err
    }
    return net
  }

  async #build(): Promise<void> {
    await ip('link', 'add', this.bridge, 'type', 'bridge')
    this.#bridgeMade = true
    await ip('addr', 'add', `${this.#subnet}.254/24`, 'dev', this.bridge)
    await ip('link', 'set', this.bridge, 'up')
    await Promise.all(this.#hosts.map(async (host, i) => {
      const ns = this.namespace(host)
      const outside = this.#veth(host)
      const inside = `zh${this.#tag}p${i}`
      await ip('netns', 'add', ns)
      this.#namespaces.push(ns)
      await ip('link', 'add', outside, 'type', 'veth', 'peer', 'name', inside)
      this.#veths.push(outside)
      await ip('link', 'set', inside, 'netns', ns)
      await ip('-n', ns, 'link', 'set', inside, 'name', 'eth0')
      await ip('-n', ns, 'addr', 'add', `${this.address(host)}/24`, 'dev', 'eth0')
      await ip('-n', ns, 'link', 'set', 'eth0', 'up')
      await ip('-n', ns, 'link', 'set', 'lo', 'up')
      await ip('link', 'set', outside, 'master', this.bridge)
      await ip('link', 'set', outside, 'up')
    }))
  }

  get hosts(): readonly string[] {
    return this.#hosts
  }

  #index(host: string): number {
    const i = this.#hosts.indexOf(host)
    if (i < 0) throw new Error(`no host ${host} in this test network (${this.#hosts.join(', ')})`)
    return i
  }

  /** The host's address (10.X.Y.i), reachable from the root namespace. */
  address(host: string): string {
    return `${this.#subnet}.${this.#index(host) + 1}`
  }

  /** The host's namespace name. */
  namespace(host: string): string {
    this.#index(host)
    return `zh${this.#tag}-${host}`
  }

  #veth(host: string): string {
    return `zh${this.#tag}v${this.#index(host)}`
  }

  /** Command prefix that runs a program inside the host's namespace. `ip netns exec` execs, so the PID is the program's. */
  exec(host: string): string[] {
    return ['ip', 'netns', 'exec', this.namespace(host)]
  }

  /** For Cluster.start({ place }): each node listens on its host's address, in its namespace. */
  place = (host: string): Placement => ({ host: this.address(host), exec: this.exec(host) })

  /** Drop every packet to and from the host (timeouts for everyone, the driver included). */
  async cut(host: string): Promise<void> {
    await ip('link', 'set', this.#veth(host), 'down')
    this.#cut.add(host)
  }

  async heal(host: string): Promise<void> {
    await ip('link', 'set', this.#veth(host), 'up')
    this.#cut.delete(host)
  }

  /**
   * Split the hosts in `a` from those in `b` (hosts in neither still reach both, as does the driver).
   * One partition at a time: heal it before making another.
   */
  async partition(a: string[], b: string[]): Promise<void> {
    if (this.#blocked.length > 0) throw new Error('a partition is already in place: healPartition() first')
    if (a.length === 0 || b.length === 0) throw new Error('a partition needs hosts on both sides')
    if (a.some((h) => b.includes(h))) throw new Error(`a host cannot be on both sides: ${a.filter((h) => b.includes(h)).join(', ')}`)
    const routes: [string, string][] = []
    for (const [from, to] of [[a, b], [b, a]]) for (const h of from) for (const t of to) routes.push([this.namespace(h), this.address(t)])
    for (const [ns, addr] of routes) {
      await ip('-n', ns, 'route', 'add', 'unreachable', `${addr}/32`)
      this.#blocked.push([ns, addr])
    }
  }

  async healPartition(): Promise<void> {
    while (this.#blocked.length > 0) {
      const [ns, addr] = this.#blocked[this.#blocked.length - 1]
      await ip('-n', ns, 'route', 'del', 'unreachable', `${addr}/32`)
      this.#blocked.pop()
    }
  }

  /** Commands that undo everything, each tried on its own: [ip arguments]. */
  #teardown(): string[][] {
    return [
      // Deleting the root end removes the pair at once; a namespace lingers while a process is in it.
      ...this.#veths.map((v) => ['link', 'del', v]),
      ...this.#namespaces.map((ns) => ['netns', 'del', ns]),
      ...(this.#bridgeMade ? [['link', 'del', this.bridge]] : []),
    ]
  }

  /**
   * Processes still inside this network's namespaces. Every one was started by this test run (only
   * it enters these namespaces); close() kills them by PID so none outlives its network.
   */
  #leftoverPids(sync: boolean): number[] | Promise<number[]> {
    const parse = (s: string) => s.split(/\s+/).filter(Boolean).map(Number).filter((p) => Number.isInteger(p) && p > 0 && p !== process.pid)
    if (sync) return this.#namespaces.flatMap((ns) => {
      try {
        return parse(ipSync('netns', 'pids', ns))
      } catch {
        return []
      }
    })
    return Promise.all(this.#namespaces.map((ns) => ip('netns', 'pids', ns).then(parse, () => []))).then((l) => l.flat())
  }

  /** Delete every namespace, veth and the bridge this network made; safe to call twice. */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    for (const pid of await this.#leftoverPids(false)) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    const errors: string[] = []
    for (const args of this.#teardown()) {
      await ip(...args).catch((err: Error) => {
        // A veth goes with its namespace and vice versa: only a surviving name is an error.
        if (!/Cannot find device|No such file|does not exist/i.test(err.message)) errors.push(err.message)
      })
    }
    open.delete(this)
    if (errors.length > 0) throw new Error(`test network ${this.#tag} not fully removed:\n${errors.join('\n')}`)
  }

  #closeSync(): void {
    if (this.#closed) return
    this.#closed = true
    for (const pid of this.#leftoverPids(true) as number[]) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
    for (const args of this.#teardown()) {
      try {
        ipSync(...args)
      } catch {
        // best effort at exit
      }
    }
    open.delete(this)
  }
}

const CLIENT_SCRIPT = fileURLToPath(new URL('./netns-client.mjs', import.meta.url))

/** A failure the SDK raised in the client process, with its code and per-replica causes. */
export class RemoteError extends Error {
  constructor(readonly remoteName: string, readonly code: string | undefined, message: string, readonly replicas?: { id: string; cause: string; code?: string }[]) {
    super(message)
    this.name = 'RemoteError'
  }
}

export interface RemoteGetResult<V> {
  found: boolean
  value?: V
  siblings: V[]
  context: string
}

export interface RemoteReplica<V> {
  id: string
  found: boolean
  siblings: V[]
  digest: string | null
  error?: { cause: string; code?: string }
}

/**
 * An SDK client running inside a host's namespace (netns-client.mjs, on the built SDK), so it sits
 * on that host's side of a partition. JSON commands in, JSON answers out, one per line; every call
 * has a deadline, so a wedged process fails the test instead of hanging it.
 */
export class RemoteClient<V = unknown> {
  readonly #child: ChildProcess
  readonly #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()
  #next = 1
  #buffer = ''
  #stderr = ''

  private constructor(child: ChildProcess) {
    this.#child = child
    child.stdout!.on('data', (d: Buffer) => this.#read(d.toString()))
    child.stderr!.on('data', (d: Buffer) => (this.#stderr = (this.#stderr + d.toString()).slice(-4000)))
    child.once('exit', (code, signal) => {
      for (const [, p] of this.#pending) {
        clearTimeout(p.timer)
        p.reject(new Error(`client process exited (${signal ?? code}): ${this.#stderr}`))
      }
      this.#pending.clear()
    })
  }

  /** Start the client process in `host`'s namespace and connect it to `seeds`. */
  static async start<V = unknown>(net: TestNetwork, host: string, options: { seeds: string[]; encoding?: 'json' | 'bytes'; timeoutMs?: number; [k: string]: unknown }): Promise<RemoteClient<V>> {
    const [cmd, ...prefix] = net.exec(host)
    const child = spawn(cmd, [...prefix, process.execPath, CLIENT_SCRIPT], { stdio: ['pipe', 'pipe', 'pipe'] })
    const client = new RemoteClient<V>(child)
    try {
      await client.#call('connect', { options })
    } catch (err) {
      await client.close()
      throw err
    }
    return client
  }

  get pid(): number | undefined {
    return this.#child.pid
  }

  #read(chunk: string): void {
    this.#buffer += chunk
    for (let nl = this.#buffer.indexOf('\n'); nl >= 0; nl = this.#buffer.indexOf('\n')) {
      const line = this.#buffer.slice(0, nl)
      this.#buffer = this.#buffer.slice(nl + 1)
      let msg: { id: number; result?: unknown; error?: { name: string; code?: string; message: string; replicas?: RemoteError['replicas'] } }
      try {
        msg = JSON.parse(line)
      } catch {
        continue
      }
      const p = this.#pending.get(msg.id)
      if (!p) continue
      this.#pending.delete(msg.id)
      clearTimeout(p.timer)
      if (msg.error) p.reject(new RemoteError(msg.error.name, msg.error.code, msg.error.message, msg.error.replicas))
      else p.resolve(msg.result)
    }
  }

  #call<T>(op: string, args: object, deadlineMs = 30_000): Promise<T> {
    const id = this.#next++
    return new Promise<T>((resolve, reject) => {
      if (!this.#child.stdin?.writable || this.#child.exitCode !== null) return reject(new Error(`client process is not running: ${this.#stderr}`))
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`client ${op} got no answer in ${deadlineMs} ms`))
      }, deadlineMs)
      this.#pending.set(id, { resolve: resolve as (v: unknown) => void, reject, timer })
      this.#child.stdin.write(`${JSON.stringify({ id, op, ...args })}\n`)
    })
  }

  get(key: string, options: { r?: number; timeoutMs?: number } = {}): Promise<RemoteGetResult<V>> {
    return this.#call('get', { key, options })
  }

  put(key: string, value: V, options: { context?: string; w?: number; timeoutMs?: number; strict?: boolean } = {}): Promise<{ context: string; conflict: boolean; siblings: V[] }> {
    return this.#call('put', { key, value, options })
  }

  delete(key: string, options: { context?: string; w?: number; timeoutMs?: number } = {}): Promise<{ context: string; conflict: boolean }> {
    return this.#call('delete', { key, options })
  }

  explain(key: string, options: { timeoutMs?: number } = {}): Promise<{ replicas: RemoteReplica<V>[] }> {
    return this.#call('explain', { key, options })
  }

  /** Which nodes the SDK sends to now, and its node-up/node-down events since connect (ms after it). */
  view(): Promise<{ up: Record<string, boolean>; events: { at: number; event: string; id: string; reason: string }[] }> {
    return this.#call('view', {})
  }

  /** Close the SDK and wait for the process to exit; SIGKILL (by its PID) if it does not within 5 s. */
  async close(): Promise<void> {
    const child = this.#child
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((r) => child.once('exit', () => r()))
    await this.#call('close', {}, 5000).catch(() => undefined)
    child.stdin?.end()
    const timer = setTimeout(() => child.pid && child.kill('SIGKILL'), 5000)
    await exited
    clearTimeout(timer)
  }
}
