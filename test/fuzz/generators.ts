// Request generators of the endpoint fuzzer: each request is a small data record (method, path,
// headers, body; or raw bytes for a socket), drawn from its own PRNG seeded by (seed, index), so any
// one request can be rebuilt from the seed and its index alone and replayed.
//
// What is never sent, whatever the seed (each would change the cluster for real, not test input checks):
// - POST /v1/admin/leave (any POST makes the node leave: it takes no body); only other methods go there;
// - POST /v1/admin/remove naming a real member (only malformed bodies and ids no member has);
// - writes (kv PUT/DELETE, batches, coordinate, store, reap) to the checked keys: those go to scratch keys;
// - unless `forged` is on: well-formed /v1/replica/store items with made-up DVV sets (every store body
//   then holds at least one item that is certainly refused, and a batch is validated whole before any
//   item is stored), and well-formed gossip with invented or rewritten member entries (every gossip
//   body then is malformed, empty, or a verbatim copy of entries older than the node's).
// Until node-to-node authentication lands, the forged kinds are accepted and would corrupt data or
// the membership; once it lands, run them without credentials: every one must be refused.
import { ApiPaths, CONTEXT_HEADER, EPOCH_HEADER, MSGPACK, Paths, encodeContext, encodeSet, pack, percentEncode, type DvvSet, type MemberState, type Ring, type VersionVector } from '@zerohop/core'
import { AntiEntropyPaths } from '../../server/src/anti-entropy.js'
import { ReapPaths } from '../../server/src/reaper.js'
import { mulberry32 } from '../harness/prng.js'

export interface FuzzRequest {
  /** Which generator made it (the report counts by it). */
  kind: string
  /** Index of the node it goes to. */
  target: number
  method: string
  /** Path and query, as sent. */
  path: string
  headers: Record<string, string>
  body?: Uint8Array
  /** Raw bytes written to a socket instead of an HTTP request (malformed HTTP itself). */
  raw?: Uint8Array
  /** Raw only: close the socket right after writing (a cut-off request); no reply is expected. */
  cut?: boolean
  /** An oversized body: the node may close the connection while it is still being sent. */
  oversized?: boolean
}

export interface FuzzContext {
  nodes: number
  partitions: number
  n: number
  ring: Ring
  /** Member entries as the cluster held them before the run (older than any the nodes hold later). */
  members: MemberState[]
  epoch: string
  /** Keys written before the run whose values are checked after it: only ever read. */
  checkedKeys: Uint8Array[]
  /** Contexts real reads and writes returned (of scratch keys), to truncate and alter. */
  contexts: string[]
  maxKeyBytes: number
  maxValueBytes: number
  maxBodyBytes: number
  /** Send well-formed but forged store sets and gossip entries (see the top of this file). */
  forged: boolean
}

/** The prefix of checked keys; no generated key starts with it. */
export const CHECKED_PREFIX = 'fuzz-checked-'

export class Draw {
  readonly #next: () => number
  constructor(seed: number, index: number) {
    // Index mixed into the seed (splitmix-like), so neighbouring indices draw unrelated streams.
    let h = (seed ^ Math.imul(index + 0x9e3779b9, 0x85ebca6b)) >>> 0
    h = Math.imul(h ^ (h >>> 16), 0x7feb352d) >>> 0
    h = Math.imul(h ^ (h >>> 15), 0x846ca68b) >>> 0
    this.#next = mulberry32(h ^ (h >>> 16))
  }
  float(): number {
    return this.#next()
  }
  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.#next() * (max - min + 1))
  }
  chance(p: number): boolean {
    return this.#next() < p
  }
  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#next() * xs.length)]
  }
  bytes(length: number): Buffer {
    const b = Buffer.alloc(length)
    for (let i = 0; i < length; i++) b[i] = Math.floor(this.#next() * 256)
    return b
  }
  /** Picks by weight: [[weight, value], ...]. */
  weighted<T>(choices: readonly [number, T][]): T {
    let total = 0
    for (const [w] of choices) total += w
    let x = this.#next() * total
    for (const [w, v] of choices) if ((x -= w) < 0) return v
    return choices[choices.length - 1][1]
  }
}

const INT64_MAX = 2n ** 63n - 1n

/** Numbers of every awkward kind, BigInts among them (what a 64-bit integer decodes as). */
function oddNumber(d: Draw): number | bigint {
  return d.pick<() => number | bigint>([
    () => -1,
    () => 0,
    () => d.int(-1000, 1000) + 0.5,
    () => 2 ** 31,
    () => 2 ** 32 + 1,
    () => 2 ** 53 + 2,
    () => Number.MAX_SAFE_INTEGER,
    () => -Number.MAX_SAFE_INTEGER,
    () => 1e308,
    () => NaN,
    () => Infinity,
    () => -Infinity,
    () => INT64_MAX,
    () => -INT64_MAX,
    () => BigInt(d.int(0, 1000)),
    () => 2n ** 53n + 1n,
    () => d.int(0, 70000),
  ])()
}

