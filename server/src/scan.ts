// One pass over the node's data at start-up, shared by everything that needs one: anti-entropy builds
// its Merkle trees from it, the reaper indexes the tombstones. Each reads every stored set, and on a
// node holding a million keys reading them is most of the time until it is ready: read once, not
// once each.
import { DATA_RANGE } from './replica.js'
import { PAGE_ENTRIES, type Store } from './storage/store.js'

/** Called for every stored data key, in key order: its partition, the key and its stored set. */
export type DataVisitor = (partition: number, key: Uint8Array, set: Uint8Array) => void

export class DataScan {
  #next?: { visitors: DataVisitor[]; done: Promise<void> }

  constructor(readonly store: Store, readonly pageEntries = PAGE_ENTRIES) {}

  /**
   * Visit every data key the store holds, once; resolves when the pass is over (rejects if the store
   * fails). The visitors that ask before the current microtasks are done share one pass (the node
   * starts its parts in one go); one that asks later gets a pass of its own.
   */
  visit(visitor: DataVisitor): Promise<void> {
    let pass = this.#next
    if (!pass) {
      const visitors: DataVisitor[] = []
      const started = Promise.resolve().then(() => {
        if (this.#next === pass) this.#next = undefined
        return this.#run(visitors)
      })
      pass = this.#next = { visitors, done: started }
    }
    pass.visitors.push(visitor)
    return pass.done
  }

  async #run(visitors: DataVisitor[]): Promise<void> {
    for await (const page of this.store.pages(DATA_RANGE, this.pageEntries)) {
      for (const [k, v] of page) {
        if (k.byteLength < 4) continue
        const partition = (k[1] << 8) | k[2]
        const key = k.subarray(3)
        for (const visit of visitors) visit(partition, key, v)
      }
    }
  }
}
