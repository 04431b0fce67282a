// What the benchmarks share: where results go, environment knobs, and how figures are printed.
import { execFileSync } from 'node:child_process'
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
