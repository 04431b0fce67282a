// `zerohop dev`: a local cluster of node processes on 127.0.0.1, log lines prefixed by node,
// Ctrl-C stops them all cleanly.
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { parseArgs } from 'node:util'
import path from 'node:path'
import { request } from 'undici'
import { Paths } from '@zerohop/core'

const LEVELS: Record<number, string> = { 10: 'TRACE', 20: 'DEBUG', 30: 'INFO', 40: 'WARN', 50: 'ERROR', 60: 'FATAL' }

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
  if (!Number.isInteger(count) || count < 1 || count > 16) throw new Error('--nodes takes 1 to 16')
  if (!Number.isInteger(basePort) || basePort < 1 || basePort + count > 65535) throw new Error('--base-port takes a port number')
  const host = values.host!
  const urls = Array.from({ length: count }, (_, i) => `http://${host}:${basePort + i}`)
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url))
  const children: ChildProcess[] = []
  let stopping = false

  for (let i = 0; i < count; i++) {
    const id = `n${i + 1}`
    const child = spawn(
      process.execPath,
      [cli, 'start', '--id', id, '--host', host, '--port', String(basePort + i), '--data', path.join(values.data!, id), '--seeds', urls.join(','), ...secured],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    children.push(child)
    for (const stream of [child.stdout!, child.stderr!]) {
      createInterface({ input: stream }).on('line', (line) => process.stdout.write(`[${id}] ${formatLogLine(line)}\n`))
    }
    child.on('exit', (code, signal) => {
      process.stdout.write(`[${id}] exited (${signal ?? code})\n`)
      if (!stopping) stop(1)
    })
  }

  const exited = children.map((c) => new Promise<void>((resolve) => (c.exitCode !== null ? resolve() : c.once('exit', () => resolve()))))
  function stop(code: number): void {
    if (stopping) return
    stopping = true
    for (const c of children) if (c.exitCode === null && c.pid) c.kill('SIGTERM')
    void Promise.all(exited).then(() => process.exit(code))
  }
  process.on('SIGINT', () => stop(0))
  process.on('SIGTERM', () => stop(0))

  const deadline = Date.now() + 30_000
  while (Date.now() < deadline && !stopping) {
    try {
      // /v1/health: open even with a users file, 200 once the node serves.
      const res = await request(`${urls[0]}${Paths.health}`)
      await res.body.dump()
      if (res.statusCode === 200) {
        process.stdout.write(
          `\nZerohop dev cluster is up: ${urls.join(' ')}\n` +
            `Connect from Node.js:\n` +
            `  import { connect } from '@zerohop/client'\n` +
            `  const db = await connect({ seeds: ['${urls[0]}']${values['users-file'] ? ', token: process.env.ZEROHOP_TOKEN' : ''} })\n` +
            `  await db.put('hello', 'world')\n  const { value } = await db.get('hello')  // Uint8Array of 'world'\n` +
            `Press Ctrl-C to stop all nodes.\n\n`,
        )
        return
      }
    } catch {
      // not up yet
    }
    await new Promise((r) => setTimeout(r, 100))
  }
}
