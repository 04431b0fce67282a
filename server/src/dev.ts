// `zerohop dev`: a local cluster of node processes on 127.0.0.1, log lines prefixed by node. It
// outlives its own membership changes: a node that leaves, is removed or crashes leaves the others
// serving, and one whose data directory says it left is not started again (the runner says how to
// start afresh). Ctrl-C stops them all cleanly.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import { UsageError } from './commands.js'
import path from 'node:path'
import { request } from 'undici'
import { Paths, type HealthResponse, type RingResponse } from '@zerohop/core'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

/** How long the runner waits for its nodes to serve before it says what is wrong and stops. */
const READY_TIMEOUT_MS = 30_000
/** A node still running this long after the runner's SIGTERM gets SIGKILL (its own stop takes at most ~10 s). */
const STOP_TIMEOUT_MS = 20_000
/** Lines of a node's output kept to tell why it exited. */
const TAIL_LINES = 20

/** One readable line from a pino JSON line. */
export function formatLogLine(line: string): string {
  let o: Record<string, unknown>
  try {
    o = JSON.parse(line)
  } catch {
    return line
  }
  const { level, time, msg, node: _node, pid: _pid, hostname: _h, ...rest } = o
  const t = typeof time === 'number' ? new Date(time).toISOString().slice(11, 23) : ''
  const extra = Object.entries(rest)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ')
  return `${t} ${LEVELS[level as number] ?? level} ${msg ?? ''}${extra ? ` ${extra}` : ''}`
}

