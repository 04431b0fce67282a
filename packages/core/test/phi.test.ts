// Tests for the phi accrual failure detector: phi before and after the first heartbeat, growth with
// silence, the expected crossing of the threshold, window eviction, the outage rule, extreme silences,
// option validation, and the laws (monotone in silence; running sums equal to recomputed ones).
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '../src/errors.js'
import { PhiAccrualDetector, phiAccrualDefaults, type PhiAccrualOptions } from '../src/phi.js'
import { mulberry32 } from '../../../test/harness/prng.js'

/** Akka's formula, written as Akka writes it (two branches), as an independent reference. */
function akkaPhi(timeDiff: number, mean: number, stdDev: number): number {
  const y = (timeDiff - mean) / stdDev
  const e = Math.exp(-y * (1.5976 + 0.070566 * y * y))
  return timeDiff > mean ? -Math.log10(e / (1 + e)) : -Math.log10(1 - 1 / (1 + e))
}

/** The y (silence beyond the mean, in standard deviations) at which phi reaches `threshold`, by bisection. */
function crossingY(threshold: number): number {
  let lo = 0
  let hi = 50
  for (let i = 0; i < 200; i++) {
    const mid = (lo + hi) / 2
    if (akkaPhi(mid, 0, 1) < threshold) lo = mid
    else hi = mid
  }
  return lo
}


/** A detector fed a heartbeat at t0, then one every `interval` ms, `beats` times; returns it and the last time. */
function regular(interval: number, beats: number, options: PhiAccrualOptions = {}, t0 = 1_000_000) {
  const d = new PhiAccrualDetector(options)
  let t = t0
  d.heartbeat(t)
  for (let i = 0; i < beats; i++) d.heartbeat((t += interval))
  return { d, last: t }
}

describe('PhiAccrualDetector before and at the first heartbeat', () => {
  it('reports phi 0 and available before any heartbeat', () => {
    const d = new PhiAccrualDetector()
    expect(d.phi(0)).toBe(0)
    expect(d.phi(1e12)).toBe(0)
    expect(d.isAvailable(1e12)).toBe(true)
    expect(d.sampleCount).toBe(0)
    expect(d.lastHeartbeatMs).toBeUndefined()
    expect(d.meanIntervalMs).toBeUndefined()
    expect(d.stdDevMs).toBeUndefined()
  })

  it('seeds the window with firstIntervalMs ± a quarter at the first heartbeat', () => {
    const d = new PhiAccrualDetector({ firstIntervalMs: 2000 })
    d.heartbeat(5000)
    expect(d.sampleCount).toBe(2)
    expect(d.lastHeartbeatMs).toBe(5000)
    expect(d.meanIntervalMs).toBe(2000)
    expect(d.stdDevMs).toBe(500)
    // At the mean the logistic approximation gives 1 - F = 1/2.
    expect(d.phi(7000)).toBeCloseTo(Math.log10(2), 12)
    expect(d.phi(5000)).toBeLessThan(0.001)
    expect(d.phi(5000)).toBeGreaterThanOrEqual(0)
  })

  it('with the defaults, one heartbeat makes phi reach 8 about 2.3 s later', () => {
    const d = new PhiAccrualDetector()
    expect(d.heartbeat(0)).toBe(0) // the first heartbeat ends no silence
    expect(d.phi(0)).toBeCloseTo(7.96e-6, 8)
    expect(d.isAvailable(2306)).toBe(true)
    expect(d.isAvailable(2307)).toBe(false)
  })

  it('heartbeat() returns the phi the silence it ends had reached', () => {
    const { d, last } = regular(1000, 20)
    const expected = d.phi(last + 1700)
    expect(d.heartbeat(last + 1700)).toBe(expected)
    const zero = d.phi(last + 1700) // a repeat at the same instant ends a silence of 0 ms
    expect(zero).toBeLessThan(0.001)
    expect(d.heartbeat(last + 1700)).toBe(zero)
  })
})

