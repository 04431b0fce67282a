// A real HAProxy in front of a test cluster, started from examples/haproxy.cfg itself: only the
// ports change (the frontend's and the stats page's `bind` lines, and one `server` line per node), so
// the configuration users copy is the one the tests run. HAProxy runs in the foreground (`-db`) as a
// child of the test; close() sends SIGTERM to that PID only and removes its temp folder. Needs the
// `haproxy` binary (Debian: apt-get install haproxy), 2.2 or later.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { request } from 'undici'
import { freePorts, waitFor } from './cluster.js'

export const EXAMPLE_CONFIG = fileURLToPath(new URL('../../examples/haproxy.cfg', import.meta.url))

const HAPROXY = 'haproxy'
const MIN_VERSION = [2, 2]

let probed: { version?: string; reason?: string } | undefined

function probe(): { version?: string; reason?: string } {
  if (probed) return probed
  try {
    const out = execFileSync(HAPROXY, ['-v'], { timeout: 10_000, stdio: ['ignore', 'pipe', 'pipe'] }).toString()
    const m = /HAProxy version (\d+)\.(\d+)(\S*)/.exec(out)
    if (!m) probed = { reason: `could not read the version from \`haproxy -v\`: ${out.trim().slice(0, 200)}` }
    else {
      const version = `${m[1]}.${m[2]}${m[3]}`
      const [major, minor] = [Number(m[1]), Number(m[2])]
      const old = major < MIN_VERSION[0] || (major === MIN_VERSION[0] && minor < MIN_VERSION[1])
      probed = old ? { version, reason: `haproxy ${version} is too old: examples/haproxy.cfg needs ${MIN_VERSION.join('.')} or later` } : { version }
    }
  } catch (err) {
    const e = err as { code?: string; message: string }
    probed = { reason: e.code === 'ENOENT' ? 'haproxy is not installed (Debian: apt-get install --no-install-recommends haproxy)' : `haproxy -v failed: ${e.message}` }
  }
  return probed
}

/** Why HAProxy cannot be used here, or undefined if it can. */
export function haproxyUnavailableReason(): string | undefined {
  return probe().reason
}

/** The installed HAProxy's version (e.g. "2.6.12-1+deb12u4"), if any. */
export function haproxyVersion(): string | undefined {
  return probe().version
}

/** `haproxy -c -f FILE`: rejects with HAProxy's messages when the configuration is invalid. */
export function checkConfig(file: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(HAPROXY, ['-c', '-f', file], { stdio: ['ignore', 'pipe', 'pipe'] })
    let out = ''
    child.stdout.on('data', (d: Buffer) => (out += d.toString()))
    child.stderr.on('data', (d: Buffer) => (out += d.toString()))
    child.once('error', reject)
    child.once('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`haproxy -c -f ${file} exited ${code}: ${out.trim()}`))))
  })
}

export interface Server {
  name: string
  port: number
  host?: string
}

export interface Ports {
  /** The frontend's port (8080 in the example). */
  port: number
  /** The stats page's port (8404 in the example). */
  statsPort: number
  servers: Server[]
}

/**
 * The example configuration with other ports: the one `frontend`'s and the one `listen` (stats)
 * section's `bind` lines become 127.0.0.1:PORT, and the one `backend`'s `server` lines are replaced by
 * one per given server, with the options of the example's first `server` line. Anything else in the
 * template stays as it is. Throws when the template no longer has that shape, so a change to the
 * example that the tests would silently stop covering fails loudly instead.
 */
