// The simulator's workload: clients add unique elements to sets (a union merge resolves siblings),
// and write and delete registers with the context of a read. Every operation is recorded with what it
// wrote, what its context saw, and its outcome: ok (acknowledged), failed (certainly not written: the
// read before it failed, so the write was never sent) or indeterminate (sent; it may or may not have
// taken effect). The checker holds the final state against this history.
import type { Collection } from '@zerohop/client'
import type { SimClient, SimCluster } from './cluster.js'

export type Outcome = 'ok' | 'failed' | 'indeterminate'

export interface Op {
  /** Unique: `client.n`. A register write stores this id as its value. */
  id: string
  client: string
  key: string
  kind: 'add' | 'write' | 'delete' | 'read'
  /** The element an add puts in the set. */
  element?: string
  /** Register writes and deletes: the values the read before it returned (its context covers them). */
  saw: string[]
  /** Reads: the values returned. */
  read?: unknown[]
  outcome?: Outcome
  error?: string
  start: number
  end?: number
}

export interface WorkloadOptions {
  setKeys: number
  registerKeys: number
  /** Virtual ms between two operations of one client, at most. */
  thinkMs: number
}

/** A set's value: its elements, sorted. */
type SetValue = string[]

const union = (siblings: SetValue[]): SetValue => [...new Set(siblings.flat())].sort()

export function setKey(i: number): string {
  return `set-${i}`
}

export function registerKey(i: number): string {
  return `reg-${i}`
}

export class Workload {
  readonly ops: Op[] = []
  readonly #cluster: SimCluster
  readonly #o: WorkloadOptions
  #running = 0
  #stopAt = 0

  constructor(cluster: SimCluster, options: WorkloadOptions) {
    this.#cluster = cluster
    this.#o = options
  }

  get keys(): string[] {
    return [...Array.from({ length: this.#o.setKeys }, (_, i) => setKey(i)), ...Array.from({ length: this.#o.registerKeys }, (_, i) => registerKey(i))]
  }

  /** Clients still in an operation (or about to start one). */
  get running(): number {
    return this.#running
  }

  /** Run each client's loop until virtual time `until` (the loops end with their last operation). */
  start(clients: SimClient[], until: number): void {
    this.#stopAt = until
    for (const c of clients) {
      this.#running++
      void this.#loop(c).finally(() => this.#running--)
    }
  }

  async #loop(c: SimClient): Promise<void> {
    const sets = c.db.collection<SetValue>({ encoding: 'json', merge: union })
    const registers = c.db.collection<string>({ encoding: 'json' })
    let n = 0
    const sim = this.#cluster
    while (sim.now < this.#stopAt) {
      await this.#think(c)
      if (sim.now >= this.#stopAt) break
      const id = `${c.id}.${++n}`
      const roll = sim.random.next()
      if (roll < 0.4) await this.#add(c, sets, id)
      else if (roll < 0.75) await this.#write(c, registers, id, sim.chance(0.1))
      else if (roll < 0.9) await this.#delete(c, registers, id)
      else await this.#read(c, sets, registers, id)
    }
  }

  #think(c: SimClient): Promise<void> {
    const ms = this.#cluster.random.next() * this.#o.thinkMs
    return new Promise((resolve) => this.#cluster.scheduler.at(this.#cluster.scheduler.now + ms, c.owner, resolve))
  }

  #begin(op: Omit<Op, 'start'>): Op {
    const full: Op = { ...op, start: this.#cluster.now }
    this.ops.push(full)
    return full
  }

  #end(op: Op, outcome: Outcome, err?: unknown): void {
    op.outcome = outcome
    op.end = this.#cluster.now
    if (err) op.error = `${(err as { code?: string }).code ?? (err as Error).name}: ${(err as Error).message}`
    this.#cluster.log(`op ${op.id} ${op.kind} ${op.key}${op.element ? ` +${op.element}` : ''}${op.saw.length ? ` saw ${op.saw.join(',')}` : ''} ${outcome}${op.error ? ` (${op.error.slice(0, 160)})` : ''}`)
  }

  /** Add a unique element to a set: read (siblings merged by union), then write the union with it. */
  async #add(c: SimClient, sets: Collection<SetValue>, id: string): Promise<void> {
    const key = setKey(this.#cluster.int(this.#o.setKeys))
    const op = this.#begin({ id, client: c.id, key, kind: 'add', element: id, saw: [] })
    let read
    try {
      read = await sets.get(key)
    } catch (err) {
      return this.#end(op, 'failed', err)
    }
    const next = union([read.value ?? [], [id]])
    await this.#send(op, () => sets.put(key, next, { context: read.context }))
  }

  /** Write a register with the context of a read (or, now and then, blindly: a sibling of everything). */
  async #write(c: SimClient, registers: Collection<string>, id: string, blind: boolean): Promise<void> {
    const op = this.#begin({ id, client: c.id, key: registerKey(this.#cluster.int(this.#o.registerKeys)), kind: 'write', saw: [] })
    const context = blind ? '' : await this.#readFor(registers, op)
    if (context === undefined) return
    await this.#send(op, () => registers.put(op.key, id, context ? { context } : {}))
  }

  /** Delete what a read of a register saw. */
  async #delete(c: SimClient, registers: Collection<string>, id: string): Promise<void> {
    const op = this.#begin({ id, client: c.id, key: registerKey(this.#cluster.int(this.#o.registerKeys)), kind: 'delete', saw: [] })
    const context = await this.#readFor(registers, op)
    if (context === undefined) return
    await this.#send(op, () => registers.delete(op.key, { context }))
  }

  /** The read before a register write: its siblings go into `op.saw`; undefined (and `op` failed) if it failed. */
  async #readFor(registers: Collection<string>, op: Op): Promise<string | undefined> {
    try {
      const read = await registers.get(op.key)
      op.saw = read.siblings
      return read.context
    } catch (err) {
      this.#end(op, 'failed', err)
      return undefined
    }
  }

  /** The write of `op`: acknowledged, or indeterminate (it was sent; it may have taken effect). */
  async #send(op: Op, write: () => Promise<unknown>): Promise<void> {
    try {
      await write()
      this.#end(op, 'ok')
    } catch (err) {
      this.#end(op, 'indeterminate', err)
    }
  }

  async #read(c: SimClient, sets: Collection<SetValue>, registers: Collection<string>, id: string): Promise<void> {
    const set = this.#cluster.chance(0.5)
    const key = set ? setKey(this.#cluster.int(this.#o.setKeys)) : registerKey(this.#cluster.int(this.#o.registerKeys))
    const op = this.#begin({ id, client: c.id, key, kind: 'read', saw: [] })
    try {
      const read = set ? await sets.get(key) : await registers.get(key)
      op.read = read.siblings
      this.#end(op, 'ok')
    } catch (err) {
      this.#end(op, 'failed', err)
    }
  }
}
