// The node's request handler: every route module behind one function of a request to a reply. Each
// reply carries the node's ring epoch; anything a route throws becomes the JSON error contract.
import { ApiPaths, EPOCH_HEADER, ErrorCodes, Paths } from '@zerohop/core'
import { AntiEntropyPaths } from '../anti-entropy.js'
import type { RequestMetrics } from '../metrics.js'
import { ReapPaths } from '../reaper.js'
import type { Logger } from 'pino'
import { adminRoute, type AdminRouteDeps } from './admin.js'
import { DASHBOARD_PATH, dashboardRoute, isDashboardPath } from './dashboard.js'
import { gossipRoute } from './gossip.js'
import { kvRoute, type KvRouteDeps } from './kv.js'
import { replicaRoute, type ReplicaRouteDeps } from './replica.js'
import { bad, errorReply, type NodeRequest, type RequestHandler } from './request.js'
import { needOf, type Auth } from '../auth.js'

export type RouteDeps = AdminRouteDeps & ReplicaRouteDeps & Omit<KvRouteDeps, 'admit' | 'served'> & {
  log: Logger
  auth: Auth
  /** Requests served: counted and timed. */
  requests: RequestMetrics
  /** Milliseconds on a clock that never steps, for timing requests (performance.now(), or virtual time in a simulation). */
  elapsed: () => number
}

/** Methods kept as a metrics label (any other is `other`). */
const METHODS = new Set(['GET', 'HEAD', 'PUT', 'POST', 'DELETE'])

const KNOWN = new Set<string>([...Object.values(Paths), ...Object.values(AntiEntropyPaths), ...Object.values(ReapPaths), ApiPaths.batch])

/** A metrics label for a path: bounded, whatever clients send. */
function routeOf(path: string, query?: URLSearchParams): string {
  // A ring watch is held open by design: timed apart from the ring's plain reads.
  if (path === Paths.ring && query?.has('wait')) return `${Paths.ring}?wait`
  if (path.startsWith(ApiPaths.kv)) return ApiPaths.kv.slice(0, -1)
  if (path.startsWith(ApiPaths.explain)) return ApiPaths.explain.slice(0, -1)
  if (isDashboardPath(path)) return DASHBOARD_PATH
  return KNOWN.has(path) ? path : 'unknown'
}

export function createRequestHandler(deps: RouteDeps): RequestHandler {
  const { auth } = deps
  // A batch's requests are each checked again, with the batch's sender.
  const admitBatched = (req: NodeRequest) => auth.check(req.principal ?? { kind: 'anonymous' }, needOf(req.method, req.path), `${req.method} ${req.path}`)
  /** Counted and timed: each request, and each request of a batch on its own as well. */
  const served = (req: NodeRequest, started: number) =>
    deps.requests.served(routeOf(req.path, req.query), METHODS.has(req.method) ? req.method : 'other', req.local ? 'local' : req.framed ? 'frames' : 'http', (deps.elapsed() - started) / 1000)
  const routes = [adminRoute(deps), dashboardRoute(), gossipRoute(deps), replicaRoute(deps), kvRoute({ ...deps, admit: admitBatched, served })]
  return async (req) => {
    const started = deps.elapsed()
    const view = deps.view()
    let reply
    try {
      if (req.bodyError !== undefined) throw req.bodyError
      req.principal = await auth.admit(req)
      let answer
      for (const route of routes) if ((answer = route(req))) break
      if (!answer) throw bad(404, ErrorCodes.NOT_FOUND, `no endpoint ${req.path}; see the README for the node's HTTP API`)
      reply = await answer
    } catch (err) {
      reply = errorReply(err, deps.log)
    }
    if (view) reply.headers = { ...reply.headers, [EPOCH_HEADER]: view.epoch }
    served(req, started)
    return reply
  }
}

export type { NodeRequest, NodeReply, RequestHandler } from './request.js'
