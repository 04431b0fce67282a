export { connect, Client, Collection, type GetResult, type PutResult, type ExplainResult, type ReplicaState, type HintState, type CollectionOptions, type Codec } from './client.js'
export {
  clientDefaults,
  resolveEngineOptions,
  type ClientOptions,
  type EngineOptions,
  type ResolvedEngineOptions,
  type Routing,
  type GetOptions,
  type PutOptions,
  type CallOptions,
  type MergeFunction,
  type Key,
} from './options.js'
export { FramesTransport, type FramesTransportOptions } from './frames-transport.js'
export { UndiciTransport, type Transport, type Reply, type SendOptions, type UndiciTransportOptions, type TransportTls } from './transport.js'
// The coordinator engine, for a node that coordinates on behalf of clients behind a load balancer.
export { Engine, channels, type RawGetResult, type RawPutResult } from './engine.js'
export type { Coordinator, CoordinatedGet, CoordinatedPut, Explanation, ReplicaExplanation } from './coordinator.js'
export { LoadBalancerCoordinator } from './load-balancer.js'
export { WriteQuorum, verdict, type Requirement, type StoreAction, type Verdict } from './quorum.js'
export { RingWatch, membershipChannels, type Membership, type MembershipEvents, type NodeEvent } from './membership.js'
export {
  ReplicaClient,
  replicaClientDefaults,
  replyError,
  type ReplicaClientOptions,
  type ReplicaRequestOptions,
  type ReplyErrorBody,
} from './replica-client.js'
export {
  ZerohopError,
  InvalidArgumentError,
  BadContextError,
  KeyTooLargeError,
  ValueTooLargeError,
  QuorumError,
  AbortError,
  NoSeedReachableError,
  ClientClosedError,
  MergeError,
  TransportError,
  InvalidResponseError,
  UnauthenticatedError,
  ForbiddenError,
  HttpError,
  ErrorCodes,
  type ErrorCode,
  type ReplicaFailure,
  type TransportErrorKind,
  type Clock,
} from '@zerohop/core'
export { systemClock, systemRandom } from './clock.js'
