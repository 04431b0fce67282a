// The simulated network: every node's request handler behind one Transport per sender, with latency,
// loss, duplication, reordering (independent delays) and partitions drawn from the seed. It keeps the
// transport contract: any answer resolves; no answer rejects with a TransportError whose `delivered`
// is false only when the request certainly did not reach the node (nothing listens there).
import { ApiPaths, EPOCH_HEADER, MSGPACK, Paths, TransportError, type Random } from '@zerohop/core'
import type { Reply, SendOptions, Transport } from '@zerohop/client'
import { invoke, type RequestHandler } from '@zerohop/server'
import type { Owner, Scheduler } from './scheduler.js'

export interface NetworkFaults {
  /** Chance that one message (a request or its answer) is lost. */
  loss: number
  /** Chance that a request is delivered twice (the second answer is dropped). */
  duplicate: number
  /** One-way delay in ms: uniform in [min, max], with `slow` chance of up to `slowMs` more. */
  delay: { min: number; max: number; slow: number; slowMs: number }
}

/**
 * Requests a duplicate of which is a fault the system must survive. HTTP over TCP does not duplicate;
 * a duplicate is a retry, and Zerohop never replays a request that mints a version (a coordination, a
 * client's write, a batch that may carry writes): a second copy would be a second write of the same
 * value, a spurious sibling no context saw. The HAProxy configuration keeps that rule too.
 */
export function replayable(method: string, path: string): boolean {
  if (method === 'GET') return true
  const p = path.split('?')[0]
  return !(p === Paths.coordinate || p === ApiPaths.batch || p.startsWith(ApiPaths.kv) || p === Paths.leave || p === Paths.remove)
}

export const calm: NetworkFaults = { loss: 0, duplicate: 0, delay: { min: 0.2, max: 1, slow: 0, slowMs: 0 } }

interface Endpoint {
  id: string
  owner: Owner
  handler: RequestHandler
  maxBodyBytes: number
}

export class SimNetwork {
  faults: NetworkFaults = calm
  readonly #endpoints = new Map<string, Endpoint>()
  /** Links cut one way: `${from}>${to}` (ids). */
  readonly #cut = new Set<string>()
  /** Messages sent, lost, duplicated (the run's report). */
  readonly counts = { sent: 0, lost: 0, duplicated: 0, refused: 0 }
  /** Every request delivered, in order, while `recording` (tests look at who was asked what). */
  recording = false
  readonly delivered: { from: string; to: string; method: string; path: string }[] = []
  /** Requests delivered and their bytes (request and answer bodies), per path. */
  readonly paths = new Map<string, { count: number; bytes: number }>()

  constructor(
    readonly scheduler: Scheduler,
    readonly random: Random,
    readonly log: (line: string) => void,
  ) {}

  /** Serve `handler` at `url` for the run `owner` of node `id`. */
  listen(url: string, id: string, owner: Owner, handler: RequestHandler, maxBodyBytes: number): { close(): Promise<void> } {
    const origin = new URL(url).origin
    const endpoint = { id, owner, handler, maxBodyBytes }
    this.#endpoints.set(origin, endpoint)
    return {
      close: async () => {
        if (this.#endpoints.get(origin) === endpoint) this.#endpoints.delete(origin)
      },
    }
  }

  /** Nothing listens at `url` any more (its node crashed). */
  unlisten(url: string): void {
    this.#endpoints.delete(new URL(url).origin)
  }

  /** Messages from `from` to `to` are lost (ids of nodes or clients) until uncut. */
  cut(from: string, to: string): void {
    this.#cut.add(`${from}>${to}`)
  }

  uncut(from: string, to: string): void {
    this.#cut.delete(`${from}>${to}`)
  }

  /** Every link works again, and the weather is calm. */
  heal(): void {
    this.#cut.clear()
    this.faults = calm
  }

  get partitioned(): boolean {
    return this.#cut.size > 0
  }

  #delay(): number {
    const d = this.faults.delay
    let ms = d.min + this.random.next() * (d.max - d.min)
    if (this.random.next() < d.slow) ms += this.random.next() * d.slowMs
    return ms
  }

