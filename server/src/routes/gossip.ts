// Push-pull of member entries: answered before the node serves replica requests (a node gossips to
// learn the membership it needs to serve).
import { ErrorCodes, Paths, pack } from '@zerohop/core'
import type { Gossip } from '../gossip.js'
import { allow, bad, decodeBody, msgpack, requireMsgpack, type Route } from './request.js'

export function gossipRoute(deps: { gossip: () => Gossip | undefined; stopping: () => boolean }): Route {
  return (req) => {
    if (req.path !== Paths.gossip) return undefined
    return (async () => {
      allow(req, ['POST'])
      requireMsgpack(req)
      const gossip = deps.gossip()
      if (!gossip || (req.arrivedStopping ?? deps.stopping())) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is not gossiping')
      return msgpack(pack(gossip.receive(decodeBody(req.body))))
    })()
  }
}