function oddString(d: Draw): string {
  return d.pick<() => string>([
    () => '',
    () => 'x',
    () => '\u0000',
    () => '💥'.repeat(d.int(1, 50)),
    () => 'a'.repeat(d.int(60, 5000)),
    () => '__proto__',
    () => 'constructor',
    () => '../../etc/passwd',
    () => '%zz',
    () => '1',
    () => 'normal',
    () => d.bytes(d.int(1, 40)).toString('latin1'),
  ])()
}

/** Any MessagePack-able junk, nested up to `depth`. */
export function junk(d: Draw, depth = 3): unknown {
  const leaf = depth <= 0
  return d.weighted<() => unknown>([
    [3, () => oddNumber(d)],
    [3, () => oddString(d)],
    [2, () => d.bytes(d.int(0, 64))],
    [1, () => null],
    [1, () => d.chance(0.5)],
    [1, () => undefined],
    [leaf ? 0 : 2, () => Array.from({ length: d.int(0, 5) }, () => junk(d, depth - 1))],
    [leaf ? 0 : 2, () => Object.fromEntries(Array.from({ length: d.int(0, 5) }, () => [d.pick(['partition', 'key', 'items', 'keys', 'members', 'id', 'n', 'x', oddString(d)]), junk(d, depth - 1)]))],
  ])()
}

/** MessagePack nested `depth` levels deep (arrays or maps of one), built as bytes: too deep to pack. */
function deepMsgpack(d: Draw): Buffer {
  const depth = d.pick([100, 1000, 10_000, 100_000])
  const map = d.chance(0.5)
  const head = map ? Buffer.from([0x81, 0xa1, 0x78]) : Buffer.from([0x91]) // {"x": ...} or [ ... ]
  return Buffer.concat([...Array.from({ length: depth }, () => head), Buffer.from([0xc0])])
}

function deepJson(d: Draw): string {
  const depth = d.pick([100, 10_000, 100_000])
  return '['.repeat(depth) + ']'.repeat(d.chance(0.5) ? depth : depth >> 1)
}

/** A key that is certainly not a checked one. */
function scratchKey(d: Draw): Buffer {
  if (d.chance(0.6)) return Buffer.from(`fuzz-scratch-${d.int(0, 999)}`)
  const k = d.bytes(d.int(1, 48))
  return k[0] === CHECKED_PREFIX.charCodeAt(0) ? Buffer.concat([Buffer.from('s'), k]) : k
}

/** A key to read: a checked one now and then. */
function readKey(d: Draw, c: FuzzContext): Uint8Array {
  return d.chance(0.3) ? d.pick(c.checkedKeys) : scratchKey(d)
}

function partitionOf(c: FuzzContext, k: Uint8Array): number {
  return c.ring.partitionOf(k)
}

/** A partition field: right, wrong, or not a partition at all. */
function partitionField(d: Draw, c: FuzzContext, k?: Uint8Array): unknown {
  return d.weighted<() => unknown>([
    [4, () => (k ? partitionOf(c, k) : d.int(0, c.partitions - 1))],
    [1, () => d.int(0, c.partitions - 1)],
    [1, () => d.pick([-1, c.partitions, 65536, 2 ** 32, 2 ** 53 + 2, 1.5, NaN])],
    [1, () => oddNumber(d)],
    [1, () => junk(d, 1)],
  ])()
}

/** A DVV set made up by the sender: made-up actors, huge counters. */
function forgedSet(d: Draw): DvvSet {
  const actors = Array.from({ length: d.int(1, 4) }, (_, i) => `${d.pick(['n1', 'n2', 'n3', 'evil', 'x'])}~${i}${d.int(0, 9)}`)
  const unique = [...new Set(actors)].sort()
  return unique.map((a) => {
    const counter = d.pick([1, 2, d.int(1, 1000), 2 ** 48, 2 ** 49, 2 ** 49 - 1])
    const count = Math.min(counter, d.int(0, 2))
    return [a, counter, Array.from({ length: count }, () => (d.chance(0.2) ? null : d.bytes(d.int(0, 32))))]
  })
}

/** Bytes that are not a DVV set (or are one broken in one way). */
function badSetBytes(d: Draw): Uint8Array {
  return d.pick<() => Uint8Array>([
    () => d.bytes(d.int(0, 40)),
    () => pack(junk(d, 2)),
    () => pack([['a', 0, []]]),
    () => pack([['b', 1, []], ['a', 1, []]]),
    () => pack([['a', 1, [Buffer.from('x'), Buffer.from('y')]]]),
    () => pack([['', 1, []]]),
    () => pack([['a', 2 ** 53 + 2, []]]),
    () => pack([['a', INT64_MAX, []]]),
    () => pack([['a', 1, ['not bytes']]]),
    () => pack([['a'.repeat(300), 1, []]]),
    () => encodeSet(forgedSet(d)).subarray(0, d.int(1, 5)),
  ])()
}