  #lost(from: string, to: string): boolean {
    return this.#cut.has(`${from}>${to}`) || (this.faults.loss > 0 && this.random.next() < this.faults.loss)
  }

  /** The transport of sender `id`, whose callbacks run as `owner` (a node's run, or a client). */
  transport(id: string, owner: Owner): Transport {
    const send = (method: string, url: string, path: string, body: Uint8Array | undefined, options: SendOptions = {}) => this.#send(id, owner, method, url, path, body, options)
    return {
      post: (url, path, body, options) => send('POST', url, path, body, options),
      get: (url, path, options) => send('GET', url, path, undefined, options),
      close: async () => {},
    }
  }

  #send(from: string, owner: Owner, method: string, url: string, path: string, body: Uint8Array | undefined, options: SendOptions): Promise<Reply> {
    const s = this.scheduler
    const origin = new URL(url).origin
    const headers: Record<string, string> = { ...options.headers }
    if (method === 'POST') headers['content-type'] ??= MSGPACK
    if (options.epoch) headers[EPOCH_HEADER] = options.epoch
    this.counts.sent++
    return new Promise<Reply>((resolve, reject) => {
      let timer: { cancelled: boolean } | undefined
      let settled = false
      const finish = (f: () => void) => {
        if (settled) return
        settled = true
        if (timer) timer.cancelled = true
        options.signal?.removeEventListener('abort', onAbort)
        f()
      }
      const onAbort = () => finish(() => reject(new TransportError('aborted', `request to ${url}${path} aborted`, { delivered: true })))
      if (options.signal?.aborted) return onAbort()
      options.signal?.addEventListener('abort', onAbort, { once: true })
      const timeoutMs = options.timeoutMs ?? 30_000
      timer = s.at(s.now + timeoutMs, owner, () => finish(() => reject(new TransportError('timeout', `no answer from ${url}${path} within ${timeoutMs} ms`, { delivered: true }))))
      const target = this.#endpoints.get(origin)
      const to = target?.id ?? origin
      const tag = `${from}>${to} ${method} ${path.split('?')[0]}`
      if (!target) {
        // Connection refused: nothing listens there. It takes a round trip to learn.
        this.counts.refused++
        s.at(s.now + 2 * this.#delay(), owner, () => finish(() => reject(new TransportError('refused', `connection to ${url} refused`, { delivered: false }))))
        return
      }
      if (this.#lost(from, to)) {
        this.counts.lost++
        this.log(`net lost ${tag}`)
        return
      }
      const copies = this.faults.duplicate > 0 && replayable(method, path) && this.random.next() < this.faults.duplicate ? 2 : 1
      if (copies === 2) this.counts.duplicated++
      for (let c = 0; c < copies; c++) {
        s.at(s.now + this.#delay(), target.owner, () => {
          // The node that was listening may have crashed meanwhile (a new run is another owner).
          if (this.#endpoints.get(origin) !== target) return
          this.log(`net ${c > 0 ? 'dup ' : ''}${tag}`)
          const p = path.split('?')[0]
          if (this.recording) this.delivered.push({ from, to, method, path: p })
          let traffic = this.paths.get(p)
          if (!traffic) this.paths.set(p, (traffic = { count: 0, bytes: 0 }))
          traffic.count++
          traffic.bytes += body?.byteLength ?? 0
          void invoke(target.handler, target.maxBodyBytes, { method, path, headers, body, local: false }).then((reply) => {
            if (c > 0) return
            traffic.bytes += reply.body.byteLength
            this.log(`net reply ${tag} ${reply.status}${reply.status >= 400 ? ` ${reply.body.toString('utf8').slice(0, 300)}` : ''}`)
            if (this.#lost(to, from)) {
              this.counts.lost++
              this.log(`net lost reply ${tag}`)
              return
            }
            s.at(s.now + this.#delay(), owner, () => finish(() => resolve(reply)))
          }, (err) => s.at(s.now, owner, () => finish(() => reject(new TransportError('network', `request to ${url}${path} failed: ${(err as Error).message}`, { delivered: true, cause: err })))))
        })
      }
    })
  }
}
