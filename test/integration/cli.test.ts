// The `zerohop` command against a real 4-node cluster: data commands (get, put, delete, explain)
// through a node's client API, cluster commands (status, ring, leave, remove), --node as host:port or
// ZEROHOP_NODE, --json, and the exit codes (0 ok, 1 not found, 2 usage, 3 unreachable).
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { execFile } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { request } from 'undici'
import type { ClusterResponse, ExplainBody, NodeStats } from '@zerohop/core'
import { CLI, Cluster, freePorts, waitFor, zerohop, zerohopWith } from '../harness/cluster.js'

const FAST = ['--gossip-interval-ms', '200', '--drop-delay-ms', '500']

let cluster: Cluster
/** n1 as host:port, the way an operator types it. */
let n1: string

beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 4, partitions: 64, args: FAST })
  n1 = cluster.node('n1').url.replace('http://', '')
})
afterAll(async () => {
  await cluster?.close()
})

const json = <T>(r: { stdout: Buffer | string }) => JSON.parse(r.stdout.toString()) as T

describe('data commands', () => {
  it('put then get: the value on stdout, byte for byte (VALUE - reads stdin); --node takes host:port', async () => {
    const put = await zerohop('put', 'greeting', 'hello', '--node', n1)
    expect(put.code, put.stderr).toBe(0)
    expect(put.stdout).toMatch(/^stored "greeting" \(5 bytes\)\ncontext \S+\n$/)
    const get = await zerohopWith({}, 'get', 'greeting', '--node', n1)
    expect(get.code, get.stderr).toBe(0)
    expect(get.stdout.toString()).toBe('hello')

    const bytes = Buffer.from([0, 1, 2, 255, 10, 13, 0x80])
    const piped = await zerohopWith({ input: bytes }, 'put', 'binary', '-', '--node', n1, '--w', '3')
    expect(piped.code, piped.stderr).toBe(0)
    const back = await zerohopWith({}, 'get', 'binary', '--node', n1, '--r', '3')
    expect(back.code, back.stderr).toBe(0)
    expect(Buffer.compare(back.stdout, bytes)).toBe(0)
  })

  it('get of a missing key exits 1 (also with --json, which says found: false)', async () => {
    const missing = await zerohop('get', 'never-written', '--node', n1)
    expect(missing.code).toBe(1)
    expect(missing.stdout).toBe('')
    expect(missing.stderr).toContain('ZH_KEY_NOT_FOUND')
    const asJson = await zerohop('get', 'never-written', '--node', n1, '--json')
    expect(asJson.code).toBe(1)
    expect(json<{ found: boolean }>(asJson).found).toBe(false)
  })

  it('siblings: get says so on stderr; --json lists them with the context; put --context resolves them; delete removes the key', async () => {
    for (const v of ['red', 'blue']) expect((await zerohop('put', 'colour', v, '--node', n1)).code).toBe(0)
    const plain = await zerohop('get', 'colour', '--node', n1)
    expect(plain.code, plain.stderr).toBe(0)
    expect(plain.stdout).toBe('')
    expect(plain.stderr).toMatch(/2 concurrent values \(siblings\).*--json/)
    const both = await zerohop('get', 'colour', '--node', n1, '--json')
    expect(both.code).toBe(0)
    const read = json<{ found: boolean; siblings: string[]; context: string }>(both)
    expect(read.siblings.map((b) => Buffer.from(b, 'base64').toString()).sort()).toEqual(['blue', 'red'])

    const resolved = await zerohop('put', 'colour', 'purple', '--node', n1, '--context', read.context, '--json')
    expect(resolved.code, resolved.stderr).toBe(0)
    expect(json<{ conflict: boolean }>(resolved).conflict).toBe(false)
    expect((await zerohop('get', 'colour', '--node', n1)).stdout).toBe('purple')

    const del = await zerohop('delete', 'colour', '--node', n1)
    expect(del.code, del.stderr).toBe(0)
    expect(del.stdout).toBe('deleted "colour"\n')
    expect((await zerohop('get', 'colour', '--node', n1)).code).toBe(1)
  })

  it('ZEROHOP_NODE picks the node; an unreachable one exits 3 with ZH_NO_SEED_REACHABLE', async () => {
    const viaEnv = await zerohopWith({ env: { ZEROHOP_NODE: n1 } }, 'get', 'greeting')
    expect(viaEnv.code, viaEnv.stderr).toBe(0)
    expect(viaEnv.stdout.toString()).toBe('hello')
    const [closed] = await freePorts(1)
    const down = await zerohopWith({ env: { ZEROHOP_NODE: `127.0.0.1:${closed}` } }, 'get', 'greeting', '--timeout-ms', '1000')
    expect(down.code).toBe(3)
    expect(down.stderr).toContain('ZH_NO_SEED_REACHABLE')
    const status = await zerohop('status', '--node', `127.0.0.1:${closed}`)
    expect(status.code).toBe(3)
    expect(status.stderr).toMatch(/cannot reach http:\/\/127\.0\.0\.1:\d+/)
  })

  it('bad arguments exit 2 and say what to change', async () => {
    const cases: [string[], RegExp][] = [
      [['get'], /takes KEY, got none/],
      [['put', 'k'], /takes KEY VALUE/],
      [['get', 'k', '--r', 'two', '--node', n1], /--r takes a whole number/],
      [['get', 'k', '--r', '9', '--node', n1], /r must be/],
      [['get', 'k', '--w', '2', '--node', n1], /get takes --r, not --w/],
      [['status', '--nodes', n1], /Unknown option '--nodes'/],
      [['status', '--node', 'ftp://127.0.0.1:1'], /--node .*http:\/\/ or https:\/\//],
      [['status', '--node', 'http://127.0.0.1:1/v1/ring'], /address only/],
      [['frobnicate'], /unknown command "frobnicate"; run zerohop help/],
      // Leaving is for good: the node must be named, never the default.
      [['leave'], /name that node: --node host:port/],
      [['dev', '--nodes', '99'], /--nodes takes a whole number from 1 to 16, got "99"/],
      [['dev', '--base-port', 'x'], /--base-port takes a port number/],
      [['put', 'k', 'v', '--node', n1, '--context', 'not-a-context'], /context/],
    ]
    for (const [args, message] of cases) {
      const r = await zerohop(...args)
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2)
      expect(r.stderr, args.join(' ')).toMatch(message)
    }
    const asJson = await zerohop('get', '--json')
    expect(asJson.code).toBe(2)
    expect(JSON.parse(asJson.stderr).error.code).toBe('ZH_INVALID_ARGUMENT')
  })
})