/** A version vector as a coordinate request carries it: sound or broken. */
function vectorField(d: Draw): unknown {
  return d.weighted<() => unknown>([
    [2, () => []],
    [2, () => [['n1~abc', d.int(1, 100)]]],
    [1, () => [['evil', 2 ** 48]]],
    [2, () => [['a', d.pick([0, -1, 2 ** 48 + 1, 1.5, INT64_MAX])]]],
    [1, () => [['', 1]]],
    [1, () => [[1, 1]]],
    [1, () => junk(d, 2)],
  ])()
}

/** Replace some fields of a map with junk, drop some, add some. */
function mutate(d: Draw, body: Record<string, unknown>, times = d.int(1, 3)): Record<string, unknown> {
  const out = { ...body }
  const fields = Object.keys(out)
  for (let i = 0; i < times; i++) {
    const f = d.pick(fields)
    d.weighted<() => void>([
      [5, () => (out[f] = junk(d, 2))],
      [2, () => delete out[f]],
      // defineProperty: a key such as __proto__ must travel as a key, not set the prototype here.
      [1, () => Object.defineProperty(out, oddString(d), { value: junk(d, 2), enumerable: true, writable: true, configurable: true })],
      [1, () => (out[f] = oddNumber(d))],
    ])()
  }
  return out
}

// ---------------------------------------------------------------------------------------------------
// Replica, anti-entropy and reaping bodies.

function readBody(d: Draw, c: FuzzContext): unknown {
  const keys = Array.from({ length: d.int(0, 4) }, () => {
    const k = readKey(d, c)
    return d.chance(0.85) ? [partitionField(d, c, k), k] : junk(d, 1)
  })
  if (d.chance(0.05)) return { keys: Array.from({ length: 1001 }, () => [0, Buffer.from('k')]) }
  return d.chance(0.5) ? { keys } : mutate(d, { keys })
}

function coordinateBody(d: Draw, c: FuzzContext): unknown {
  const k = scratchKey(d)
  const body = { partition: partitionField(d, c, k), key: k, context: vectorField(d), value: d.chance(0.1) ? null : d.bytes(d.int(0, 64)) }
  if (d.chance(0.05)) body.value = Buffer.alloc(c.maxValueBytes + 1)
  return d.chance(0.5) ? body : mutate(d, body)
}

function storeBody(d: Draw, c: FuzzContext): unknown {
  const item = (): unknown[] => {
    const k = scratchKey(d)
    const set = d.chance(0.5) ? encodeSet(forgedSet(d)) : badSetBytes(d)
    const it: unknown[] = [partitionField(d, c, k), k, set]
    if (d.chance(0.2)) it.push(d.pick(['n1', 'n2', 'n3', 'nobody', '', 7]))
    return it
  }
  const items: unknown[] = Array.from({ length: d.int(0, 4) }, item)
  if (!c.forged) {
    // Certainly refused (a set that is not bytes): the batch is validated whole before anything is stored.
    const k = scratchKey(d)
    items.splice(d.int(0, items.length), 0, [partitionOf(c, k), k, d.pick<unknown>(['not a set', 7, null, [], { a: 1 }])])
  }
  return d.chance(0.7) ? { items } : c.forged ? mutate(d, { items }) : { ...mutate(d, { x: 1 }), items }
}

function rangeBody(d: Draw, c: FuzzContext): unknown {
  const body = { partition: partitionField(d, c), after: d.chance(0.5) ? scratchKey(d) : undefined, limit: d.pick<unknown>([1, 10, 1000, 1001, 0, -1, 1.5, '10', INT64_MAX]) }
  return d.chance(0.5) ? body : mutate(d, body)
}

function hintsBody(d: Draw, c: FuzzContext): unknown {
  const body = { partition: partitionField(d, c), key: d.pick<unknown>([scratchKey(d), 'k', 7, null, new Uint8Array(0), new Uint8Array(c.maxKeyBytes + 1)]) }
  return d.chance(0.5) ? body : mutate(d, body)
}

function shapeFields(d: Draw): Record<string, unknown> {
  return d.chance(0.5) ? {} : { fanout: d.pick<unknown>([16, 2, 0, -1, 1e9, '16', 16n]), depth: d.pick<unknown>([3, 0, 100, -1, 3.5, null]) }
}

