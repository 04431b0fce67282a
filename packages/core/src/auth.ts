// What the cluster secret proves. Three keys are derived from it (HKDF-SHA256), one per use, so a MAC
// made for one purpose is never accepted for another:
//
// - request: node-to-node requests carry `x-zerohop-signature: TIMESTAMP.NONCE.MAC`, an HMAC over the
//   receiver's URL (origin), the method, path, query, timestamp, nonce and body. A receiver refuses
//   one made for another node, outside the replay window, or whose nonce it has seen (the node keeps
//   the nonces of the window).
// - set: a version set a node hands out (a read's answer, a coordinated write) carries a proof, the
//   time it was signed and an HMAC over the key, that time and the set's bytes. A replica accepts a
//   set relayed by a client (the SDK's stores, read repair, hints) only with a valid, recent proof:
//   a token that may write cannot forge versions, nor replay an old set after its tombstone is reaped.
// - context: a context is a list of parts, each a version vector a node signed for one key. A
//   coordinator refuses a context whose parts do not verify (ZH_BAD_CONTEXT), so no client can claim
//   a history that was never written (nor counters that would make the key unwritable).
import { createHmac, hkdfSync, randomBytes, timingSafeEqual } from 'node:crypto'
import type { VersionVector } from './dvv.js'

export const SIGNATURE_HEADER = 'x-zerohop-signature'

/** How far a signed request's or set proof's time may be from the receiver's clock (and how long nonces are kept). */
export const SIGNATURE_WINDOW_MS = 30_000

/** Bytes of a MAC as sent (HMAC-SHA256 truncated: 128 bits). */
export const MAC_BYTES = 16

/** A set proof: the signing time (uint64 ms, big-endian) and the MAC. */
export const SET_PROOF_BYTES = 8 + MAC_BYTES

/** Shortest cluster secret accepted, in bytes. */
export const MIN_SECRET_BYTES = 16

export type RequestCheck = { ok: true; nonce: string } | { ok: false; reason: string }

/** A version vector's canonical bytes (what a context MAC covers): the SDK and nodes encode it alike. */
export function vectorBytes(vv: VersionVector): Buffer {
  let size = 4
  for (const [actor] of vv) size += 2 + Buffer.byteLength(actor) + 8
  const b = Buffer.allocUnsafe(size)
  let o = b.writeUInt32BE(vv.length, 0)
  for (const [actor, counter] of vv) {
    const len = b.write(actor, o + 2)
    b.writeUInt16BE(len, o)
    o += 2 + len
    o = b.writeDoubleBE(counter, o)
  }
  return b
}

/** The inverse of vectorBytes; undefined for bytes that are not one. */
export function vectorFromBytes(b: Uint8Array): VersionVector | undefined {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength)
  if (buf.length < 4) return undefined
  const count = buf.readUInt32BE(0)
  const vv: VersionVector = []
  let o = 4
  for (let i = 0; i < count; i++) {
    if (o + 2 > buf.length) return undefined
    const len = buf.readUInt16BE(o)
    if (o + 2 + len + 8 > buf.length) return undefined
    const actor = buf.toString('utf8', o + 2, o + 2 + len)
    o += 2 + len
    vv.push([actor, buf.readDoubleBE(o)])
    o += 8
  }
  return o === buf.length ? vv : undefined
}

/** One HMAC-SHA256 over the parts, truncated: one update (each costs about a microsecond). */
function mac(key: Buffer, parts: readonly Uint8Array[]): Buffer {
  return createHmac('sha256', key).update(parts.length === 1 ? parts[0] : Buffer.concat(parts)).digest().subarray(0, MAC_BYTES)
}

/** A length prefix: what the next part is, unambiguously. */
function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4)
  b.writeUInt32BE(n, 0)
  return b
}

function macEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.byteLength === b.byteLength && timingSafeEqual(a, b)
}

/** The keys derived from a cluster secret, and what they sign. */
export class ClusterKeys {
  readonly #request: Buffer
  readonly #set: Buffer
  readonly #context: Buffer

  constructor(secret: Uint8Array) {
    if (!(secret instanceof Uint8Array) || secret.byteLength < MIN_SECRET_BYTES) {
      throw new TypeError(`a cluster secret must be at least ${MIN_SECRET_BYTES} bytes`)
    }
    const derive = (info: string) => Buffer.from(hkdfSync('sha256', secret, 'zerohop', info, 32))
    this.#request = derive('request v1')
    this.#set = derive('set v1')
    this.#context = derive('context v1')
  }

