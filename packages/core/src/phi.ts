// Phi accrual failure detector (Hayashibara et al. 2004, as in Akka's PhiAccrualFailureDetector): instead
// of a yes/no timeout it reports phi = -log10(P(a heartbeat arrives later than now)), estimated from the
// recent inter-arrival times, so one threshold adapts to each peer's rhythm. Pure: time is passed in.

import { InvalidArgumentError } from './errors.js'

export interface PhiAccrualOptions {
  /** Phi at and above which the peer is suspected (default 8: a 10^-8 chance that a live peer's heartbeat is this late, were arrivals normal). */
  threshold?: number
  /** Inter-arrival samples kept; the oldest is evicted by each new one (default 100). */
  windowSize?: number
  /** Floor on the standard deviation, in ms, so very regular arrivals do not make phi explode on a small delay (default 100). */
  minStdDevMs?: number
  /** Silence, in ms, added to the mean interval: pauses up to this long (GC, a busy event loop) are not suspicious (default 0). */
  acceptablePauseMs?: number
  /**
   * Interval, in ms, assumed from the first heartbeat until real samples replace it (default 1000). Set it
   * to the interval heartbeats really arrive at, or above: see the outage rule on PhiAccrualDetector.
   */
  firstIntervalMs?: number
}

export const phiAccrualDefaults = {
  threshold: 8,
  windowSize: 100,
  minStdDevMs: 100,
  acceptablePauseMs: 0,
  firstIntervalMs: 1000,
} as const

export type ResolvedPhiAccrualOptions = { -readonly [K in keyof typeof phiAccrualDefaults]: number }

const MAX_WINDOW = 1_000_000

/**
 * Tracks one peer's heartbeat arrivals. Semantics, for a detector fed `heartbeat(t)` calls:
 *
 * With the defaults, after a single heartbeat at t0: phi(t0) ≈ 8·10^-6, phi(t0 + 1000) = log10 2 ≈ 0.30,
 * and phi reaches 8 at t0 + 2306.5 ms (1000 + 5.226 × 250).
 *
 * - Before the first heartbeat, `phi()` is 0 and the peer counts as available: a peer never heard
 *   from is not suspected (the caller decides how long to wait for a first sign of life).
 * - The first heartbeat seeds the window with two samples, firstIntervalMs ± firstIntervalMs/4 (mean
 *   firstIntervalMs, standard deviation firstIntervalMs/4, as Akka does); later heartbeats add the
 *   interval since the previous one and evict the oldest sample once windowSize are held. The seeds
 *   count in `sampleCount` until they are evicted.
 * - A heartbeat that arrives while the peer is suspected (phi ≥ threshold) is not recorded as a sample,
 *   so one long outage does not inflate the mean; it only restarts the silence. Neither is a heartbeat
 *   stamped before the previous one (a clock that stepped back): it restarts the silence too.
 *   The flip side (Akka's too): a window whose seeds underestimate the real intervals never learns the
 *   long ones, since each is suspected and left out, and the peer flaps. Heartbeats relayed by gossip
 *   arrive irregularly (mean ≈ 1.45 and standard deviation ≈ 0.85 gossip intervals in
 *   test/bench/gossip-sim.ts): for those, give firstIntervalMs ≈ 2 intervals and an acceptablePauseMs.
 * - phi(t) = log10(1 + e^z), z = y·(1.5976 + 0.070566·y²), y = (t − last − mean − acceptablePauseMs) / max(stdDev, minStdDevMs):
 *   the logistic approximation of the normal CDF that Akka uses, -log10(1 − F(t)), computed in log
 *   space. It is continuous and non-decreasing in t − last, ≥ 0, log10(2) ≈ 0.30 at mean + pause, and grows
 *   like z/ln 10 (cubic in y) without bound: unlike the textbook formula, whose e^-z underflows to 0
 *   (phi = Infinity) about 22 standard deviations out, it stays finite and ordered for any silence a
 *   real clock can produce. It is +Infinity only when y³ overflows a double (silences of ~10^102
 *   standard deviations), and never NaN.
 *
 * Every call is O(1): the mean and variance come from running sums over a ring buffer (recomputed
 * from the buffer once per windowSize samples, so rounding cannot drift).
 */
export class PhiAccrualDetector {
  readonly threshold: number
  readonly windowSize: number
  readonly minStdDevMs: number
  readonly acceptablePauseMs: number
  readonly firstIntervalMs: number

  // Grows to windowSize, then is overwritten in place: memory follows the samples actually held (a node
  // of a large cluster keeps one detector per peer).
  #samples: number[] = []
  #next = 0 // index the next sample goes to once the window is full
  #sum = 0
  #sumSq = 0
  #sinceRecompute = 0
  #last: number | undefined
  // Derived from the sums at every sample, so phi() costs no square root.
  #mean = 0
  #stdDev = 0

  constructor(options: PhiAccrualOptions = {}) {
    const o = resolvePhiAccrualOptions(options)
    this.threshold = o.threshold
    this.windowSize = o.windowSize
    this.minStdDevMs = o.minStdDevMs
    this.acceptablePauseMs = o.acceptablePauseMs
    this.firstIntervalMs = o.firstIntervalMs
  }