function rootsBody(d: Draw, c: FuzzContext): unknown {
  const partitions = d.chance(0.1) ? Array.from({ length: 5000 }, (_, i) => i % c.partitions) : Array.from({ length: d.int(0, 6) }, () => partitionField(d, c))
  const body = { partitions, ...shapeFields(d) }
  return d.chance(0.6) ? body : mutate(d, body)
}

function treeBody(d: Draw, c: FuzzContext): unknown {
  const indices = d.chance(0.1) ? Array.from({ length: 5000 }, (_, i) => i) : Array.from({ length: d.int(0, 6) }, () => d.pick<unknown>([0, 1, 15, 255, 4096, -1, 1.5, 2 ** 40, 'x']))
  const body = { partition: partitionField(d, c), level: d.pick<unknown>([0, 1, 2, 3, 4, -1, 99, 1.5, '1', 2n]), indices, ...shapeFields(d) }
  return d.chance(0.6) ? body : mutate(d, body)
}

function keysBody(d: Draw, c: FuzzContext): unknown {
  const leaves = d.chance(0.1) ? Array.from({ length: 2000 }, (_, i) => i) : Array.from({ length: d.int(0, 6) }, () => d.pick<unknown>([0, 1, 255, 4095, 4096, -1, 0.5, 'x', null]))
  const body = { partition: partitionField(d, c), leaves, ...shapeFields(d) }
  return d.chance(0.6) ? body : mutate(d, body)
}

function reapBody(d: Draw, c: FuzzContext): unknown {
  const k = scratchKey(d)
  const items = Array.from({ length: d.int(0, 3) }, () => [d.chance(0.8) ? scratchKey(d) : junk(d, 1), d.chance(0.5) ? encodeSet([['a~1', 1, [null]]]) : badSetBytes(d)])
  const body = { partition: partitionField(d, c, k), phase: d.pick<unknown>(['check', 'reap', 'CHECK', '', 1, null]), items }
  return d.chance(0.6) ? body : mutate(d, body)
}

// ---------------------------------------------------------------------------------------------------
// Gossip.

/** A member entry with one field certainly out of its range or type. */
function badEntry(d: Draw, base: MemberState): Record<string, unknown> {
  const [field, value] = d.pick<[string, unknown]>([
    ['id', d.pick(['', 'bad id', 'x'.repeat(65), 7, INT64_MAX, null])],
    ['url', d.pick(['ftp://x', 'http://x/path', 'http://u:p@x:1', 'not a url', '', 1, `http://${'a'.repeat(300)}`])],
    ['zone', d.pick(['', 'a zone', 'z'.repeat(65), 1])],
    ['weight', d.pick([0, -1, 100_000, NaN, Infinity, 1e-9, INT64_MAX, '1', null])],
    ['status', d.pick(['dancing', 'toString', '__proto__', 1, null])],
    ['incarnation', d.pick(['', 'a b', 'i'.repeat(65), 1])],
    ['version', d.pick([-1, 0.5, 2 ** 49, 2 ** 53 + 2, INT64_MAX, '1', NaN])],
    ['heartbeat', d.pick([-1, 1.5, 2 ** 49, INT64_MAX, '0'])],
    ['since', d.pick([-1, 0.5, 9e15, INT64_MAX, null])],
    ['until', d.pick([-1, 0.5, 9e15, INT64_MAX, false])],
    ['removed', d.pick([0, 'false', null])],
    ['ready', d.pick(['x', '1-0123456789ab', '0123456789ABCDEF', 1, null])],
    ['dropped', d.pick(['x', 1, null])],
  ])
  return { ...base, [field]: value }
}

function inventedEntry(d: Draw): MemberState {
  return {
    id: `fuzz-${d.int(0, 99)}`,
    url: `http://127.0.0.1:${d.int(1, 9)}`,
    zone: 'default',
    weight: d.pick([1, 100, 1000]),
    status: d.pick(['joining', 'normal', 'leaving', 'left'] as const),
    incarnation: 'f00d',
    version: d.int(1, 2 ** 40),
    heartbeat: d.int(0, 100),
    since: d.int(0, 2 ** 40),
    until: 0,
    removed: d.chance(0.2),
    ready: '',
  }
}