  #requestMac(to: string, method: string, target: string, timestamp: string, nonce: string, body: Uint8Array | undefined): Buffer {
    const head = Buffer.from(`${to}\n${method}\n${target}\n${timestamp}\n${nonce}\n`)
    return mac(this.#request, body && body.byteLength > 0 ? [head, body] : [head])
  }

  /**
   * The signature header's value for a request to the node at `to` (its URL; the origin is what
   * counts); `target` is the path and query as sent.
   */
  signRequest(to: string, method: string, target: string, body: Uint8Array | undefined, now: number): string {
    const timestamp = String(Math.floor(now))
    const nonce = randomBytes(12).toString('base64url')
    return `${timestamp}.${nonce}.${this.#requestMac(new URL(to).origin, method, canonicalTarget(target), timestamp, nonce, body).toString('base64url')}`
  }

  /** Whether a signature header is this cluster's, for this request to `self` (the receiver's URL), within the window. */
  checkRequest(header: string, self: string, method: string, target: string, body: Uint8Array | undefined, now: number): RequestCheck {
    const parts = header.split('.')
    if (parts.length !== 3 || !/^[0-9]{1,16}$/.test(parts[0]) || !/^[A-Za-z0-9_-]{8,64}$/.test(parts[1])) return { ok: false, reason: 'the request signature is malformed' }
    const [timestamp, nonce, mac] = parts
    if (Math.abs(Number(timestamp) - now) > SIGNATURE_WINDOW_MS) {
      return { ok: false, reason: `the request was signed at ${timestamp}, more than ${SIGNATURE_WINDOW_MS} ms from this node's clock (check the clocks, or a replay)` }
    }
    const expected = this.#requestMac(new URL(self).origin, method, canonicalTarget(target), timestamp, nonce, body)
    if (!macEqual(Buffer.from(mac, 'base64url'), expected)) return { ok: false, reason: 'the request signature does not match (another cluster secret, or signed for another node?)' }
    return { ok: true, nonce: `${timestamp}.${nonce}` }
  }

  #setMac(key: Uint8Array, set: Uint8Array, time: Buffer): Buffer {
    return mac(this.#set, [u32(key.byteLength), key, time, set])
  }

  /** The proof of a set this node hands out for `key`. */
  proveSet(key: Uint8Array, set: Uint8Array, now: number): Buffer {
    const proof = Buffer.allocUnsafe(SET_PROOF_BYTES)
    proof.writeDoubleBE(Math.floor(now), 0)
    this.#setMac(key, set, proof.subarray(0, 8)).copy(proof, 8)
    return proof
  }

  /** Why a relayed set's proof is refused, or undefined when it is sound and at most `maxAgeMs` from `now`. */
  checkSet(key: Uint8Array, set: Uint8Array, proof: unknown, now: number, maxAgeMs = SIGNATURE_WINDOW_MS): string | undefined {
    if (!(proof instanceof Uint8Array) || proof.byteLength !== SET_PROOF_BYTES) return 'a relayed set needs the proof the node that handed it out gave it'
    const p = Buffer.from(proof.buffer, proof.byteOffset, proof.byteLength)
    const signed = p.readDoubleBE(0)
    if (!Number.isFinite(signed) || Math.abs(now - signed) > maxAgeMs) return `the set's proof is from ${signed}, outside the ${maxAgeMs} ms window; read the key again`
    if (!macEqual(p.subarray(8), this.#setMac(key, set, p.subarray(0, 8)))) return "the set's proof does not match the set (forged or altered)"
    return undefined
  }

  /** The MAC of one context part: `vector` (vectorBytes) as a history of `key`. */
  proveContext(key: Uint8Array, vector: Uint8Array): Buffer {
    return mac(this.#context, [u32(key.byteLength), key, vector])
  }

  checkContext(key: Uint8Array, vector: Uint8Array, mac: Uint8Array): boolean {
    return macEqual(mac, this.proveContext(key, vector))
  }
}

/** Path and query as both ends see them: the query in URLSearchParams' form. */
function canonicalTarget(target: string): string {
  const q = target.indexOf('?')
  if (q < 0) return target
  const query = new URLSearchParams(target.slice(q + 1)).toString()
  return query ? `${target.slice(0, q)}?${query}` : target.slice(0, q)
}
