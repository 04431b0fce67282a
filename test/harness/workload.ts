// A bounded read/write workload that checks, while it runs, the two promises a membership change
// must keep: no acknowledged write is lost, and no read returns not-found or an older version for a
// key whose write was acknowledged before the read began. Each key has one writer, which writes
// increasing sequence numbers with the context of its previous write; readers check the sequence.
import type { Collection } from '@zerohop/client'

export interface Versioned {
  seq: number
}

/** Merge function of the workload's collection: the highest sequence wins. */
export const latest = (siblings: Versioned[]): Versioned => siblings.reduce((a, b) => (b.seq > a.seq ? b : a))

export interface WorkloadOptions {
  keys: number
  writers?: number
  readers?: number
  /** Hard bounds: the loops end at whichever comes first. */
  maxMs?: number
  maxOps?: number
  prefix?: string
}

export class Workload {
  readonly acked = new Map<string, { seq: number; context?: string }>()
  readonly violations: string[] = []
  readonly stats = { puts: 0, putFailures: 0, gets: 0, getFailures: 0 }
  readonly errors = new Map<string, number>()
  readonly #kv: Collection<Versioned>
  readonly #o: Required<WorkloadOptions>
  readonly #seen = new Map<string, number>()
  #stopped = false
  #loops: Promise<void>[] = []
  #ops = 0
  #deadline = 0

  constructor(kv: Collection<Versioned>, o: WorkloadOptions) {
    this.#kv = kv
    this.#o = { writers: 4, readers: 4, maxMs: 120_000, maxOps: 200_000, prefix: 'w', ...o }
  }

  key(i: number): string {
    return `${this.#o.prefix}${i}`
  }

  get ops(): number {
    return this.#ops
  }

  start(): void {
    this.#deadline = Date.now() + this.#o.maxMs
    for (let w = 0; w < this.#o.writers; w++) this.#loops.push(this.#writer(w))
    for (let r = 0; r < this.#o.readers; r++) this.#loops.push(this.#reader(r))
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }

  #running(): boolean {
    return !this.#stopped && this.#ops < this.#o.maxOps && Date.now() < this.#deadline
  }

  /** The first few failures in full, to see why. */
  readonly samples: string[] = []

  #error(err: unknown): void {
    const e = err as { code?: string; replicas?: { id: string; cause: string; code?: string; message?: string }[] }
    const code = e.code ?? String(err)
    this.errors.set(code, (this.errors.get(code) ?? 0) + 1)
    if (this.samples.length < 5) this.samples.push(`${code}: ${(err as Error).message}${e.replicas ? ` ${JSON.stringify(e.replicas.map((r) => `${r.id}:${r.code ?? r.cause}${process.env.ZH_DEBUG ? ` ${r.message}` : ''}`))}` : ''}`)
  }

  async #writer(w: number): Promise<void> {
    const mine: number[] = []
    for (let i = w; i < this.#o.keys; i += this.#o.writers) mine.push(i)
    for (let round = 0; this.#running(); round++) {
      const key = this.key(mine[round % mine.length])
      const prev = this.acked.get(key)
      const seq = Math.max(prev?.seq ?? 0, this.#seen.get(key) ?? 0) + 1
      this.#ops++
      try {
        const res = await this.#kv.put(key, { seq }, { context: prev?.context })
        this.stats.puts++
        this.acked.set(key, { seq, context: res.context })
      } catch (err) {
        this.stats.putFailures++
        this.#error(err)
        // The write may have landed on some replicas: read (and merge) before writing again. What the
        // read saw raises the next sequence number, not the floor readers check against.
        try {
          const read = await this.#kv.get(key)
          this.#seen.set(key, Math.max(seq, read.value?.seq ?? 0))
          this.acked.set(key, { seq: prev?.seq ?? 0, context: read.context })
        } catch (e) {
          this.#error(e)
        }
      }
    }
  }

  async #reader(r: number): Promise<void> {
    let x = r * 7919
    for (; this.#running(); ) {
      x = (x * 1103515245 + 12345) % 2 ** 31
      const key = this.key(x % this.#o.keys)
      const floor = this.acked.get(key)?.seq ?? 0
      this.#ops++
      try {
        const read = await this.#kv.get(key)
        this.stats.gets++
        this.#check(key, floor, read.found, read.value?.seq)
      } catch (err) {
        this.stats.getFailures++
        this.#error(err)
      }
    }
  }

  #check(key: string, floor: number, found: boolean, seq: number | undefined): void {
    if (floor === 0) return
    if (!found) this.violations.push(`${key}: not found, but seq ${floor} was acknowledged before the read began`)
    else if ((seq ?? 0) < floor) this.violations.push(`${key}: read seq ${seq}, but seq ${floor} was acknowledged before the read began`)
  }

  /** After stop(): every key still reads at least its last acknowledged sequence. */
  async verify(): Promise<void> {
    for (const [key, { seq }] of this.acked) {
      const read = await this.#kv.get(key)
      this.#check(key, seq, read.found, read.value?.seq)
    }
  }

  summary(): string {
    return `${this.stats.puts} puts (${this.stats.putFailures} failed), ${this.stats.gets} gets (${this.stats.getFailures} failed)` +
      (this.errors.size > 0 ? `; errors ${JSON.stringify(Object.fromEntries(this.errors))}, e.g. ${this.samples.join(' | ')}` : '')
  }
}