function gossipBody(d: Draw, c: FuzzContext): unknown {
  const shape = { partitions: c.partitions, n: c.n }
  return d.weighted<() => unknown>([
    // Certainly refused: at least one bad entry among copies and invented ones (none may be merged).
    [6, () => {
      const members: unknown[] = Array.from({ length: d.int(0, 3) }, () => (d.chance(0.5) ? d.pick(c.members) : inventedEntry(d)))
      members.splice(d.int(0, members.length), 0, badEntry(d, d.chance(0.5) ? d.pick(c.members) : inventedEntry(d)))
      return { ...shape, members }
    }],
    [2, () => {
      const twice = d.pick(c.members)
      return { ...shape, members: [twice, { ...twice, heartbeat: twice.heartbeat + 1 }] } // one member listed twice
    }],
    [2, () => ({ partitions: d.pick<unknown>([c.partitions * 2, 63, 0, -64, INT64_MAX, '64', null]), n: c.n, members: [] })],
    [1, () => ({ partitions: c.partitions, n: d.pick<unknown>([0, 17, c.n + 1, 3n, '3']), members: [] })],
    [1, () => ({ ...shape, members: d.pick<unknown>([{}, 'x', null, 7, [null], [[]], [1]]) })],
    [1, () => mutate(d, { ...shape, members: [] })],
    [0.3, () => ({ ...shape, members: Array.from({ length: 4097 }, (_, i) => ({ ...c.members[0], id: `m${i}` })) })],
    // Accepted and harmless: nothing, or entries older than the node's, with unknown fields (dropped).
    [1, () => ({ ...shape, members: [] })],
    [2, () => ({ ...shape, members: c.members.map((m) => (d.chance(0.5) ? { ...m, [oddString(d) || 'extra']: d.chance(0.5) ? INT64_MAX : junk(d, 2) } : m)) })],
    // Forged (accepted until authentication lands): invented members, rewritten real ones.
    [c.forged ? 3 : 0, () => ({ ...shape, members: [inventedEntry(d)] })],
    [c.forged ? 2 : 0, () => ({ ...shape, members: [{ ...d.pick(c.members), version: 2 ** 40, status: d.pick(['leaving', 'left']), weight: 100 }] })],
  ])()
}

// ---------------------------------------------------------------------------------------------------
// The public API.

function keySegment(d: Draw, c: FuzzContext, write: boolean): string {
  return d.weighted<() => string>([
    [6, () => percentEncode(write ? scratchKey(d) : readKey(d, c))],
    [1, () => ''],
    [1, () => d.pick(['%', '%g1', '%1', 'a%', '%%', '%ZZ', 'a%2', '%0', '%u0041'])],
    [1, () => percentEncode(Buffer.alloc(c.maxKeyBytes + d.int(1, 3000), 0x61))],
    [1, () => `${percentEncode(scratchKey(d))}/${d.pick(['', 'x', '..', '%2F'])}`],
    [1, () => d.pick(['..', '.', '%2e%2e', '~', '-', 'a b'.replace(' ', '%20')])],
  ])()
}

function kvQuery(d: Draw, write: boolean): string {
  if (d.chance(0.5)) return ''
  const params = Array.from({ length: d.int(1, 3) }, () => {
    const name = d.pick(write ? ['w', 'strict', 'timeout', 'returnbody', 'r', 'wait', 'x', ''] : ['r', 'timeout', 'w', 'x', ''])
    const value = d.pick(['', '1', '2', '3', '4', '0', '-1', 'abc', '1.5', '99999999999', 'true', 'false', '%zz', '1e3', '2000', 'TRUE'])
    return `${name}=${value}`
  })
  return `?${params.join('&')}`
}

function contextHeader(d: Draw, c: FuzzContext): Record<string, string> {
  return d.weighted<() => Record<string, string>>([
    [3, () => ({})],
    [1, () => (c.contexts.length > 0 ? { [CONTEXT_HEADER]: d.pick(c.contexts) } : {})],
    [1, () => (c.contexts.length > 0 ? { [CONTEXT_HEADER]: d.pick(c.contexts).slice(0, -d.int(1, 6)) } : {})],
    [1, () => ({ [CONTEXT_HEADER]: d.pick(['', 'x', '!!!', 'AAAA', 'a'.repeat(70_000 >> d.int(0, 8))]) })],
    [1, () => ({ [CONTEXT_HEADER]: d.bytes(d.int(1, 60)).toString('base64url') })],
    // Forged: a well-formed context (the checksum is no secret) with made-up actors and huge counters.
    // It goes only with writes to scratch keys, so it is in the default run.
    [2, () => ({ [CONTEXT_HEADER]: encodeContext({ vector: forgedVector(d), coordinator: d.chance(0.5) ? 'n1' : undefined }) })],
  ])()
}

function forgedVector(d: Draw): VersionVector {
  const v: VersionVector = [['evil~1', d.pick([1, 2 ** 48])]]
  if (d.chance(0.5)) v.push(['n1~abc', d.int(1, 99)])
  return v
}

