// Who sent a request, and what it may do: one policy for every route. A request is from a node (this
// one, through its local path, or one signed with the cluster secret), from a user (a bearer token of
// the users file) or anonymous. With a cluster secret, node-to-node endpoints (gossip, handoff,
// anti-entropy, reaping) take only nodes; with a users file, every other endpoint but /v1/health and
// the dashboard's files takes only nodes and users with the role it needs. With --tls-ca, a node's
// request must also come with a certificate of the cluster's CA (mutual TLS). A refused request changes
// nothing: the check runs before any route sees it, and each refusal is counted by reason.
import { ApiPaths, ErrorCodes, HttpError, Paths, SIGNATURE_HEADER, SIGNATURE_WINDOW_MS, type ClusterKeys } from '@zerohop/core'
import { AntiEntropyPaths } from './anti-entropy.js'
import { ReapPaths } from './reaper.js'
import type { Role, User, Users } from './users.js'
import { isDashboardPath } from './routes/dashboard.js'
import type { NodeRequest } from './routes/request.js'

export type Principal = { kind: 'node' } | { kind: 'user'; user: User } | { kind: 'anonymous' }

/** What a request needs: nothing, any user, a role, or to come from a node of the cluster. */
export type Need = 'open' | 'user' | Role | 'node'

const NODE_ONLY = new Set<string>([Paths.gossip, Paths.range, ...Object.values(AntiEntropyPaths), ...Object.values(ReapPaths)])

/** The policy: what each endpoint needs (a batch's requests are each checked again, see kv.ts). */
export function needOf(method: string, path: string): Need {
  if (path === Paths.health) return 'open'
  // The dashboard's page and files hold no data: what it shows comes from /v1/cluster, which needs a user.
  if (isDashboardPath(path)) return 'open'
  if (NODE_ONLY.has(path)) return 'node'
  if (path === Paths.leave || path === Paths.remove) return 'admin'
  // A store takes from a client only sets its nodes proved (see routes/replica.ts): relaying one is a
  // repair, which a reader's read repair does too; a hint among them takes the write role.
  if (path === Paths.read || path === Paths.store || path === Paths.hints || path.startsWith(ApiPaths.explain)) return 'read'
  if (path === Paths.coordinate) return 'write'
  if (path.startsWith(ApiPaths.kv)) return method === 'PUT' || method === 'DELETE' ? 'write' : 'read'
  if (path === ApiPaths.batch) return 'read'
  // The ring and metrics: any user; unknown paths too (they answer 404 to those).
  return 'user'
}

/**
 * Whether `who` has `role`. Writing includes reading: a write answers with the values it leaves
 * beside it (siblings), and a delete without a context reads first.
 */
export function mayDo(who: Principal, role: Role): boolean {
  if (who.kind !== 'user') return true
  return who.user.roles.has(role) || (role === 'read' && who.user.roles.has('write'))
}

export interface AuthOptions {
  /** The cluster secret's keys: node-to-node requests must be signed. */
  keys?: ClusterKeys
  /** The users file: client requests need a token. */
  users?: Users
  /**
   * --tls-ca: the cluster's nodes hold certificates of its CA. A request from a node must then also
   * come with one (mutual TLS): a stolen secret alone does not make a node, nor, without a secret, can
   * anyone without a certificate reach the node-to-node endpoints.
   */
  mutualTls?: boolean
  /** This node's URL: a signed request must have been signed for it. */
  self: string
  now: () => number
}

/** Most nonces remembered in one generation (about 8,000 signed requests a second for a window). */
export const MAX_NONCES = 500_000

/**
 * The nonces of signed requests seen lately, in two generations that take turns every two signature
 * windows (the older one is dropped): a nonce is remembered for at least two windows, and a request
 * signed longer ago than one window is refused by its timestamp anyway. Memory follows the traffic and
 * nothing is reserved up front; a generation that fills up (MAX_NONCES) turns early. The ages are read
 * off the node's clock.
 */
export class NonceWindow {
  #current = new Set<string>()
  #previous = new Set<string>()
  #turned: number

  constructor(readonly now: () => number, readonly max = MAX_NONCES) {
    this.#turned = now()
  }

