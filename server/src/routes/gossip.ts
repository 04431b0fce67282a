// Push-pull of member entries: answered before the node serves replica requests (a node gossips to
// learn the membership it needs to serve).
import { ErrorCodes, MSGPACK, Paths, pack } from '@zerohop/core'
import type { Gossip } from '../gossip.js'
import { allow, bad, decodeBody, header, msgpack, type Route } from './request.js'

export function gossipRoute(deps: { gossip: () => Gossip | undefined; stopping: () => boolean }): Route {
  return (req) => {
    if (req.path !== Paths.gossip) return undefined
    return (async () => {
      allow(req, ['POST'])
      const type = (header(req, 'content-type') ?? '').split(';')[0].trim().toLowerCase()
      if (type !== MSGPACK) throw bad(415, ErrorCodes.UNSUPPORTED_MEDIA_TYPE, `${req.path} takes content-type ${MSGPACK}, got ${type || 'none'}`)
      const gossip = deps.gossip()
      if (!gossip || (req.arrivedStopping ?? deps.stopping())) throw bad(503, ErrorCodes.SHUTTING_DOWN, 'this node is not gossiping')
      return msgpack(pack(gossip.receive(decodeBody(req.body))))
    })()
  }
}