  /** Inter-arrival samples in the window (the two seeds of the first heartbeat included until evicted). */
  get sampleCount(): number {
    return this.#samples.length
  }

  /** Time of the last heartbeat, undefined before the first. */
  get lastHeartbeatMs(): number | undefined {
    return this.#last
  }

  /** Mean of the samples in the window (ms), undefined before the first heartbeat. */
  get meanIntervalMs(): number | undefined {
    return this.#samples.length === 0 ? undefined : this.#mean
  }

  /** Standard deviation used by phi (ms): that of the window, at least minStdDevMs. Undefined before the first heartbeat. */
  get stdDevMs(): number | undefined {
    return this.#samples.length === 0 ? undefined : this.#stdDev
  }

  /**
   * Record a heartbeat from the peer, received at `nowMs`. Returns the phi the silence it ends had
   * reached (0 for the first heartbeat), so a caller can tell, and log, that the peer had been suspected.
   */
  heartbeat(nowMs: number): number {
    const last = this.#last
    const phi = this.phi(nowMs)
    if (last === undefined) {
      const spread = this.firstIntervalMs / 4
      this.#push(this.firstIntervalMs - spread)
      this.#push(this.firstIntervalMs + spread)
    } else if (nowMs >= last && phi < this.threshold) {
      this.#push(nowMs - last)
    }
    this.#last = nowMs
    return phi
  }

  /** Suspicion level at `nowMs`: 0 before the first heartbeat, then growing with the silence since the last. */
  phi(nowMs: number): number {
    checkTime(nowMs)
    if (this.#last === undefined) return 0
    const y = (nowMs - this.#last - this.#mean - this.acceptablePauseMs) / this.#stdDev
    const z = y * (1.5976 + 0.070566 * y * y)
    // log(1 + e^z) without overflow for large z nor loss for very negative z.
    const softplus = z > 0 ? z + Math.log1p(Math.exp(-z)) : Math.log1p(Math.exp(z))
    return softplus / Math.LN10
  }

  /** Whether the peer is not suspected at `nowMs` (phi below the threshold). */
  isAvailable(nowMs: number): boolean {
    return this.phi(nowMs) < this.threshold
  }

  #push(interval: number): void {
    const samples = this.#samples
    if (samples.length < this.windowSize) {
      samples.push(interval)
    } else {
      const old = samples[this.#next]
      this.#sum -= old
      this.#sumSq -= old * old
      samples[this.#next] = interval
    }
    this.#sum += interval
    this.#sumSq += interval * interval
    this.#next = (this.#next + 1) % this.windowSize
    if (++this.#sinceRecompute >= this.windowSize) {
      this.#sinceRecompute = 0
      let sum = 0
      let sumSq = 0
      for (let i = 0; i < samples.length; i++) {
        sum += samples[i]
        sumSq += samples[i] * samples[i]
      }
      this.#sum = sum
      this.#sumSq = sumSq
    }
    const n = samples.length
    this.#mean = this.#sum / n
    this.#stdDev = Math.max(Math.sqrt(Math.max(0, this.#sumSq / n - this.#mean * this.#mean)), this.minStdDevMs)
  }
}

/** Merge options over the defaults and validate them; throws InvalidArgumentError naming the fix. */
export function resolvePhiAccrualOptions(options: PhiAccrualOptions = {}): ResolvedPhiAccrualOptions {
  const o: ResolvedPhiAccrualOptions = { ...phiAccrualDefaults }
  for (const k of Object.keys(phiAccrualDefaults) as (keyof ResolvedPhiAccrualOptions)[]) {
    if (options[k] !== undefined) o[k] = options[k]
  }
  const positive = (v: number) => typeof v === 'number' && Number.isFinite(v) && v > 0
  if (!positive(o.threshold)) throw new InvalidArgumentError(`threshold must be a positive finite number (8 is usual, higher suspects later), got ${o.threshold}`)
  if (!Number.isSafeInteger(o.windowSize) || o.windowSize < 2 || o.windowSize > MAX_WINDOW) {
    throw new InvalidArgumentError(`windowSize must be an integer from 2 to ${MAX_WINDOW} (samples kept), got ${o.windowSize}`)
  }
  if (!positive(o.minStdDevMs)) throw new InvalidArgumentError(`minStdDevMs must be a positive finite number of ms, got ${o.minStdDevMs}`)
  if (!(typeof o.acceptablePauseMs === 'number' && Number.isFinite(o.acceptablePauseMs) && o.acceptablePauseMs >= 0)) {
    throw new InvalidArgumentError(`acceptablePauseMs must be a finite number of ms, 0 or more, got ${o.acceptablePauseMs}`)
  }
  if (!positive(o.firstIntervalMs)) {
    throw new InvalidArgumentError(`firstIntervalMs must be a positive finite number of ms (the expected heartbeat interval), got ${o.firstIntervalMs}`)
  }
  return o
}

function checkTime(nowMs: number): void {
  if (typeof nowMs !== 'number' || !Number.isFinite(nowMs)) throw new InvalidArgumentError(`a time must be a finite number of ms, got ${nowMs}`)
}