export function renderConfig(template: string, ports: Ports): string {
  const lines = template.split('\n')
  const sections: { kind: string; start: number }[] = []
  lines.forEach((line, i) => {
    const m = /^(global|defaults|frontend|backend|listen)\b/.exec(line)
    if (m) sections.push({ kind: m[1], start: i })
  })
  const only = (kind: string) => {
    const found = sections.filter((s) => s.kind === kind)
    if (found.length !== 1) throw new Error(`the HAProxy template must have exactly one ${kind} section (it has ${found.length})`)
    const s = found[0]
    const next = sections.find((x) => x.start > s.start)
    return { from: s.start + 1, to: next ? next.start : lines.length }
  }
  const matching = (range: { from: number; to: number }, re: RegExp) => {
    const at: number[] = []
    for (let i = range.from; i < range.to; i++) if (re.test(lines[i])) at.push(i)
    return at
  }
  const bind = /^\s*bind\s/
  for (const [kind, port] of [['frontend', ports.port], ['listen', ports.statsPort]] as const) {
    const at = matching(only(kind), bind)
    if (at.length !== 1) throw new Error(`the HAProxy template's ${kind} section must have exactly one bind line (it has ${at.length})`)
    lines[at[0]] = lines[at[0]].replace(/^(\s*bind\s+)\S+/, `$1127.0.0.1:${port}`)
  }
  const server = /^(\s*)server\s+\S+\s+\S+(.*)$/
  const at = matching(only('backend'), server)
  if (at.length === 0) throw new Error('the HAProxy template\'s backend section has no server lines')
  const [, indent, options] = server.exec(lines[at[0]])!
  const generated = ports.servers.map((s) => `${indent}server ${s.name} ${s.host ?? '127.0.0.1'}:${s.port}${options}`)
  for (const i of [...at].reverse()) lines.splice(i, 1)
  lines.splice(at[0], 0, ...generated)
  return lines.join('\n')
}

/** One row of HAProxy's stats CSV (a frontend, a backend or a server), by column name. */
export type StatsRow = Record<string, string>

/** Parse HAProxy's stats CSV: a `# pxname,svname,…` header line, then one line per row. */
export function parseStatsCsv(text: string): StatsRow[] {
  const [head, ...rest] = text.split('\n').filter((l) => l.trim() !== '')
  if (!head?.startsWith('# ')) throw new Error(`not HAProxy stats CSV: ${text.slice(0, 200)}`)
  const names = splitCsvLine(head.slice(2))
  return rest.map((line) => {
    const cells = splitCsvLine(line)
    const row: StatsRow = Object.fromEntries(names.map((n, i) => [n, cells[i] ?? '']))
    // While a check runs, HAProxy reports the last one's status prefixed with "* " (doc/management.txt).
    if (row.check_status?.startsWith('* ')) row.check_status = row.check_status.slice(2)
    return row
  })
}

function splitCsvLine(line: string): string[] {
  const out: string[] = []
  let cell = ''
  let quoted = false
  for (let i = 0; i < line.length; i++) {
    const c = line[i]
    if (quoted && c === '"' && line[i + 1] === '"') {
      cell += '"'
      i++
    } else if (c === '"') {
      quoted = !quoted
    } else if (c === ',' && !quoted) {
      out.push(cell)
      cell = ''
    } else {
      cell += c
    }
  }
  out.push(cell)
  return out
}

export interface HAProxyOptions extends Omit<Ports, 'port' | 'statsPort'> {
  /** Servers that must be UP (a passed check) before start() resolves; default all of them. */
  expectUp?: string[]
  /** Configuration template; default examples/haproxy.cfg. */
  template?: string
  timeoutMs?: number
}

const MAX_OUTPUT = 1 << 20

export class HAProxy {
  output = ''
  private child?: ChildProcess

  private constructor(
    readonly dir: string,
    readonly configFile: string,
    readonly port: number,
    readonly statsPort: number,
    readonly servers: Server[],
    /** The names of the template's frontend and backend sections (rows in the stats). */
    readonly names: { frontend: string; backend: string },
  ) {}

  /** The frontend, where clients send their requests. */
  get url(): string {
    return `http://127.0.0.1:${this.port}`
  }

  get statsUrl(): string {
    return `http://127.0.0.1:${this.statsPort}`
  }

  get pid(): number | undefined {
    return this.child?.pid
  }

  get running(): boolean {
    return !!this.child?.pid && this.child.exitCode === null && this.child.signalCode === null
  }