/** A path as the user can paste it into the shell they ran the command from. */
export function pastablePath(p: string, cwd = process.cwd(), initCwd = process.env.INIT_CWD): string {
  // `npm start` runs in the package's root, wherever npm was invoked: a relative path is the root's.
  const shown = !path.isAbsolute(p) && initCwd && path.resolve(initCwd) !== cwd ? path.resolve(cwd, p) : p
  return /^[\w./@%+,:=-]+$/.test(shown) ? shown : `'${shown.replaceAll("'", `'\\''`)}'`
}

/** One node process of the dev cluster, as the runner sees it. */
interface DevNode {
  readonly id: string
  readonly url: string
  readonly child: ChildProcess
  /** Resolves once the process has exited and its output is read. */
  readonly closed: Promise<void>
  /** The runner counts it as running until it has exited and the runner has said why. */
  running: boolean
  /** Whether its /v1/health answered 200 when last asked, and whether it ever did. */
  serving: boolean
  served: boolean
  /** Its own membership status (joining, normal, leaving, left) as its /v1/health last said. */
  member?: string
  tail: string[]
}

export async function runDevCluster(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    strict: true,
    options: {
      nodes: { type: 'string', default: '3' },
      'base-port': { type: 'string', default: '7001' },
      data: { type: 'string', default: './data' },
      host: { type: 'string', default: '127.0.0.1' },
      'cluster-secret-file': { type: 'string' },
      'users-file': { type: 'string' },
    },
  })
  // A secured dev cluster: the same secret and users file for every node.
  const secured = [
    ...(values['cluster-secret-file'] ? ['--cluster-secret-file', values['cluster-secret-file']] : []),
    ...(values['users-file'] ? ['--users-file', values['users-file']] : []),
  ]
  const count = Number(values.nodes)
  const basePort = Number(values['base-port'])
  if (!Number.isInteger(count) || count < 1 || count > 16) throw new UsageError(`--nodes takes a whole number from 1 to 16, got ${JSON.stringify(values.nodes)}`)
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + count > 65535) throw new UsageError(`--base-port takes a port number (1 to ${65535 - count}), got ${JSON.stringify(values['base-port'])}`)
  const host = values.host!
  const data = values.data!
  const wipe = `rm -rf ${pastablePath(data)}`
  const afresh = `To start afresh with all nodes: ${wipe}`
  const urls = Array.from({ length: count }, (_, i) => `http://${host}:${basePort + i}`)
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url))
  const say = (line: string) => process.stdout.write(`${line}\n`)
  // With a users file the ring takes a token: the one the user has, if any (health never does).
  const headers: Record<string, string> = process.env.ZEROHOP_TOKEN ? { authorization: `Bearer ${process.env.ZEROHOP_TOKEN}` } : {}
  const nodes: DevNode[] = []
  let stopping = false

  /** This member's entry as a serving peer knows it, or undefined when none can tell. */
  async function entryOf(id: string) {
    for (const peer of nodes.filter((n) => n.running && n.serving && n.id !== id)) {
      try {
        const res = await request(`${peer.url}${Paths.ring}`, { headers, headersTimeout: 2000, bodyTimeout: 2000 })
        if (res.statusCode !== 200) {
          await res.body.dump()
          continue
        }
        return ((await res.body.json()) as RingResponse).members.find((m) => m.id === id)
      } catch {
        // that peer is going too; ask the next
      }
    }
    return undefined
  }

  /** The line that says why a node exited while the runner was not stopping. */
  async function why(n: DevNode, code: number | null, signal: NodeJS.Signals | null): Promise<string> {
    const out = n.tail.join('\n')
    // Its data directory remembers that it left: StorageNode.start refuses (ZH_CONFLICT).
    const refused = /node \S+ (has left|was removed from) the cluster/.exec(out)
    if (refused && !n.served) {
      const how = refused[1] === 'has left' ? 'left this cluster earlier (zerohop leave)' : 'was removed from this cluster earlier (zerohop remove)'
      return `[${n.id}] ${how}; not started. ${afresh}`
    }
    const entry = await entryOf(n.id)
    if (entry?.removed) return `[${n.id}] was removed from the cluster (zerohop remove) and stopped; the other nodes keep serving. ${afresh}`
    // Without a peer to ask (a users file and no ZEROHOP_TOKEN), its own last word: it was leaving, and stopped cleanly.
    if (entry ? entry.status === 'left' : code === 0 && (n.member === 'leaving' || n.member === 'left')) {
      return `[${n.id}] left the cluster; the other nodes keep serving. A later start runs without it. ${afresh}`
    }
    if (/EADDRINUSE/.test(out)) return `[${n.id}] cannot listen on ${n.url}: the port is in use (another zerohop dev?); stop that, or choose other ports with --base-port`
    return `[${n.id}] exited unexpectedly (${signal ?? `code ${code}`}); the other nodes keep serving (Ctrl-C stops them; start the dev cluster again to bring it back). Its last lines above may say why.`
  }

  for (let i = 0; i < count; i++) {
    const id = `n${i + 1}`
    const dir = path.join(data, id)
    const child = spawn(
      process.execPath,
      [cli, 'start', '--id', id, '--host', host, '--port', String(basePort + i), '--data', dir, '--seeds', urls.join(','), ...secured],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    // 'close' comes after the last line of output, so `why` sees the node's last words.
    const closed = new Promise<void>((resolve) => child.once('close', () => resolve()))
    const node: DevNode = { id, url: urls[i], child, closed, running: true, serving: false, served: false, tail: [] }
    nodes.push(node)
    say(`[${id}] pid ${child.pid}, ${urls[i]}, data ${dir}`)
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => {
        node.tail.push(line)
        if (node.tail.length > TAIL_LINES) node.tail.shift()
        say(`[${id}] ${formatLogLine(line)}`)
      })
    }
    child.on('error', (err) => say(`[${id}] ${err.message}`))
    child.once('close', (code, signal) => {
      if (stopping) {
        node.running = false
        say(`[${id}] ${code === 0 ? 'stopped' : `exited (${signal ?? code})`}`)
        return
      }
      void why(node, code, signal).then((line) => {
        node.running = false
        node.serving = false
        say(line)
        if (!nodes.some((n) => n.running)) {
          say('No node is left running; the dev cluster stops.')
          stop(1)
        }
      })
    })
  }

  function stop(code: number): void {
    if (stopping) return
    stopping = true
    const alive = () => nodes.filter((n) => n.child.exitCode === null && n.child.signalCode === null)
    for (const n of alive()) n.child.kill('SIGTERM')
    const force = setTimeout(() => {
      for (const n of alive()) {
        say(`[${n.id}] still running ${STOP_TIMEOUT_MS / 1000} s after SIGTERM: killed`)
        n.child.kill('SIGKILL')
      }
    }, STOP_TIMEOUT_MS)
    void Promise.all(nodes.map((n) => n.closed)).then(() => {
      clearTimeout(force)
      process.exit(code)
    })
  }
  process.on('SIGINT', () => stop(0))
  process.on('SIGTERM', () => stop(0))

  /** /v1/health (open even with a users file): 200 while the node serves; `member` is its own status. */
  async function ask(n: DevNode): Promise<void> {
    try {
      const res = await request(`${n.url}${Paths.health}`, { headersTimeout: 1000, bodyTimeout: 1000 })
      const health = (await res.body.json()) as HealthResponse
      if (!n.running) return
      n.serving = res.statusCode === 200
      n.served ||= n.serving
      n.member = health.member ?? n.member
    } catch {
      n.serving = false
    }
  }

  function banner(serving: DevNode[]): void {
    const seed = serving[0].url
    say(
      `\nZerohop dev cluster is up: ${serving.map((n) => n.url).join(' ')}\n` +
        `Connect from Node.js:\n` +
        `  import { connect } from '@zerohop/client'\n` +
        `  const db = await connect({ seeds: ['${seed}']${values['users-file'] ? ', token: process.env.ZEROHOP_TOKEN' : ''} })\n` +
        `  await db.put('hello', 'world')\n  const { value } = await db.get('hello')  // Uint8Array of 'world'\n` +
        `Press Ctrl-C to stop all nodes.\n`,
    )
  }

  // Until every running node serves, then for as long as the runner runs: which nodes serve, and
  // each one's own status, so a node that stops after leaving is told from one that crashed.
  const deadline = Date.now() + READY_TIMEOUT_MS
  let announced: Set<DevNode> | undefined
  while (!stopping && nodes.some((n) => n.running)) {
    await Promise.all(nodes.filter((n) => n.running).map(ask))
    if (stopping) break
    const running = nodes.filter((n) => n.running)
    const serving = running.filter((n) => n.serving)
    if (!announced && serving.length > 0 && (serving.length === running.length || Date.now() > deadline)) {
      banner(serving)
      announced = new Set(serving)
      for (const n of running.filter((r) => !r.serving)) say(`[${n.id}] is not serving yet after ${READY_TIMEOUT_MS / 1000} s; its lines above say why`)
    } else if (!announced && Date.now() > deadline) {
      const gone = nodes.filter((n) => !n.running).map((n) => n.id)
      say(
        `\nThe dev cluster did not come up within ${READY_TIMEOUT_MS / 1000} s: ${running.map((n) => n.id).join(', ')} still starting` +
          `${gone.length ? `, ${gone.join(', ')} not running` : ''} (their lines above say why).\n` +
          `A new cluster serves once a majority of its nodes answer one another: fix what stopped the others (a port in use: --base-port).\n` +
          `If ${pastablePath(data)} holds an earlier cluster that cannot form again, start afresh: ${wipe}`,
      )
      stop(1)
      break
    } else if (announced) {
      for (const n of serving.filter((s) => !announced!.has(s))) {
        announced.add(n)
        say(`[${n.id}] serves now at ${n.url}`)
      }
    }
    await new Promise((r) => setTimeout(r, announced ? 500 : 100))
  }
}
