// `zerohop dev` (what `npm start` runs) outlives its own membership changes: a node that leaves stops
// alone while the others keep serving; a later start on the same data runs the remaining nodes and
// says how to start afresh; a crash leaves the rest up; Ctrl-C stops everything with exit 0. Real
// processes: the runner and its three nodes, each runner in its own process group so that a failed
// test can kill whatever is left of it.
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { pastablePath } from '../../server/src/dev.js'
import { CLI, freePorts, waitFor } from '../harness/cluster.js'

const NODES = 3

function canBind(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer()
    s.once('error', () => resolve(false))
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)))
  })
}

/** A port with the `count - 1` after it free too, as `zerohop dev --base-port` needs. */
async function freeBasePort(count: number): Promise<number> {
  for (let attempt = 0; attempt < 20; attempt++) {
    const [base] = await freePorts(1)
    if (base + count > 65535) continue
    const free = await Promise.all(Array.from({ length: count }, (_, i) => canBind(base + i)))
    if (free.every(Boolean)) return base
  }
  throw new Error(`found no ${count} consecutive free ports`)
}

/** Whether a process (or, for a negative number, a process group) exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'
  }
}

class Runner {
  readonly child: ChildProcess
  output = ''
  readonly exited: Promise<number | null>

  constructor(basePort: number, data: string) {
    this.child = spawn(process.execPath, [CLI, 'dev', '--base-port', String(basePort), '--data', data], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] })
    this.child.stdout!.on('data', (d: Buffer) => (this.output += d.toString()))
    this.child.stderr!.on('data', (d: Buffer) => (this.output += d.toString()))
    this.exited = new Promise((resolve) => this.child.once('exit', (code) => resolve(code)))
  }

  get pid(): number {
    return this.child.pid!
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null
  }

  /** Each node's PID, from the line the runner prints as it spawns it. */
  nodePids(): Map<string, number> {
    return new Map([...this.output.matchAll(/^\[(n\d+)\] pid (\d+),/gm)].map((m) => [m[1], Number(m[2])]))
  }

  async up(): Promise<void> {
    await waitFor(() => {
      if (!this.running) throw new Error(`the runner exited:\n${this.output.slice(-3000)}`)
      return this.output.includes('Zerohop dev cluster is up')
    }, { timeoutMs: 20_000, intervalMs: 100, what: 'the dev cluster banner' })
  }

  async saw(text: string, timeoutMs = 15_000): Promise<void> {
    await waitFor(() => this.output.includes(text), { timeoutMs, intervalMs: 100, what: `${JSON.stringify(text)} in:\n${this.output.slice(-3000)}` })
  }

  /** Ctrl-C: SIGINT to the runner alone (not its group), so stopping the nodes is the runner's job. */
  async interrupt(): Promise<number | null> {
    process.kill(this.pid, 'SIGINT')
    let timer: NodeJS.Timeout | undefined
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`the runner did not exit within 15 s of SIGINT:\n${this.output.slice(-3000)}`)), 15_000)))
    try {
      return await Promise.race([this.exited, late])
    } finally {
      clearTimeout(timer)
    }
  }

  /** After a failed test: the runner's whole group (its nodes too), at once. */
  kill(): void {
    if (this.running || alive(-this.pid)) {
      try {
        process.kill(-this.pid, 'SIGKILL')
      } catch {
        // already gone
      }
    }
  }
}

async function http(method: 'GET' | 'PUT' | 'POST', url: string, body?: string): Promise<{ status: number; text: string }> {
  const res = await request(url, { method, body, headers: method === 'POST' ? { 'content-type': 'application/json' } : {}, headersTimeout: 5000, bodyTimeout: 5000 })
  return { status: res.statusCode, text: await res.body.text() }
}

describe('pastablePath', () => {
  it('shows a path as the shell the user typed in takes it', () => {
    expect(pastablePath('./data', '/repo', '/repo')).toBe('./data')
    // npm start from a subfolder runs in the package root: ./data is the root's.
    expect(pastablePath('./data', '/repo', '/repo/examples')).toBe('/repo/data')
    expect(pastablePath('/tmp/my data', '/repo', '/repo')).toBe(`'/tmp/my data'`)
    expect(pastablePath("/tmp/it's", '/repo', '/repo')).toBe(`'/tmp/it'\\''s'`)
  })
})

describe('zerohop dev (npm start)', () => {
  const runners: Runner[] = []
  let dir: string
  let data: string
  let base: number
  const url = (i: number) => `http://127.0.0.1:${base + i}`

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'zh-dev-'))
    data = path.join(dir, 'data')
    base = await freeBasePort(NODES)
  })
  afterAll(async () => {
    for (const r of runners) r.kill()
    await Promise.all(runners.map((r) => r.exited))
    await rm(dir, { recursive: true, force: true })
  })

  it('keeps serving when a node leaves, and Ctrl-C stops every node with exit 0', async () => {
    const runner = new Runner(base, data)
    runners.push(runner)
    await runner.up()
    const pids = runner.nodePids()
    expect([...pids.keys()]).toEqual(['n1', 'n2', 'n3'])

    // POST /v1/admin/leave on n2 (an unsecured node takes it without a token): it hands off, then exits.
    expect((await http('POST', `${url(1)}/v1/admin/leave`, '{}')).status).toBe(202)
    await runner.saw('[n2] left the cluster; the other nodes keep serving')
    expect(runner.output).toContain(`rm -rf ${data}`)
    await waitFor(() => !alive(pids.get('n2')!), { what: 'n2 to exit' })
    expect(runner.running).toBe(true)

    expect((await http('PUT', `${url(0)}/v1/kv/after-leave`, 'still here')).status).toBe(204)
    expect(await http('GET', `${url(2)}/v1/kv/after-leave`)).toEqual({ status: 200, text: 'still here' })

    expect(await runner.interrupt()).toBe(0)
    for (const [id, pid] of pids) expect(alive(pid), `${id} (pid ${pid}) is gone`).toBe(false)
    expect(alive(-runner.pid), 'nothing is left in the runner\'s process group').toBe(false)
  })

  it('a later start runs the remaining nodes, says how to start afresh, and outlives a crash', async () => {
    const runner = new Runner(base, data)
    runners.push(runner)
    await runner.up()
    expect(runner.output).toContain(`[n2] left this cluster earlier (zerohop leave); not started. To start afresh with all nodes: rm -rf ${data}`)
    expect(runner.output).toContain(`Zerohop dev cluster is up: ${url(0)} ${url(2)}\n`)
    expect(await http('GET', `${url(0)}/v1/kv/after-leave`)).toEqual({ status: 200, text: 'still here' })

    // A crash takes only that node.
    const pids = runner.nodePids()
    process.kill(pids.get('n3')!, 'SIGKILL')
    await runner.saw('[n3] exited unexpectedly (SIGKILL); the other nodes keep serving')
    expect(runner.running).toBe(true)
    expect((await http('GET', `${url(0)}/v1/health`)).status).toBe(200)

    expect(await runner.interrupt()).toBe(0)
    for (const [id, pid] of pids) expect(alive(pid), `${id} (pid ${pid}) is gone`).toBe(false)
    expect(alive(-runner.pid), 'nothing is left in the runner\'s process group').toBe(false)
  })
})