  /**
   * Write the configuration to a temp folder, start HAProxy on it, and wait until it forwards
   * `GET /v1/health` with 200 and reports every server in `expectUp` UP after a passed check.
   */
  static async start(options: HAProxyOptions): Promise<HAProxy> {
    const reason = haproxyUnavailableReason()
    if (reason) throw new Error(reason)
    const template = await readFile(options.template ?? EXAMPLE_CONFIG, 'utf8')
    const [port, statsPort] = await freePorts(2)
    const config = renderConfig(template, { port, statsPort, servers: options.servers })
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-haproxy-'))
    const name = (kind: string) => new RegExp(`^${kind}\\s+(\\S+)`, 'm').exec(template)?.[1] ?? kind
    const lb = new HAProxy(dir, path.join(dir, 'haproxy.cfg'), port, statsPort, options.servers, { frontend: name('frontend'), backend: name('backend') })
    try {
      await writeFile(lb.configFile, config)
      lb.spawn()
      const expectUp = options.expectUp ?? options.servers.map((s) => s.name)
      await waitFor(async () => {
        if (!lb.running) throw new Error(`haproxy exited (${lb.child?.exitCode ?? lb.child?.signalCode}): ${lb.output.slice(-2000)}`)
        const res = await request(`${lb.url}/v1/health`, { headersTimeout: 1000, bodyTimeout: 1000 })
        await res.body.dump()
        if (res.statusCode !== 200) return false
        const rows = await lb.serverRows()
        return expectUp.every((name) => isUp(rows.find((r) => r.svname === name)))
      }, { timeoutMs: options.timeoutMs ?? 15_000, what: `haproxy to forward /v1/health and see ${expectUp.join(', ')} UP` })
    } catch (err) {
      await lb.close()
      throw err
    }
    return lb
  }

  private spawn(): void {
    const child = spawn(HAPROXY, ['-f', this.configFile, '-db'], { stdio: ['ignore', 'pipe', 'pipe'] })
    const keep = (d: Buffer) => {
      this.output += d.toString()
      if (this.output.length > MAX_OUTPUT) this.output = this.output.slice(-MAX_OUTPUT / 2)
    }
    child.stdout!.on('data', keep)
    child.stderr!.on('data', keep)
    child.once('error', (err) => (this.output += `\nspawn failed: ${err.message}\n`))
    this.child = child
  }

  /** Every row of the stats page (`;csv`): the frontend, the stats listener, the backend and its servers. */
  async stats(): Promise<StatsRow[]> {
    const res = await request(`${this.statsUrl}/;csv`, { headersTimeout: 2000, bodyTimeout: 2000 })
    const text = await res.body.text()
    if (res.statusCode !== 200) throw new Error(`haproxy stats answered HTTP ${res.statusCode}`)
    return parseStatsCsv(text)
  }

  /** The rows of the backend's servers. */
  async serverRows(): Promise<StatsRow[]> {
    return (await this.stats()).filter((r) => r.type === '2' && r.pxname === this.names.backend)
  }

  /** The frontend's row (requests received: `req_tot`; sessions: `stot`). */
  async frontend(): Promise<StatsRow> {
    const row = (await this.stats()).find((r) => r.type === '0' && r.pxname === this.names.frontend)
    if (!row) throw new Error('haproxy stats have no frontend row')
    return row
  }

  /** The backend's row (retries: `wretr`; redispatches: `wredis`; connection and response errors: `econ`, `eresp`). */
  async backend(): Promise<StatsRow> {
    const row = (await this.stats()).find((r) => r.type === '1' && r.pxname === this.names.backend)
    if (!row) throw new Error('haproxy stats have no backend row')
    return row
  }

  /** Wait until HAProxy holds server `name` fully UP (after a passed check) or fully DOWN. */
  async waitForServer(name: string, state: 'UP' | 'DOWN', timeoutMs = 10_000): Promise<StatsRow> {
    return waitFor(async () => {
      const row = (await this.serverRows()).find((r) => r.svname === name)
      if (!row) throw new Error(`haproxy has no server ${name}`)
      return (state === 'UP' ? isUp(row) : row.status === 'DOWN') ? row : undefined
    }, { timeoutMs, what: `haproxy to see ${name} ${state}` })
  }

  /** SIGTERM to HAProxy's own PID (SIGKILL to it if it has not exited in 5 s), then remove the temp folder. */
  async close(): Promise<void> {
    const c = this.child
    if (c?.pid && this.running) {
      const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()))
      process.kill(c.pid, 'SIGTERM')
      const timer = setTimeout(() => {
        if (this.running) process.kill(c.pid!, 'SIGKILL')
      }, 5000)
      await exited
      clearTimeout(timer)
    }
    await rm(this.dir, { recursive: true, force: true })
  }
}

/** UP after a passed check (not merely not yet checked). */
function isUp(row: StatsRow | undefined): boolean {
  return !!row && row.status === 'UP' && row.check_status === 'L7OK'
}
