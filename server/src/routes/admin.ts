// What operators, load balancers and SDKs ask a node about itself: health, the ring (held open with
// `?wait=EPOCH` until it changes), metrics, and the operator's leave and remove.
import { ErrorCodes, Paths, type ClusterResponse, type ClusterView, type MemberState, type NodeStats, type RingResponse } from '@zerohop/core'
import type { ResolvedNodeOptions } from '../config.js'
import type { Gossip } from '../gossip.js'
import { allow, bad, json, type Route } from './request.js'

/** Longest a `GET /v1/ring?wait=EPOCH` is held open. */
export const RING_WAIT_MS = 20_000

export interface AdminRouteDeps {
  options: ResolvedNodeOptions
  view: () => ClusterView | undefined
  gossip: () => Gossip | undefined
  metrics: () => Promise<{ contentType: string; text: string }>
  health: () => object
  /** This node's own figures (GET /v1/stats). */
  stats: () => Promise<NodeStats>
  /** The cluster as this node sees it, with every member's figures (GET /v1/cluster). */
  cluster: () => Promise<ClusterResponse>
  stopping: () => boolean
  leave: () => { member: MemberState; changed: boolean }
  remove: (id: string) => { member: MemberState; changed: boolean }
  /** Resolves at the next change of the membership, when the node stops, or after `ms`. */
  nextChange: (ms: number) => Promise<void>
}

export function adminRoute(deps: AdminRouteDeps): Route {
  const { options } = deps

  async function ring(wait: string | null): Promise<RingResponse> {
    let view = deps.view()
    const gossip = deps.gossip()
    if (!view || !gossip) throw bad(503, ErrorCodes.NOT_READY, 'this node is starting: it has not heard from enough seeds yet; retry shortly')
    // A watch: answered once this node's epoch differs from `wait` (or after a while), so an idle SDK
    // hears of a ring change at once.
    if (wait !== null && wait === view.epoch && !deps.stopping()) {
      await deps.nextChange(RING_WAIT_MS)
      view = deps.view() ?? view
    }
    return {
      epoch: view.epoch,
      partitions: view.current.partitions,
      n: view.current.n,
      spares: view.current.spares,
      members: [...view.members.values()],
      down: gossip.down(),
      limits: { maxKeyBytes: options.maxKeyBytes, maxValueBytes: options.maxValueBytes, maxBodyBytes: options.maxBodyBytes },
    }
  }

  const routes: Record<string, Route> = {
    [Paths.health]: async (req) => {
      allow(req, ['GET', 'HEAD'])
      // 200 only while the node serves: a load balancer's check sends no client to a node that is
      // starting (it would answer 503 ZH_NOT_READY) or stopping.
      const health = deps.health() as { status?: string }
      return json(health.status === 'ok' ? 200 : 503, health)
    },
    [Paths.ring]: async (req) => {
      allow(req, ['GET', 'HEAD'])
      return json(200, await ring(req.query.get('wait')))
    },
    [Paths.stats]: async (req) => {
      allow(req, ['GET'])
      return json(200, await deps.stats())
    },
    [Paths.cluster]: async (req) => {
      allow(req, ['GET'])
      return json(200, await deps.cluster())
    },
    [Paths.metrics]: async (req) => {
      allow(req, ['GET'])
      const { contentType, text } = await deps.metrics()
      return { status: 200, headers: { 'content-type': contentType }, body: text }
    },
    [Paths.leave]: async (req) => {
      allow(req, ['POST'])
      if (deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
      return json(202, deps.leave())
    },
    [Paths.remove]: async (req) => {
      allow(req, ['POST'])
      if (deps.stopping()) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is shutting down')
      let body: { id?: unknown }
      try {
        body = JSON.parse(req.body.toString('utf8')) as { id?: unknown }
      } catch {
        throw bad(400, ErrorCodes.BAD_BODY, 'body must be JSON: {"id":"<node id>"}')
      }
      if (typeof body?.id !== 'string' || body.id.length === 0) throw bad(400, ErrorCodes.BAD_BODY, 'body must be JSON: {"id":"<node id>"}')
      return json(202, deps.remove(body.id))
    },
  }
  return (req) => routes[req.path]?.(req)
}
