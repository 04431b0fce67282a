// The coordinator engine's view of the cluster inside a node: the gossip view (both rings while they
// differ) and the node's failure detector. A node that coordinates for load-balanced clients runs the
// same engine as the SDK over this, instead of over a watch of a node's ring.
import type { ClusterView, Clock, Limits, Member, ReplicaFailure } from '@zerohop/core'
import type { Membership } from '@zerohop/client'
import type { Gossip } from './gossip.js'

export interface NodeMembershipOptions {
  gossip: Gossip
  /** The view this node serves with (undefined until it serves). */
  view: () => ClusterView | undefined
  limits: Limits
  clock: Clock
  /** Shortest gap between two gossip exchanges triggered by a newer epoch in an answer. */
  debounceMs: number
}

export class NodeMembership implements Membership {
  readonly limits: Limits
  readonly #o: NodeMembershipOptions
  #lastExchange = -Infinity

  constructor(o: NodeMembershipOptions) {
    this.#o = o
    this.limits = o.limits
  }

  get view(): ClusterView {
    const view = this.#o.view()
    if (!view) throw new TypeError('the node does not serve yet')
    return view
  }

  /** The failure detector decides: a refused connection to a dead peer costs little on the way there. */
  up(id: string): boolean {
    return this.#o.gossip.isUp(id)
  }

  ok(_member: Member): void {}

  failed(_member: Member, _failure: ReplicaFailure): void {}

  observe(epoch: string | undefined, url: string): void {
    if (epoch === undefined || !this.view.differs(epoch)) return
    const now = this.#o.clock.now()
    if (now - this.#lastExchange < this.#o.debounceMs) return
    this.#lastExchange = now
    void this.#o.gossip.exchange(url, 2000)
  }

  /** Gossip with the node that refused our ring (both ways), or with a live peer. */
  async refresh(url?: string): Promise<void> {
    const gossip = this.#o.gossip
    const target = url ?? [...gossip.states.values()].find((m) => m.id !== gossip.self.id && m.status !== 'left' && gossip.isUp(m.id))?.url
    if (target) await gossip.exchange(target, 2000)
  }
}
