// Encoding of node traffic (MessagePack via msgpackr: values travel as raw bytes, never base64) and of
// the opaque context string clients carry between a read and a write.
import { Packr } from 'msgpackr'
import type { DvvSet, Entry, Value, VersionVector } from './dvv.js'
import { BadContextError } from './errors.js'
import { md5 } from './ring.js'
import { vectorFromBytes } from './auth.js'

const packr = new Packr({ useRecords: false, mapsAsObjects: true, moreTypes: false })

export const MSGPACK = 'application/x-msgpack'

export function pack(value: unknown): Buffer {
  return packr.pack(value)
}

export function unpack(bytes: Uint8Array): unknown {
  return packr.unpack(bytes)
}

export function encodeSet(set: DvvSet): Buffer {
  return packr.pack(set)
}

/**
 * Largest counter a context may carry. Far beyond any real history, and far enough below 2^53 that
 * minting a dot on top of it can never leave the range of safe integers.
 */
export const MAX_COUNTER = 2 ** 48

/** Largest counter a stored set received from the network may carry: room to mint on top of MAX_COUNTER. */
export const MAX_SET_COUNTER = 2 ** 49

/**
 * Why a decoded structure is not a DVV set; undefined when it is one. Sets that arrive from the
 * network are held to `maxCounter` = MAX_COUNTER, so local minting on top of them stays safe.
 */
export function checkSet(x: unknown, maxValueBytes = Infinity, maxCounter = Number.MAX_SAFE_INTEGER): string | undefined {
  if (!Array.isArray(x)) return 'a DVV set must be an array of entries'
  let prev: string | undefined
  for (const e of x as unknown[]) {
    if (!Array.isArray(e) || e.length !== 3) return 'a DVV entry must be [actor, counter, values]'
    const [id, n, vs] = e as [unknown, unknown, unknown]
    if (typeof id !== 'string' || id.length === 0 || id.length > 256) return 'a DVV actor must be a non-empty string'
    if (prev !== undefined && !(prev < id)) return 'DVV entries must be sorted by actor without repeats'
    prev = id
    if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 1) return 'a DVV counter must be a positive integer'
    if (n > maxCounter) return `a DVV counter must be at most ${maxCounter}`
    if (!Array.isArray(vs) || vs.length > n) return 'a DVV entry holds at most counter values'
    for (const v of vs as unknown[]) {
      if (v === null) continue
      if (!(v instanceof Uint8Array)) return 'a DVV value must be bytes or null'
      if (v.byteLength > maxValueBytes) return `a value is ${v.byteLength} bytes, over the limit of ${maxValueBytes}`
    }
  }
  return undefined
}

/** Decode a stored or received set; throws a TypeError naming the defect. */
export function decodeSet(bytes: Uint8Array, maxValueBytes = Infinity): DvvSet {
  let x: unknown
  try {
    x = packr.unpack(bytes)
  } catch (err) {
    throw new TypeError('a DVV set must be valid MessagePack', { cause: err })
  }
  const why = checkSet(x, maxValueBytes)
  if (why) throw new TypeError(why)
  return x as Entry[]
}

export function checkVector(x: unknown): x is VersionVector {
  if (!Array.isArray(x)) return false
  // Actors as checkSet requires them: update() copies them into the stored set.
  return x.every((p) => Array.isArray(p) && p.length === 2 && typeof p[0] === 'string' && p[0].length >= 1 && p[0].length <= 256 && Number.isSafeInteger(p[1]) && p[1] >= 1 && p[1] <= MAX_COUNTER)
}

/**
 * One signed piece of a context: a version vector (vectorBytes) and the MAC a node made of it for the
 * key (see auth.ts). A context read from several replicas that disagreed has one part per history.
 */
export type ContextPart = [vector: Uint8Array, mac: Uint8Array]

/** What a context carries: the causal history read, and which replica answered that read first. */
export interface Context {
  vector: VersionVector
  coordinator?: string
  /** In a cluster with a secret: the signed parts whose join is `vector`. */
  parts?: ContextPart[]
}

/** Most parts of a context: one per replica read, at most N (16). */
export const MAX_CONTEXT_PARTS = 16

const CONTEXT_VERSION = 1
const SIGNED_CONTEXT_VERSION = 2
const CHECKSUM_BYTES = 4

/** The pointwise maximum of version vectors, sorted by actor. */
export function joinVectors(vectors: readonly VersionVector[]): VersionVector {
  if (vectors.length === 1) return vectors[0]
  const max = new Map<string, number>()
  for (const vv of vectors) for (const [id, n] of vv) max.set(id, Math.max(max.get(id) ?? 0, n))
  return [...max].sort((x, y) => (x[0] < y[0] ? -1 : x[0] > y[0] ? 1 : 0))
}

// A context is its MessagePack payload followed by 4 bytes of the payload's MD5, so a context that
// was truncated or altered in transit is refused instead of being read as some other history. A signed
// context (a cluster with a secret) carries its parts instead of the vector: the vector is their join.
export function encodeContext(ctx: Context): string {
  const payload = ctx.parts && ctx.parts.length > 0
    ? packr.pack([SIGNED_CONTEXT_VERSION, ctx.parts, ctx.coordinator ?? null])
    : packr.pack([CONTEXT_VERSION, ctx.vector, ctx.coordinator ?? null])
  return Buffer.concat([payload, md5(payload).subarray(0, CHECKSUM_BYTES)]).toString('base64url')
}

export function decodeContext(s: string): Context {
  if (typeof s !== 'string' || s.length === 0 || s.length > 65536 || !/^[A-Za-z0-9_-]+$/.test(s)) {
    throw new BadContextError('context must be the string a get() or put() returned')
  }
  const raw = Buffer.from(s, 'base64url')
  const payload = raw.subarray(0, raw.length - CHECKSUM_BYTES)
  if (raw.length <= CHECKSUM_BYTES || !md5(payload).subarray(0, CHECKSUM_BYTES).equals(raw.subarray(raw.length - CHECKSUM_BYTES))) {
    throw new BadContextError('context is damaged (its checksum does not match); pass the string a get() or put() returned, unchanged')
  }
  let x: unknown
  try {
    x = packr.unpack(payload)
  } catch (err) {
    throw new BadContextError('context is damaged: it does not decode', { cause: err })
  }
  const incompatible = () => new BadContextError('context is damaged or from an incompatible version; read the key again to get a fresh one')
  if (!Array.isArray(x) || !(x[2] === null || typeof x[2] === 'string')) throw incompatible()
  const coordinator = (x[2] as string | null) ?? undefined
  if (x[0] === CONTEXT_VERSION && checkVector(x[1])) return { vector: x[1] as VersionVector, coordinator }
  if (x[0] !== SIGNED_CONTEXT_VERSION || !Array.isArray(x[1]) || x[1].length === 0 || x[1].length > MAX_CONTEXT_PARTS) throw incompatible()
  const parts: ContextPart[] = []
  const vectors: VersionVector[] = []
  for (const part of x[1] as unknown[]) {
    if (!Array.isArray(part) || part.length !== 2 || !(part[0] instanceof Uint8Array) || !(part[1] instanceof Uint8Array)) throw incompatible()
    const vv = vectorFromBytes(part[0])
    if (!vv || !checkVector(vv)) throw incompatible()
    parts.push([part[0], part[1]])
    vectors.push(vv)
  }
  return { vector: joinVectors(vectors), coordinator, parts }
}

export type { Value }