function kvRequest(d: Draw, c: FuzzContext, target: number): FuzzRequest {
  const method = d.weighted<string>([[4, 'GET'], [1, 'HEAD'], [3, 'PUT'], [2, 'DELETE'], [1, 'POST'], [0.5, 'PATCH'], [0.5, 'OPTIONS']])
  const write = method !== 'GET' && method !== 'HEAD'
  const headers: Record<string, string> = { ...contextHeader(d, c) }
  if (d.chance(0.2)) headers.accept = d.pick(['application/json', 'multipart/mixed', '*/*', 'text/html'])
  let body: Uint8Array | undefined
  let oversized = false
  if (method === 'PUT' || method === 'POST' || (write && d.chance(0.1))) {
    if (d.chance(0.03)) {
      body = Buffer.alloc(c.maxValueBytes + d.int(1, 100))
      oversized = true
    } else if (d.chance(0.01)) {
      body = Buffer.alloc(c.maxBodyBytes + d.int(1, 100))
      oversized = true
    } else body = d.bytes(d.int(0, 256))
    headers['content-type'] = d.pick(['application/octet-stream', 'text/plain', MSGPACK, 'application/json'])
  }
  const base = d.chance(0.9) ? ApiPaths.kv : ApiPaths.explain
  return { kind: base === ApiPaths.kv ? 'kv' : 'explain-bad-method', target, method, path: `${base}${keySegment(d, c, true)}${kvQuery(d, write)}`, headers, body, oversized }
}

function explainRequest(d: Draw, c: FuzzContext, target: number): FuzzRequest {
  const query = d.chance(0.7) ? '' : `?${d.pick(['timeout=100', 'timeout=abc', 'r=2', 'timeout=', 'x=1', 'timeout=99999999999'])}`
  return { kind: 'explain', target, method: d.chance(0.9) ? 'GET' : d.pick(['HEAD', 'PUT', 'DELETE']), path: `${ApiPaths.explain}${keySegment(d, c, false)}${query}`, headers: {} }
}

function batchedRequest(d: Draw, c: FuzzContext): unknown {
  return d.weighted<() => unknown>([
    [4, () => {
      const method = d.pick(['GET', 'PUT', 'DELETE'])
      const path = `${d.chance(0.85) ? ApiPaths.kv : ApiPaths.explain}${keySegment(d, c, method !== 'GET')}${kvQuery(d, method !== 'GET')}`
      return { method, path, headers: d.chance(0.3) ? contextHeader(d, c) : {}, body: method === 'PUT' ? d.bytes(d.int(0, 64)) : null }
    }],
    [1, () => ({ method: d.pick(['POST', 'HEAD', 'get', '', 7]), path: `${ApiPaths.kv}k`, headers: {}, body: null })],
    [1, () => ({ method: 'GET', path: d.pick([ApiPaths.batch, Paths.leave, Paths.remove, '/v1/ring', '', 7, null, '/v1/kv/']), headers: {}, body: null })],
    [1, () => ({ method: 'PUT', path: `${ApiPaths.kv}${percentEncode(scratchKey(d))}`, headers: d.pick<unknown>([{ a: 1 }, [], 'x', null, { [CONTEXT_HEADER]: 7 }]), body: d.pick<unknown>(['str', 7, [], { a: 1 }]) })],
    [1, () => junk(d, 2)],
  ])()
}

function batchBody(d: Draw, c: FuzzContext): unknown {
  const count = d.weighted<number>([[6, d.int(1, 8)], [1, 0], [1, 65], [1, 64]])
  const requests = Array.from({ length: count }, () => batchedRequest(d, c))
  return d.chance(0.8) ? { requests } : mutate(d, { requests })
}

// ---------------------------------------------------------------------------------------------------
// Admin, unknown paths, wrong methods and content types, raw HTTP.

