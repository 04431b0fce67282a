// One test of the suite's simulator sweep: seeds [first, first + count). The suite's 1000 seeds are
// four such files (seeds-1..4.test.ts), so that vitest's two workers share them between the other
// suites. A failure names each failing seed and the command that replays it.
import { expect, it } from 'vitest'
import { report, summary, sweep } from './sweep.js'

export function sweepTest(first: number, count: number): void {
  const last = first + count - 1
  it(`seeds ${first}-${last}: no acknowledged write lost, nothing resurrected, replicas converge`, async () => {
    const s = await sweep(first, count)
    console.log(`simulator seeds ${first}-${last}: ${summary(s)}`)
    expect(s.failures, report(s)).toEqual([])
    // The runs did work: most writes were acknowledged despite the faults.
    expect(s.acknowledged).toBeGreaterThan(s.runs * 20)
  }, 240_000)
}