describe('explain', () => {
  it('shows the partition, primaries and spare, each replica agreeing; with a primary paused, the hint held for it', async () => {
    await zerohop('put', 'cart', 'pen', '--node', n1, '--w', '3')
    const healthy = await zerohop('explain', 'cart', '--node', n1, '--json')
    expect(healthy.code, healthy.stderr).toBe(0)
    const e = json<ExplainBody>(healthy)
    expect(e.preferenceList.map((m) => m.role)).toEqual(['primary', 'primary', 'primary', 'spare'])
    expect(e.replicas.map((r) => r.id)).toEqual(e.preferenceList.slice(0, 3).map((m) => m.id))
    expect(e.replicas.every((r) => r.found && r.digest === e.replicas[0].digest)).toBe(true)
    expect(e.agree).toBe(true)
    expect(e.hints).toEqual([])
    expect(e.moving).toBeNull()
    const human = await zerohop('explain', 'cart', '--node', n1)
    expect(human.code).toBe(0)
    expect(human.stdout).toContain(`partition ${e.partition} of ring ${e.epoch}`)
    expect(human.stdout).toMatch(/replicas agree: yes/)

    // Pause a primary other than n1 (the node asked), wait until n1 holds it down, write: a spare
    // (or a primary) keeps the write as a hint for it.
    const victim = cluster.node(e.preferenceList.slice(0, 3).map((m) => m.id).find((id) => id !== 'n1')!)
    victim.pause()
    try {
      await waitFor(async () => (await cluster.node('n1').ring()).down.includes(victim.id), { timeoutMs: 20_000, what: `n1 to hold ${victim.id} down` })
      const put = await zerohop('put', 'cart', 'pencil', '--node', n1)
      expect(put.code, put.stderr).toBe(0)
      const paused = await zerohop('explain', 'cart', '--node', n1, '--json')
      expect(paused.code, paused.stderr).toBe(0)
      const p = json<ExplainBody>(paused)
      expect(p.preferenceList.find((m) => m.id === victim.id)?.up).toBe(false)
      expect(p.agree).toBe(false)
      expect(p.unasked).toContain(victim.id)
      const hint = p.hints.find((h) => h.target === victim.id)
      expect(hint, JSON.stringify(p.hints)).toBeDefined()
      expect(hint!.siblings.map((b) => Buffer.from(b, 'base64').toString())).toContain('pencil')
      const text = await zerohop('explain', 'cart', '--node', n1)
      expect(text.stdout).toMatch(new RegExp(`hint: \\S+ holds .*"pencil".* for ${victim.id}`))
    } finally {
      victim.resume()
    }
  })
})

