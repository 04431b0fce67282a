// Virtual time for the simulator: one queue of timed callbacks for every node and client in the
// process, each tagged with its owner. Nothing runs on real time: the loop takes the earliest event,
// moves the clock to it, runs it, and lets every promise it settled run (one real setImmediate, which
// Node runs only once the microtask queue is empty) before the next. Events at the same moment run in
// the order they were scheduled, so a seed gives one order of everything.
import type { Clock, ClockTimer } from '@zerohop/core'

interface Event {
  at: number
  seq: number
  owner: Owner
  fn: () => void
  cancelled: boolean
}

/**
 * Who an event belongs to: a node's run (a new owner for every start, so a crash drops exactly the
 * events of the run that crashed) or a client. A paused owner's events wait until it is resumed.
 */
export class Owner {
  dead = false
  paused = false
  /** Added to the virtual time this owner's clock reads (clock skew). */
  skewMs = 0
  readonly held: Event[] = []
  constructor(readonly name: string) {}
}

/** A binary min-heap on (at, seq). */
class Heap {
  readonly #a: Event[] = []
  get size(): number {
    return this.#a.length
  }
  peek(): Event | undefined {
    return this.#a[0]
  }
  push(e: Event): void {
    const a = this.#a
    a.push(e)
    let i = a.length - 1
    while (i > 0) {
      const p = (i - 1) >> 1
      if (!less(a[i], a[p])) break
      ;[a[i], a[p]] = [a[p], a[i]]
      i = p
    }
  }
  /** Events not cancelled yet, of owners still alive. */
  get pending(): number {
    let n = 0
    for (const e of this.#a) if (!e.cancelled && !e.owner.dead) n++
    return n
  }
  pop(): Event | undefined {
    const a = this.#a
    const top = a[0]
    const last = a.pop()
    if (a.length > 0 && last) {
      a[0] = last
      let i = 0
      for (;;) {
        const l = 2 * i + 1
        const r = l + 1
        let m = i
        if (l < a.length && less(a[l], a[m])) m = l
        if (r < a.length && less(a[r], a[m])) m = r
        if (m === i) break
        ;[a[i], a[m]] = [a[m], a[i]]
        i = m
      }
    }
    return top
  }
}

const less = (x: Event, y: Event) => x.at < y.at || (x.at === y.at && x.seq < y.seq)

const drain = () => new Promise<void>((resolve) => setImmediate(resolve))

/** Where virtual time starts: a fixed date, so that times look real. */
export const EPOCH_MS = 1_700_000_000_000

export class Scheduler {
  /** Virtual milliseconds. */
  now: number
  readonly #heap = new Heap()
  #seq = 0
  /** Events run so far. */
  steps = 0

  constructor(start = EPOCH_MS) {
    this.now = start
  }

  /** Timers and deliveries waiting to run. */
  get pending(): number {
    return this.#heap.pending
  }

  at(at: number, owner: Owner, fn: () => void): Event {
    const e: Event = { at: Math.max(at, this.now), seq: this.#seq++, owner, fn, cancelled: false }
    this.#heap.push(e)
    return e
  }

  /** The clock `owner`'s code reads: virtual time plus its skew; its timers are the owner's events. */
  clock(owner: Owner): Clock {
    return {
      // Whole milliseconds, as Date.now() gives (times travel in gossip as integers).
      now: () => Math.floor(this.now + owner.skewMs),
      setTimeout: (fn, ms) => this.at(this.now + Math.max(0, ms), owner, fn),
      clearTimeout: (t: ClockTimer) => {
        if (t) (t as Event).cancelled = true
      },
      setImmediate: (fn) => void this.at(this.now, owner, fn),
    }
  }

  pause(owner: Owner): void {
    owner.paused = true
  }

  /** Resume `owner`: what fell due while it was paused runs now, in its order. */
  resume(owner: Owner): void {
    owner.paused = false
    for (const e of owner.held.splice(0)) if (!e.cancelled) this.at(this.now, owner, e.fn)
  }

  /**
   * Run events until virtual time `until`, or until `done()` holds (checked after each event), or
   * `maxSteps` events. Returns whether `done` held.
   */
  async run(until: number, done: () => boolean = () => false, maxSteps = Infinity): Promise<boolean> {
    // What the caller started before running (a node's start, a request) schedules its first events
    // in promise callbacks: let them run before deciding that nothing is due.
    await drain()
    if (done()) return true
    let steps = 0
    while (steps < maxSteps) {
      const e = this.#heap.peek()
      if (!e || e.at > until) break
      this.#heap.pop()
      if (e.cancelled || e.owner.dead) continue
      if (e.owner.paused) {
        e.owner.held.push(e)
        continue
      }
      this.now = e.at
      steps++
      this.steps++
      e.fn()
      await drain()
      if (done()) return true
    }
    if (this.now < until && steps < maxSteps) this.now = until
    return false
  }
}

/**
 * One clock on a scheduler of its own, for unit tests that move time by hand: its timers fire only
 * when the test advances it, in time order, each followed by the promises it settled.
 */
export class VirtualClock implements Clock {
  readonly scheduler: Scheduler
  readonly #clock: Clock

  constructor(start = 0) {
    this.scheduler = new Scheduler(start)
    this.#clock = this.scheduler.clock(new Owner('test'))
  }

  now(): number {
    return this.#clock.now()
  }

  setTimeout(fn: () => void, ms: number): ClockTimer {
    return this.#clock.setTimeout(fn, ms)
  }

  clearTimeout(timer: ClockTimer): void {
    this.#clock.clearTimeout(timer)
  }

  setImmediate(fn: () => void): void {
    this.#clock.setImmediate(fn)
  }

  /** The time. Setting it steps the clock (backwards too, as a wall clock can) without running timers. */
  get t(): number {
    return this.scheduler.now
  }

  set t(ms: number) {
    this.scheduler.now = ms
  }

  /** Move time forward by `ms`, running the timers that fall due. */
  async advance(ms: number): Promise<void> {
    await this.scheduler.run(this.scheduler.now + ms)
  }

  /** Timers set and not yet run or cleared. */
  get pending(): number {
    return this.scheduler.pending
  }
}
