export { connect, Client, Collection, type GetResult, type PutResult, type InspectResult, type ReplicaState, type CollectionOptions, type Codec } from './client.js'
export { clientDefaults, type ClientOptions, type GetOptions, type PutOptions, type CallOptions, type MergeFunction, type Key } from './options.js'
export { UndiciTransport, type Transport, type Reply, type SendOptions, type UndiciTransportOptions } from './transport.js'
export {
  ReplicaClient,
  replicaClientDefaults,
  replyError,
  type ReplicaClientOptions,
  type ReplicaRequestOptions,
  type ReplyErrorBody,
} from './replica-client.js'
export { channels } from './engine.js'
export { membershipChannels, type MembershipEvents, type NodeEvent } from './membership.js'
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
  HttpError,
  ErrorCodes,
  type ErrorCode,
  type ReplicaFailure,
  type TransportErrorKind,
  type Clock,
} from '@zerohop/core'
export { systemClock } from './clock.js'
