// A range of seeds, run one after another: what they did in sum, and every failing seed with its first
// violations and the one command that replays it. The test suite and `npm run sim` both run sweeps.
import { simulate, type Figures, type SimResult, type SimulateOptions } from './simulation.js'

export interface Sweep {
  runs: number
  failures: { seed: number; violations: string[]; replay: string }[]
  ops: number
  /** Writes (adds, register writes, deletes) acknowledged. */
  acknowledged: number
  indeterminate: number
  failed: number
  faults: number
  virtualMs: number
  steps: number
  messages: number
  figures: Figures
  /** Real time the sweep took. */
  ms: number
}

export interface SweepOptions extends SimulateOptions {
  /** Called after each seed, with the real ms it took. */
  onResult?: (r: SimResult, ms: number) => void
  /** Stop at the first failing seed. */
  bail?: boolean
}

export function replayCommand(seed: number): string {
  return `npm run sim -- --seed ${seed} --log`
}

export async function sweep(first: number, count: number, options: SweepOptions = {}): Promise<Sweep> {
  const started = performance.now()
  const s: Sweep = {
    runs: 0, failures: [], ops: 0, acknowledged: 0, indeterminate: 0, failed: 0, faults: 0, virtualMs: 0, steps: 0, messages: 0, ms: 0,
    figures: { hintsStored: 0, hintsDelivered: 0, handoffItems: 0, keysRepaired: 0, tombstonesReaped: 0 },
  }
  for (let seed = first; seed < first + count; seed++) {
    const t0 = performance.now()
    const r = await simulate(seed, options)
    s.runs++
    s.ops += r.ops.length
    for (const o of r.ops) {
      if (o.outcome === 'ok' && o.kind !== 'read') s.acknowledged++
      else if (o.outcome === 'indeterminate') s.indeterminate++
      else if (o.outcome === 'failed') s.failed++
    }
    s.faults += r.faults.length
    s.virtualMs += r.virtualMs
    s.steps += r.steps
    s.messages += r.messages
    for (const k of Object.keys(s.figures) as (keyof Figures)[]) s.figures[k] += r.figures[k]
    options.onResult?.(r, performance.now() - t0)
    if (r.violations.length > 0) {
      s.failures.push({ seed, violations: r.violations.slice(0, 10), replay: replayCommand(seed) })
      if (options.bail) break
    }
  }
  s.ms = performance.now() - started
  return s
}

/** A sweep in two lines: what ran, and what the nodes did. */
export function summary(s: Sweep): string {
  const f = s.figures
  return `${s.runs} seeds, ${s.failures.length} failed; ${s.ops} operations (${s.acknowledged} writes acknowledged, ${s.indeterminate} indeterminate, ${s.failed} failed), ${s.faults} faults; ${(s.virtualMs / 1000).toFixed(0)} s virtual, ${s.steps} events, ${s.messages} messages; ${(s.ms / 1000).toFixed(1)} s (${(s.ms / Math.max(1, s.runs)).toFixed(0)} ms a seed)\n` +
    `nodes: ${f.hintsStored} hints stored, ${f.hintsDelivered} delivered; ${f.handoffItems} keys handed off; ${f.keysRepaired} repaired by anti-entropy; ${f.tombstonesReaped} tombstones reaped`
}

/** What a failed sweep says: each failing seed, its first violations and how to replay it. */
export function report(s: Sweep): string {
  return s.failures.map((f) => `seed ${f.seed}:\n  ${f.violations.join('\n  ')}\n  replay: ${f.replay}`).join('\n')
}