describe('PhiAccrualDetector phi', () => {
  it('grows with silence', () => {
    const { d, last } = regular(1000, 20)
    let prev = -1
    for (let silence = 0; silence <= 10_000; silence += 100) {
      const p = d.phi(last + silence)
      expect(p).toBeGreaterThan(prev)
      prev = p
    }
    expect(d.isAvailable(last + 10_000)).toBe(false)
  })

  it('matches Akka’s two-branch formula', () => {
    const { d, last } = regular(1000, 30, { minStdDevMs: 50 })
    const mean = d.meanIntervalMs!
    const sd = d.stdDevMs!
    for (let silence = 0; silence <= 1400; silence += 37) {
      const expected = akkaPhi(silence, mean, sd)
      expect(Math.abs(d.phi(last + silence) - expected)).toBeLessThan(1e-9 * Math.max(1, expected))
    }
  })

  it('stays low under regular heartbeats with jitter', () => {
    const d = new PhiAccrualDetector()
    const rand = mulberry32(42)
    let t = 0
    d.heartbeat(t)
    let worst = 0
    for (let i = 0; i < 1000; i++) {
      t += 1000 + (rand() - 0.5) * 200 // 900..1100 ms
      worst = Math.max(worst, d.phi(t))
      expect(d.isAvailable(t)).toBe(true)
      d.heartbeat(t)
    }
    expect(worst).toBeLessThan(2)
    expect(d.sampleCount).toBe(phiAccrualDefaults.windowSize)
    expect(d.meanIntervalMs!).toBeGreaterThan(990)
    expect(d.meanIntervalMs!).toBeLessThan(1010)
  })

  it.each([
    [1000, 0, 100],
    [1000, 0, 300],
    [5000, 3000, 100],
    [200, 0, 100],
  ])('interval %d, pause %d, minStdDev %d: crosses the threshold after interval + pause + 5.22·minStdDev of silence', (interval, acceptablePauseMs, minStdDevMs) => {
    // Perfectly regular arrivals: the window's deviation is 0, so the floor applies.
    const { d, last } = regular(interval, 150, { acceptablePauseMs, minStdDevMs })
    expect(d.meanIntervalMs).toBe(interval)
    expect(d.stdDevMs).toBe(minStdDevMs)
    const y8 = crossingY(8) // ≈ 5.22
    expect(y8).toBeGreaterThan(5.2)
    expect(y8).toBeLessThan(5.25)
    const expected = interval + acceptablePauseMs + y8 * minStdDevMs
    expect(d.isAvailable(last + expected - 1)).toBe(true)
    expect(d.isAvailable(last + expected + 1)).toBe(false)
    expect(d.phi(last + expected)).toBeCloseTo(8, 6)
  })

  it('stays finite, ordered and NaN-free for enormous silences', () => {
    const { d, last } = regular(1000, 10)
    const silences = [1e4, 1e5, 1e6, 1e9, 1e12, 1e15]
    const phis = silences.map((s) => d.phi(last + s))
    for (let i = 0; i < phis.length; i++) {
      expect(Number.isFinite(phis[i])).toBe(true)
      if (i > 0) expect(phis[i]).toBeGreaterThan(phis[i - 1])
    }
    // Where the textbook formula's e^-z underflows (phi = Infinity), this one keeps counting.
    expect(akkaPhi(1e5, d.meanIntervalMs!, d.stdDevMs!)).toBe(Infinity)
    expect(phis[1]).toBeGreaterThan(1e4)
    // Long before the silence: phi is 0 (never negative, never NaN).
    expect(d.phi(last - 1e15)).toBe(0)
    // Only when y³ overflows a double does phi become Infinity, consistently above any threshold.
    const huge = new PhiAccrualDetector({ minStdDevMs: 1e-300, windowSize: 2 })
    huge.heartbeat(0)
    huge.heartbeat(1000)
    huge.heartbeat(2000) // window: [1000, 1000], deviation 0, floor 1e-300
    expect(huge.phi(1e300)).toBe(Infinity)
    expect(huge.isAvailable(1e300)).toBe(false)
  })
})

describe('PhiAccrualDetector window', () => {
  it('evicts the oldest samples, bootstrap seeds first', () => {
    const { d, last } = regular(1000, 8, { windowSize: 10 })
    expect(d.sampleCount).toBe(10) // 2 seeds + 8 intervals
    expect(d.meanIntervalMs).toBe(1000) // seeds 750 + 1250 average to 1000 too
    expect(d.stdDevMs).toBeGreaterThan(100)
    let t = last
    d.heartbeat((t += 1000))
    d.heartbeat((t += 1000))
    expect(d.sampleCount).toBe(10)
    expect(d.stdDevMs).toBe(100) // both seeds evicted: only 1000s remain, the floor applies
    const before = d.phi(t + 1500)
    // Slow down gradually (each step well below the threshold): the window follows.
    for (const interval of [1100, 1200, 1300, 1400, 1500, 1500, 1500, 1500, 1500, 1500]) {
      expect(d.isAvailable(t + interval)).toBe(true)
      d.heartbeat((t += interval))
    }
    expect(d.sampleCount).toBe(10)
    expect(d.meanIntervalMs).toBeCloseTo((1100 + 1200 + 1300 + 1400 + 6 * 1500) / 10, 9)
    expect(d.phi(t + 1500)).toBeLessThan(before)
  })

  it('does not record the gap of an outage, nor a heartbeat stamped in the past', () => {
    const { d, last } = regular(1000, 20)
    const mean = d.meanIntervalMs
    const count = d.sampleCount
    expect(d.isAvailable(last + 60_000)).toBe(false)
    d.heartbeat(last + 60_000)
    expect(d.sampleCount).toBe(count)
    expect(d.meanIntervalMs).toBe(mean)
    expect(d.lastHeartbeatMs).toBe(last + 60_000)
    expect(d.isAvailable(last + 60_500)).toBe(true) // the silence restarted
    d.heartbeat(last + 30_000) // the clock stepped back
    expect(d.sampleCount).toBe(count)
    expect(d.lastHeartbeatMs).toBe(last + 30_000)
    d.heartbeat(last + 31_000)
    expect(d.sampleCount).toBe(count + 1)
  })

  it('keeps running sums equal to the window recomputed from scratch', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 2, max: 20 }),
        fc.array(fc.double({ min: 0, max: 5000, noNaN: true }), { minLength: 0, maxLength: 120 }),
        (windowSize, intervals) => {
          // A large acceptable pause keeps every interval below the threshold, so each one is recorded.
          const d = new PhiAccrualDetector({ windowSize, acceptablePauseMs: 1e7, firstIntervalMs: 1000 })
          let t = 0
          d.heartbeat(t)
          for (const x of intervals) d.heartbeat((t += x))
          const all = [750, 1250, ...intervals]
          const window = all.slice(-windowSize)
          const mean = window.reduce((a, b) => a + b, 0) / window.length
          const sd = Math.sqrt(window.reduce((a, b) => a + (b - mean) ** 2, 0) / window.length)
          expect(d.sampleCount).toBe(window.length)
          expect(d.meanIntervalMs!).toBeCloseTo(mean, 6)
          expect(Math.abs(d.stdDevMs! - Math.max(sd, 100))).toBeLessThan(1e-3)
        },
      ),
      { numRuns: 300 },
    )
  })
})