function adminRequest(d: Draw, target: number): FuzzRequest {
  if (d.chance(0.3)) {
    // Only methods other than POST: a POST, whatever its body, makes the node leave.
    return { kind: 'admin-leave', target, method: d.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS']), path: `${Paths.leave}${d.chance(0.3) ? '?force=true' : ''}`, headers: {} }
  }
  const body = d.pick<() => string>([
    () => 'not json',
    () => '',
    () => '{"id":',
    () => JSON.stringify({ id: d.pick<unknown>([3, null, '', [], {}, true]) }),
    () => JSON.stringify({ ids: ['n2'] }),
    () => JSON.stringify([{ id: 'n2' }]),
    () => JSON.stringify('n2'),
    () => JSON.stringify({ id: `no-such-member-${d.int(0, 99)}` }), // well-formed, but no member has it: 404
    () => JSON.stringify({ id: 'x'.repeat(d.int(65, 5000)) }),
    () => deepJson(d),
    () => d.bytes(d.int(1, 100)).toString('latin1'),
  ])()
  const method = d.chance(0.85) ? 'POST' : d.pick(['GET', 'PUT', 'DELETE'])
  return { kind: 'admin-remove', target, method, path: Paths.remove, headers: { 'content-type': d.pick(['application/json', 'text/plain', MSGPACK]) }, body: Buffer.from(body, 'latin1') }
}

const KNOWN_PATHS = [
  Paths.health, Paths.ring, Paths.metrics, Paths.stats, Paths.cluster, Paths.hints, Paths.read, Paths.coordinate, Paths.store, Paths.range, Paths.gossip,
  AntiEntropyPaths.roots, AntiEntropyPaths.tree, AntiEntropyPaths.keys, ReapPaths.reap, ApiPaths.batch, Paths.remove,
]

function unknownPath(d: Draw, target: number): FuzzRequest {
  const path = d.pick<() => string>([
    () => '/',
    () => '//',
    () => '/v1',
    () => '/v1/',
    () => '/v1/kv',
    () => '/v1/explain',
    () => '/v2/health',
    () => '/v1/health/',
    () => '/V1/HEALTH',
    () => '/v1/replica',
    () => '/v1/ae/',
    () => '/v1/admin',
    () => '/v1/admin/leave/',
    () => '/v1/admin/leaves',
    () => '/../../etc/passwd',
    () => `/${'a'.repeat(d.int(100, 4000))}`,
    () => `${d.pick(KNOWN_PATHS)}${d.pick(['/', '/x', '%00', '..', ';x'])}`,
    () => `/${encodeURIComponent(oddString(d))}`,
    () => '/__proto__',
    () => '/constructor',
    () => '/v1/kv%2Fkey',
    () => `${d.pick(KNOWN_PATHS)}?${'a=1&'.repeat(d.int(1, 500))}`,
  ])()
  const method = d.pick(['GET', 'POST', 'PUT', 'DELETE', 'HEAD', 'PATCH', 'OPTIONS'])
  return { kind: 'unknown-path', target, method, path, headers: method === 'POST' || method === 'PUT' ? { 'content-type': MSGPACK } : {}, body: method === 'POST' || method === 'PUT' ? pack(junk(d, 1)) : undefined }
}

function readOnlyRequest(d: Draw, target: number): FuzzRequest {
  const path = d.pick([Paths.health, Paths.ring, Paths.metrics, Paths.stats, Paths.cluster])
  const method = d.weighted<string>([[6, 'GET'], [2, 'HEAD'], [1, 'POST'], [1, 'PUT'], [1, 'DELETE'], [0.5, 'OPTIONS']])
  // ?wait= with anything but the node's epoch answers at once (the epoch itself would hold for 20 s).
  const query = d.chance(0.5) ? '' : `?${d.pick(['wait=', 'wait=x', 'wait=1-abc', `wait=${'9'.repeat(30)}-aaaaaaaaaaaa`, 'wait=%zz', 'x=1', 'wait=1&wait=2'])}`
  return { kind: 'read-only', target, method, path: `${path}${query}`, headers: {}, body: method === 'POST' ? d.bytes(d.int(0, 100)) : undefined }
}

function rawRequest(d: Draw, c: FuzzContext, target: number): FuzzRequest {
  const host = 'host: 127.0.0.1\r\n'
  const [text, cut] = d.pick<() => [string, boolean]>([
    () => ['GARBAGE\r\n\r\n', false],
    () => ['GET\r\n\r\n', false],
    () => [`GET /v1/health HTTP/9.9\r\n${host}\r\n`, false],
    () => [`GET /v1/health HTTP/1.1\r\n${host}bad header\r\nconnection: close\r\n\r\n`, false],
    () => [`GET /v1/health HTTP/1.1\r\n${host}x-big: ${'a'.repeat(20_000)}\r\nconnection: close\r\n\r\n`, false],
    () => [`GET /v1/kv/${'\u00e9'}\u00ff HTTP/1.1\r\n${host}connection: close\r\n\r\n`, false],
    () => [`GET /v1/kv/a b HTTP/1.1\r\n${host}connection: close\r\n\r\n`, false],
    () => [`POST ${Paths.gossip} HTTP/1.1\r\n${host}content-type: ${MSGPACK}\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nzz\r\nabc\r\n0\r\n\r\n`, false],
    () => [`POST ${Paths.read} HTTP/1.1\r\n${host}content-length: 5\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n0\r\n\r\n`, false],
    () => [`POST ${Paths.read} HTTP/1.1\r\n${host}content-length: abc\r\nconnection: close\r\n\r\n`, false],
    () => [`POST ${Paths.read} HTTP/1.1\r\n${host}content-length: ${c.maxBodyBytes + 1}\r\ncontent-type: ${MSGPACK}\r\nconnection: close\r\n\r\n`, false],
    () => [`PUT /v1/kv/${percentEncode(scratchKey(d))} HTTP/1.1\r\n${host}content-length: 100\r\n\r\nshort`, true],
    () => [`POST ${Paths.store} HTTP/1.1\r\n${host}content-type: ${MSGPACK}\r\ncontent-length: 1000\r\n\r\n\u0081`, true],
    () => [`GET /v1/ring HTTP/1.1\r\n${host}`, true],
    () => [`GET /v1/health HTTP/1.1\r\n${host}content-length: 1\r\ncontent-length: 2\r\nconnection: close\r\n\r\nab`, false],
  ])()
  return { kind: cut ? 'raw-cut' : 'raw', target, method: 'RAW', path: text.split('\r\n')[0].slice(0, 80), headers: {}, raw: Buffer.from(text, 'latin1'), cut }
}

/** The MessagePack endpoints, each with its body generator. */
const MSGPACK_ENDPOINTS: [string, (d: Draw, c: FuzzContext) => unknown][] = [
  [Paths.read, readBody],
  [Paths.coordinate, coordinateBody],
  [Paths.store, storeBody],
  [Paths.range, rangeBody],
  [Paths.hints, hintsBody],
  [Paths.gossip, gossipBody],
  [AntiEntropyPaths.roots, rootsBody],
  [AntiEntropyPaths.tree, treeBody],
  [AntiEntropyPaths.keys, keysBody],
  [ReapPaths.reap, reapBody],
  [ApiPaths.batch, batchBody],
]

/** A request to a MessagePack endpoint: structured, junk, truncated, deep, oversized, or in another framing. */
function msgpackRequest(d: Draw, c: FuzzContext, target: number): FuzzRequest {
  const [path, gen] = d.pick(MSGPACK_ENDPOINTS)
  const headers: Record<string, string> = { 'content-type': MSGPACK }
  if (d.chance(0.3)) headers[EPOCH_HEADER] = d.pick([c.epoch, `1-${c.epoch.split('-')[1]}`, `999-${'a'.repeat(12)}`, 'x', '-', `${c.epoch}x`])
  let kind = `msgpack ${path}`
  let body: Uint8Array
  let method = 'POST'
  let oversized = false
  // Store and gossip bodies are only ever sent as generated (see the top of this file): a mutation of
  // one could be a well-formed forgery.
  const guarded = !c.forged && (path === Paths.store || path === Paths.gossip)
  const framing = d.weighted<string>([[10, 'structured'], [2, 'junk'], [2, 'truncated'], [1, 'deep'], [1, 'random'], [1, 'json'], [1, 'type'], [1, 'method'], [0.2, 'oversized']])
  switch (framing) {
    case 'structured':
      body = pack(gen(d, c))
      break
    case 'junk':
      body = pack(junk(d, 3))
      break
    case 'truncated': {
      const full = pack(gen(d, c))
      body = full.subarray(0, d.int(0, Math.max(0, full.length - 1)))
      break
    }
    case 'deep':
      body = deepMsgpack(d)
      break
    case 'random':
      body = d.bytes(d.int(0, 300))
      break
    case 'json':
      headers['content-type'] = 'application/json'
      body = Buffer.from(d.chance(0.5) ? deepJson(d) : JSON.stringify(guarded ? { x: 1 } : gen(d, c), (_k, v) => (typeof v === 'bigint' ? Number(v) : v)) ?? 'null')
      // JSON is refused by content type, whatever it says; a MessagePack content type with a JSON body must not parse as anything.
      if (d.chance(0.3)) headers['content-type'] = MSGPACK
      break
    case 'type':
      body = guarded ? pack({ x: 1 }) : pack(gen(d, c))
      headers['content-type'] = d.pick(['', 'text/plain', 'application/msgpack', 'application/x-msgpack-x', 'APPLICATION/X-MSGPACK; charset=utf-8', 'multipart/form-data; boundary=x'])
      if (headers['content-type'] === '') delete headers['content-type']
      if (headers['content-type']?.startsWith('APPLICATION') && guarded) body = pack({ x: 1 })
      break
    case 'method':
      method = d.pick(['GET', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'])
      body = method === 'GET' || method === 'HEAD' ? Buffer.alloc(0) : pack(junk(d, 1))
      break
    default:
      body = Buffer.alloc(c.maxBodyBytes + d.int(1, 1000))
      oversized = true
  }
  kind += ` ${framing}`
  return { kind, target, method, path, headers, body: method === 'GET' || method === 'HEAD' ? undefined : body, oversized }
}

/** Request `index` of the run with `seed`: the same record every time. */
export function generate(seed: number, index: number, c: FuzzContext): FuzzRequest {
  const d = new Draw(seed, index)
  const target = d.int(0, c.nodes - 1)
  return d.weighted<() => FuzzRequest>([
    [40, () => msgpackRequest(d, c, target)],
    [20, () => kvRequest(d, c, target)],
    [5, () => explainRequest(d, c, target)],
    [4, () => adminRequest(d, target)],
    [5, () => unknownPath(d, target)],
    [6, () => readOnlyRequest(d, target)],
    [3, () => rawRequest(d, c, target)],
  ])()
}
