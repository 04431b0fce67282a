// What the benchmarks share: where results go, environment knobs, and how figures are printed.
import { execFileSync, fork, type ChildProcess } from 'node:child_process'
import { mkdir, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
export const resultsDir = path.join(root, 'bench-results')

/** A positive integer from the environment, or the default. */
export const envInt = (name: string, dflt: number) => {
  const v = process.env[name]
  const n = v === undefined ? dflt : Number(v)
  if (!Number.isInteger(n) || n <= 0) throw new Error(`${name} must be a positive integer, got ${v}`)
  return n
}

/** The median of the finite values (NaN if there are none). */
export function median(xs: number[]): number {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return NaN
  const m = s.length >> 1
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2
}

export const fmt = (x: number, digits = 0) => (Number.isFinite(x) ? x.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits }) : '-')

/** A plain-text table: the first column left-aligned, the others right-aligned. */
export function table(headers: string[], rows: string[][]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)))
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')
  return [line(headers), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n')
}

export function gitRev(): string | undefined {
  try {
    return execFileSync('git', ['rev-parse', '--short', 'HEAD'], { cwd: root, encoding: 'utf8' }).trim()
  } catch {
    return undefined
  }
}

/** Write a run's results to bench-results/PREFIX-STAMP.json and bench-results/LATEST. */
export async function saveResults(prefix: string, latest: string, startedAt: Date, result: unknown): Promise<void> {
  await mkdir(resultsDir, { recursive: true })
  const stamp = startedAt.toISOString().replace(/[:.]/g, '-')
  const file = path.join(resultsDir, `${prefix}-${stamp}.json`)
  const json = JSON.stringify(result, null, 2) + '\n'
  await writeFile(file, json)
  await writeFile(path.join(resultsDir, latest), json)
  console.log(`\nwrote ${path.relative(root, file)} and bench-results/${latest} (${((Date.now() - startedAt.getTime()) / 1000).toFixed(0)} s)`)
}

/** What a run's figures depend on, recorded with them. */
export function environment(): Record<string, unknown> {
  return { node: process.version, cpus: os.cpus().length, cpuModel: os.cpus()[0]?.model.trim(), loadavgAtEnd: os.loadavg(), git: gitRev() }
}

/** A Markdown table; `align` is one of '---', ':---', '---:' per column (default left). */
export function mdTable(head: string[], rows: (string | number)[][], align: string[] = head.map(() => '---')): string {
  return [`| ${head.join(' | ')} |`, `|${align.join('|')}|`, ...rows.map((r) => `| ${r.join(' | ')} |`)].join('\n')
}

/** The machine in one line, printed before a run. */
export function environmentLine(): string {
  return `node ${process.version}, ${os.cpus().length} CPUs (${os.cpus()[0]?.model.trim()}), load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`
}

/**
 * Run `cleanup` (stop every process the benchmark started) exactly once: when the returned function is
 * called, or on SIGINT/SIGTERM, after which the process exits 130.
 */
export function cleanupOnExit(cleanup: () => Promise<void>): () => Promise<void> {
  let done: Promise<void> | undefined
  const once = () => (done ??= cleanup())
  const onSignal = (sig: NodeJS.Signals) => {
    console.error(`\n${sig}: stopping every process this benchmark started`)
    void once().finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)
  return async () => {
    process.off('SIGINT', onSignal)
    process.off('SIGTERM', onSignal)
    await once()
  }
}

/** A benchmark's entry point: a failure is printed and exits 1. */
export function runMain(main: () => Promise<void>): void {
  main().catch((err) => {
    console.error(err)
    process.exitCode = 1
  })
}

// ---------------------------------------------------------------------------------------------
// Child processes

/** Request/response over a forked child's IPC channel, each call with a deadline. */
export class Rpc {
  #seq = 0
  readonly #pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void; timer: NodeJS.Timeout }>()

  constructor(readonly child: ChildProcess) {
    child.on('message', (m: { id: number; ok: boolean; result?: unknown; error?: string }) => {
      const p = this.#pending.get(m.id)
      if (!p) return
      this.#pending.delete(m.id)
      clearTimeout(p.timer)
      if (m.ok) p.resolve(m.result)
      else p.reject(new Error(`client worker: ${m.error}`))
    })
    child.on('exit', (code, sig) => {
      for (const p of this.#pending.values()) {
        clearTimeout(p.timer)
        p.reject(new Error(`client worker exited (code ${code}, signal ${sig})`))
      }
      this.#pending.clear()
    })
  }

  call<T>(cmd: string, args: unknown, timeoutMs: number): Promise<T> {
    const id = ++this.#seq
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id)
        reject(new Error(`client worker: ${cmd} took over ${timeoutMs} ms`))
      }, timeoutMs)
      this.#pending.set(id, { resolve, reject, timer })
      this.child.send({ id, cmd, args })
    })
  }
}

/** fork() with plain node: no tsx loader in the child (execArgv: []). */
export function forkPlain(file: string): ChildProcess {
  return fork(path.join(root, 'test/bench', file), [], { execArgv: [], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] })
}

/** SIGKILL a child this benchmark started, by its PID; resolves once it has exited. */
export function killByPid(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null || !child.pid) return Promise.resolve()
  return new Promise((resolve) => {
    child.once('exit', () => resolve())
    try {
      process.kill(child.pid!, 'SIGKILL')
    } catch {
      resolve()
    }
  })
}

/** The machine's clock ticks per second (getconf CLK_TCK), for /proc's CPU times. */
export function clockTicks(): number {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100
  } catch {
    return 100
  }
}