describe('PhiAccrualDetector laws', () => {
  it('phi is non-negative and non-decreasing in the time since the last heartbeat', () => {
    fc.assert(
      fc.property(
        fc.record({
          windowSize: fc.integer({ min: 2, max: 50 }),
          minStdDevMs: fc.double({ min: 1, max: 1000, noNaN: true }),
          acceptablePauseMs: fc.double({ min: 0, max: 5000, noNaN: true }),
          firstIntervalMs: fc.double({ min: 1, max: 10_000, noNaN: true }),
          threshold: fc.double({ min: 0.5, max: 20, noNaN: true }),
        }),
        fc.array(fc.integer({ min: 0, max: 20_000 }), { maxLength: 60 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        fc.integer({ min: 0, max: 10_000_000 }),
        (options, intervals, a, b) => {
          const d = new PhiAccrualDetector(options)
          let t = 1_700_000_000_000
          d.heartbeat(t)
          for (const x of intervals) d.heartbeat((t += x))
          const [s1, s2] = a <= b ? [a, b] : [b, a]
          const p1 = d.phi(t + s1)
          const p2 = d.phi(t + s2)
          expect(p1).toBeGreaterThanOrEqual(0)
          expect(Number.isNaN(p2)).toBe(false)
          expect(p2).toBeGreaterThanOrEqual(p1)
          expect(d.isAvailable(t + s1)).toBe(p1 < options.threshold)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('PhiAccrualDetector options', () => {
  it('uses the defaults', () => {
    const d = new PhiAccrualDetector()
    expect({
      threshold: d.threshold,
      windowSize: d.windowSize,
      minStdDevMs: d.minStdDevMs,
      acceptablePauseMs: d.acceptablePauseMs,
      firstIntervalMs: d.firstIntervalMs,
    }).toEqual({ threshold: 8, windowSize: 100, minStdDevMs: 100, acceptablePauseMs: 0, firstIntervalMs: 1000 })
    expect(new PhiAccrualDetector({ threshold: undefined }).threshold).toBe(8)
  })

  it.each<[PhiAccrualOptions, RegExp]>([
    [{ threshold: 0 }, /threshold must be a positive finite number/],
    [{ threshold: -1 }, /threshold/],
    [{ threshold: Infinity }, /threshold/],
    [{ threshold: NaN }, /threshold/],
    [{ threshold: '8' as unknown as number }, /threshold/],
    [{ windowSize: 1 }, /windowSize must be an integer from 2/],
    [{ windowSize: 10.5 }, /windowSize/],
    [{ windowSize: 1e9 }, /windowSize/],
    [{ minStdDevMs: 0 }, /minStdDevMs must be a positive/],
    [{ minStdDevMs: NaN }, /minStdDevMs/],
    [{ acceptablePauseMs: -1 }, /acceptablePauseMs must be a finite number of ms, 0 or more/],
    [{ acceptablePauseMs: Infinity }, /acceptablePauseMs/],
    [{ firstIntervalMs: 0 }, /firstIntervalMs must be a positive/],
    [{ firstIntervalMs: -5 }, /firstIntervalMs/],
  ])('refuses %o', (options, message) => {
    expect(() => new PhiAccrualDetector(options)).toThrow(InvalidArgumentError)
    expect(() => new PhiAccrualDetector(options)).toThrow(message)
    try {
      new PhiAccrualDetector(options)
    } catch (err) {
      expect((err as InvalidArgumentError).code).toBe('ZH_INVALID_ARGUMENT')
    }
  })

  it('refuses a time that is not a finite number', () => {
    const d = new PhiAccrualDetector()
    expect(() => d.heartbeat(NaN)).toThrow(InvalidArgumentError)
    expect(() => d.phi(Infinity)).toThrow(/finite number of ms/)
    expect(() => d.isAvailable(undefined as unknown as number)).toThrow(InvalidArgumentError)
  })
})