  /** Whether `nonce` was seen before; it is remembered from now on. */
  seen(nonce: string): boolean {
    const now = this.now()
    if (now - this.#turned >= 2 * SIGNATURE_WINDOW_MS || now < this.#turned || this.#current.size >= this.max) {
      this.#previous = this.#current
      this.#current = new Set()
      this.#turned = now
    }
    if (this.#current.has(nonce) || this.#previous.has(nonce)) return true
    this.#current.add(nonce)
    return false
  }
}

const NODE: Principal = { kind: 'node' }
const ANONYMOUS: Principal = { kind: 'anonymous' }

export class Auth {
  readonly keys?: ClusterKeys
  readonly users?: Users
  readonly #mutualTls: boolean
  readonly #self: string
  readonly #now: () => number
  /** Nonces of signed requests seen lately: a replayed request is refused (only with a secret). */
  readonly #nonces?: NonceWindow
  /** Refusals by reason (the metric's label): see zerohop_auth_refused_total in metrics.ts. */
  readonly refused = new Map<string, number>()

  constructor(o: AuthOptions) {
    this.keys = o.keys
    this.users = o.users
    this.#mutualTls = o.mutualTls ?? false
    this.#self = o.self
    this.#now = o.now
    if (o.keys) this.#nonces = new NonceWindow(o.now)
  }

  /** Whether anything is checked at all (a node without secret and users file trusts its network). */
  get enabled(): boolean {
    return this.keys !== undefined || this.users !== undefined || this.#mutualTls
  }

  count(reason: string): void {
    this.refused.set(reason, (this.refused.get(reason) ?? 0) + 1)
  }

  #refuse(reason: string, status: 401 | 403, message: string): never {
    this.count(reason)
    throw new HttpError(status, status === 401 ? ErrorCodes.UNAUTHENTICATED : ErrorCodes.FORBIDDEN, message)
  }

  /** Who sent the request; a credential that is present but wrong is refused (401). */
  async identify(req: NodeRequest): Promise<Principal> {
    if (req.local) return NODE
    const signature = req.headers[SIGNATURE_HEADER]
    if (this.keys && typeof signature === 'string') {
      const q = req.query.toString()
      const check = this.keys.checkRequest(signature, this.#self, req.method, q ? `${req.path}?${q}` : req.path, req.body, this.#now())
      if (!check.ok) this.#refuse('bad-signature', 401, check.reason)
      if (this.#mutualTls && !req.peerCertified) this.#refuse('uncertified', 401, 'a request signed as a node must come with a certificate of the cluster\'s CA (mutual TLS)')
      if (this.#nonces!.seen(check.nonce)) this.#refuse('replay', 401, 'this signed request was seen before (a replay)')
      return NODE
    }
    // Mutual TLS without a secret: the certificate is what makes a node.
    if (!this.keys && this.#mutualTls && req.peerCertified) return NODE
    const authorization = req.headers.authorization
    if (this.users && typeof authorization === 'string') {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(authorization)
      if (!m) this.#refuse('bad-token', 401, 'authorization must be "Bearer TOKEN"')
      const user = await this.users.verify(m[1])
      if (!user) this.#refuse('bad-token', 401, 'the token is not valid (unknown, revoked or mistyped); ask an admin for one (zerohop user add)')
      return { kind: 'user', user }
    }
    return ANONYMOUS
  }

  /** Refuse (401 or 403) a request `who` may not make. */
  check(who: Principal, need: Need, what: string): void {
    if (need === 'open' || who.kind === 'node') return
    if (need === 'node') {
      if (this.keys) this.#refuse('unsigned', 401, `${what} takes only requests from nodes of the cluster, signed with its secret (--cluster-secret-file)`)
      if (this.#mutualTls) this.#refuse('uncertified', 401, `${what} takes only requests from nodes of the cluster, with a certificate of its CA (--tls-ca)`)
      return
    }
    if (!this.users) return
    if (who.kind === 'anonymous') this.#refuse('no-token', 401, `${what} needs a token: send authorization: Bearer TOKEN`)
    if (need !== 'user' && !mayDo(who, need)) this.#refuse('forbidden', 403, `user ${who.user.name} may not ${need === 'admin' ? 'change membership' : need} (${what} needs the ${need} role)`)
  }

  /** Identify and check in one: what the request handler runs before any route. */
  async admit(req: NodeRequest): Promise<Principal> {
    if (!this.enabled) return req.local ? NODE : ANONYMOUS
    const who = await this.identify(req)
    this.check(who, needOf(req.method, req.path), `${req.method} ${req.path.startsWith(ApiPaths.kv) ? ApiPaths.kv + '{key}' : req.path}`)
    return who
  }
}