describe('cluster commands', () => {
  it('status: one row per member with status, health, share and figures; --json has every member\'s stats', async () => {
    // The member paused above is back: wait until n1 holds every member up again.
    await waitFor(async () => json<ClusterResponse>(await zerohop('status', '--node', n1, '--json')).members.every((m) => m.health === 'up' || m.health === 'self'), { timeoutMs: 20_000, what: 'every member up' })
    // Under load a member can look suspect for a moment (phi past half the threshold): the table is
    // asked again until it shows all four up.
    const rows = (text: string) => ['n1', 'n2', 'n3', 'n4'].every((id) => new RegExp(`^${id} +http://127\\.0\\.0\\.1:\\d+ +default +1 +normal +up`, 'm').test(text))
    const out = await waitFor(async () => {
      const r = await zerohop('status', '--node', n1)
      return r.code === 0 && rows(r.stdout) ? r : undefined
    }, { timeoutMs: 20_000, what: 'zerohop status to show every member normal and up' })
    expect(out.stdout).toMatch(/^ID +URL +ZONE +WEIGHT +STATUS +HEALTH +OWNS +HINTS +HANDOFF +ANTI-ENTROPY +TOMBSTONES$/m)
    const c = json<ClusterResponse>(await zerohop('status', '--node', n1, '--json'))
    expect(c.node).toBe('n1')
    expect(c.members.map((m) => m.id)).toEqual(['n1', 'n2', 'n3', 'n4'])
    expect(c.members.reduce((a, m) => a + m.share, 0)).toBeCloseTo(1, 5)
    for (const m of c.members) {
      expect(m.stats?.id, m.error).toBe(m.id)
      expect(m.stats!.hints.items).toBeGreaterThanOrEqual(0)
    }
    // The coordinated writes above are timed, per operation, on n1.
    const puts = c.members[0].stats!.requests.find((r) => r.route === '/v1/kv' && r.method === 'PUT' && r.via === 'http')
    expect(puts?.count).toBeGreaterThanOrEqual(5)
    expect(puts!.buckets.at(-1)).toBeLessThanOrEqual(puts!.count)
  })

  it('/v1/stats and /v1/metrics carry per-operation latency histograms', async () => {
    const stats = (await (await request(`${cluster.node('n2').url}/v1/stats`)).body.json()) as NodeStats
    expect(stats.id).toBe('n2')
    expect(stats.requests.some((r) => r.route === '/v1/replica/store' && r.count > 0)).toBe(true)
    // The scans of the data at start are long done.
    expect(stats.antiEntropy.ready).toBe(true)
    expect(stats.tombstones.scanned).toBe(true)
    const metrics = await cluster.node('n1').metrics()
    expect(metrics).toMatch(/^zerohop_request_duration_seconds_bucket\{le="0\.005",route="\/v1\/kv",method="PUT",via="http"\} \d+$/m)
    expect(metrics).toMatch(/^zerohop_request_duration_seconds_count\{route="\/v1\/kv",method="GET",via="http"\} [1-9]\d*$/m)
  })

  it('/v1/cluster asks each member for its figures once per second at most, however often it is asked', async () => {
    const statsServed = async () => ((await (await request(`${cluster.node('n2').url}/v1/stats`)).body.json()) as NodeStats).requests.filter((r) => r.route === '/v1/stats').reduce((a, r) => a + r.count, 0)
    const before = await statsServed()
    const started = Date.now()
    const answers = await Promise.all(Array.from({ length: 50 }, async () => (await (await request(`${cluster.node('n1').url}/v1/cluster`)).body.json()) as ClusterResponse))
    const elapsed = Date.now() - started
    expect(answers.every((a) => a.members.length === 4)).toBe(true)
    // The fan-outs in that window (1 s each), plus this test's own two /v1/stats requests to n2.
    expect((await statsServed()) - before).toBeLessThanOrEqual(Math.ceil(elapsed / 1000) + 2 + 1)
  })

  it('ring: ownership per node, balance, no pending moves when settled', async () => {
    const out = await zerohop('ring', '--node', n1)
    expect(out.code, out.stderr).toBe(0)
    expect(out.stdout).toMatch(/balance \d\.\d\d/)
    expect(out.stdout).toContain('pending moves: none')
    const r = json<{ partitions: number; balance: number; members: { id: string; primaries: number; share: number }[]; owners: string[] }>(await zerohop('ring', '--node', n1, '--json'))
    expect(r.owners).toHaveLength(r.partitions)
    expect(r.members.reduce((a, m) => a + m.primaries, 0)).toBe(r.partitions)
    expect(r.balance).toBeGreaterThanOrEqual(1)
    expect(r.balance).toBeLessThan(1.5)
  })

  it('leave shows the handoff until the node has left, as a bar on a terminal; remove of a node that left says so (exit 2)', async () => {
    const n4 = cluster.node('n4')
    // On a terminal (util-linux's script gives the command one): the bar redrawn in place with \r.
    const out = await new Promise<{ code: number; stdout: string }>((resolve, reject) => {
      execFile('script', ['-qec', `${process.execPath} ${CLI} leave --node ${n4.url}`, '/dev/null'], { timeout: 60_000 }, (err, stdout) => {
        if (err && typeof (err as { code?: unknown }).code !== 'number') reject(err)
        else resolve({ code: err ? (err as { code: number }).code : 0, stdout })
      })
    })
    expect(out.code, out.stdout).toBe(0)
    const text = out.stdout.replace(/\r\n/g, '\n')
    expect(text.startsWith('n4: leaving; it hands off its partitions, then stops\n'), text).toBe(true)
    expect(text.trimEnd().endsWith('n4: left the cluster; its partitions are on the other nodes'), text).toBe(true)
    expect(text).toMatch(/\r\[[#.]{30}\] \d+\/\d+ partitions/)
    await waitFor(() => !n4.running, { timeoutMs: 30_000, what: 'n4 to exit after leaving' })
    const status = json<ClusterResponse>(await zerohop('status', '--node', n1, '--json'))
    expect(status.members.find((m) => m.id === 'n4')?.status).toBe('left')
    const remove = await zerohop('remove', 'n4', '--node', n1)
    expect(remove.code).toBe(2)
    expect(remove.stderr).toContain('node n4 has left the cluster already; there is nothing to remove [ZH_CONFLICT]')
    const unknown = await zerohop('remove', 'n9', '--node', n1)
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('ZH_NOT_FOUND')
  })
})

describe('user commands', () => {
  it('add (--json gives the token), list as a table and as JSON, remove; an unknown user exits 1, a missing --users-file 2', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-users-'))
    try {
      const file = path.join(dir, 'users.json')
      const added = await zerohop('user', 'add', 'app', '--roles', 'read,write', '--users-file', file, '--json')
      expect(added.code, added.stderr).toBe(0)
      expect(json<{ name: string; roles: string[]; token: string }>(added)).toMatchObject({ name: 'app', roles: ['read', 'write'], token: expect.stringMatching(/^zh_app_/) })
      const list = await zerohop('user', 'list', '--users-file', file)
      expect(list.stdout).toMatch(/^NAME +ROLES +CREATED\napp +read,write +\d{4}-/)
      expect(json<{ users: { name: string }[] }>(await zerohop('user', 'list', '--users-file', file, '--json')).users.map((u) => u.name)).toEqual(['app'])
      const gone = await zerohop('user', 'remove', 'nobody', '--users-file', file)
      expect(gone.code).toBe(1)
      expect(gone.stderr).toContain('there is no user nobody')
      expect((await zerohop('user', 'remove', 'app', '--users-file', file)).code).toBe(0)
      const noFile = await zerohop('user', 'list')
      expect(noFile.code).toBe(2)
      expect(noFile.stderr).toContain('needs --users-file PATH')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
