// The benchmark's CLIENT process: plain node (no tsx), so '@zerohop/client' and its '@zerohop/core'
// resolve through node_modules to the BUILT packages (packages/*/dist). Under tsx, the root
// tsconfig's `paths` would silently map both to packages/*/src. run.ts drives this process over IPC
// and stays idle while a phase runs; all timing and CPU sampling happens here.
//
// Commands (from run.ts): init, phase, close. Every loop is bounded in count and in time.
import { randomBytes } from 'node:crypto'
import diagnostics from 'node:diagnostics_channel'
import { Pool } from 'undici'
import { connect } from '@zerohop/client'
import { latencyPhase, serve, setClkTck, sleep, throughputPhase } from './measure.mjs'

const MSGPACK = 'application/x-msgpack'
const VALUE_BYTES = 1024
// About the size of the SDK's read request ({keys:[[partition, key]]} in MessagePack).
const FLOOR_REQUEST = randomBytes(24)

/** @type {Pool[]} */
let floorPools = []
/** The SDK three ways: zero-hop, load-balancer mode through HAProxy, load-balancer mode straight to one node. */
/** @type {Record<'zeroHop' | 'lb' | 'node' | 'frames' | 'secure', import('@zerohop/client').Client<Uint8Array | string> | undefined>} */
const clients = { zeroHop: undefined, lb: undefined, node: undefined, frames: undefined, secure: undefined }
/** The bare single hop: one Pool to one floor server. @type {Pool | undefined} */
let hopPool
/** @type {string[]} */
let keys = []
let value = randomBytes(VALUE_BYTES)
let putSeq = 0
let floorBackground = 0
let serverPids = { floor: [], hop: [], cluster: [], haproxy: undefined }
// ---------------------------------------------------------------------------------------------
// Operations

/** One FLOOR op: POST to all three servers, resolve when two have answered; the third completes in the background. */
function floorOp() {
  return new Promise((resolve, reject) => {
    let ok = 0
    let failed = 0
    for (const pool of floorPools) {
      floorBackground++
      pool
        .request({ path: '/v1/replica/read', method: 'POST', body: FLOOR_REQUEST, headers: { 'content-type': MSGPACK } })
        .then(async (res) => {
          // Same body handling as the SDK's transport.
          const bytes = Buffer.from(await res.body.arrayBuffer())
          if (res.statusCode !== 200 || bytes.length !== VALUE_BYTES) throw new Error(`floor: HTTP ${res.statusCode}, ${bytes.length} bytes`)
        })
        .then(
          () => {
            floorBackground--
            if (++ok === 2) resolve()
          },
          (err) => {
            floorBackground--
            if (++failed === 2) reject(err)
          },
        )
    }
  })
}

/** One HOP op: GET of a ~1 KB body from one floor server over one Pool. */
async function hopOp() {
  const res = await hopPool.request({ path: '/', method: 'GET' })
  const bytes = Buffer.from(await res.body.arrayBuffer())
  if (res.statusCode !== 200 || bytes.length !== VALUE_BYTES) throw new Error(`hop: HTTP ${res.statusCode}, ${bytes.length} bytes`)
}

let getSeq = 0
/** A get of a pre-written key with one of the clients (the same keys for every routing). */
const getWith = (which) => async () => {
  const key = keys[getSeq++ % keys.length]
  const r = await clients[which].get(key)
  if (!r.found || r.siblings.length !== 1 || r.value.byteLength !== VALUE_BYTES) {
    throw new Error(`get ${key}: found=${r.found} siblings=${r.siblings.length}`)
  }
}

/** A put with one of the clients. A fresh key per put: a put without context on an existing key would create siblings. */
const putWith = (which) => async () => {
  const r = await clients[which].put(`p-${putSeq++}`, value)
  if (r.siblings.length !== 1) throw new Error(`put: ${r.siblings.length} siblings`)
}

const OPS = {
  floor: floorOp,
  get: getWith('zeroHop'),
  put: putWith('zeroHop'),
  hop: hopOp,
  'lb-get': getWith('lb'),
  'lb-put': putWith('lb'),
  'node-get': getWith('node'),
  'node-put': putWith('node'),
  'frames-get': getWith('frames'),
  'frames-put': putWith('frames'),
  'sec-get': getWith('secure'),
  'sec-put': putWith('secure'),
}

// Sanity counters: a clean get benchmark does no read repair and sees no replica errors. Subscribing
// costs nothing on the normal path (the SDK publishes only when something happens).
const events = { readRepairs: 0, replicaErrors: 0 }
diagnostics.subscribe('zerohop:client:read-repair', () => events.readRepairs++)
diagnostics.subscribe('zerohop:client:replica-error', () => events.replicaErrors++)

// ---------------------------------------------------------------------------------------------
// Phases

/** Wait until the background requests of floor ops have finished (bounded). */
async function drain(mode) {
  if (mode === 'hop') return // nothing runs in the background
  if (mode === 'floor') {
    const deadline = Date.now() + 2000
    while (floorBackground > 0 && Date.now() < deadline) await sleep(1)
  } else {
    // SDK (in the client or, in load-balancer mode, in the node): the read-repair wait
    // (≤ readRepairWaitMs = 100 ms) and W=2 puts' third store.
    await sleep(150)
  }
}

// ---------------------------------------------------------------------------------------------
// Commands

/**
 * `lbUrl`: HAProxy's frontend (absent when HAProxy is not available); `nodeUrl`: the one node the
 * straight load-balancer client sends everything to; `hopUrl`, `hopConnections`: the bare hop's server and Pool.
 */
async function init({ floorUrls, seeds, lbUrl, nodeUrl, hopUrl, hopConnections, securedSeeds, token, pids, keyCount, connections, clkTck: tck }) {
  setClkTck(tck)
  serverPids = pids
  const pool = (url, n) => new Pool(url, { connections: n, pipelining: 1, keepAliveTimeout: 30_000, connect: { timeout: 1000 } })
  floorPools = floorUrls.map((url) => pool(url, connections))
  hopPool = pool(hopUrl, hopConnections)
  // HTTP/1.1 explicitly: the SDK's default is the framed protocol (the frames modes).
  clients.zeroHop = await connect({ seeds, protocol: 'http', connections, connectTimeoutMs: 15_000 })
  if (lbUrl) clients.lb = await connect({ seeds: [lbUrl], routing: 'load-balancer', connections, connectTimeoutMs: 15_000 })
  clients.node = await connect({ seeds: [nodeUrl], routing: 'load-balancer', connections, connectTimeoutMs: 15_000 })
  clients.frames = await connect({ seeds, protocol: 'frames', connectTimeoutMs: 15_000 })
  if (securedSeeds) clients.secure = await connect({ seeds: securedSeeds, token, protocol: 'http', connections, connectTimeoutMs: 15_000 })
  // Pre-write the keys the gets read: fresh keys, so one value each (no siblings); on both clusters.
  keys = Array.from({ length: keyCount }, (_, i) => `k-${String(i).padStart(6, '0')}`)
  for (const client of [clients.zeroHop, clients.secure]) {
    if (!client) continue
    let next = 0
    const deadline = Date.now() + 60_000
    await Promise.all(
      Array.from({ length: 32 }, async () => {
        while (next < keys.length) {
          if (Date.now() > deadline) throw new Error('pre-write took over 60 s')
          await client.put(keys[next++], value)
        }
      }),
    )
  }
  await sleep(300) // third replicas of the last writes
  // Check the resolution this benchmark promises: the built SDK, not its sources.
  return { clientModule: import.meta.resolve('@zerohop/client'), keys: keys.length }
}

async function phase({ mode, kind, ops, maxMs, concurrency }) {
  const op = OPS[mode]
  if (!op) throw new Error(`unknown mode ${mode}`)
  const pids = mode === 'floor' ? serverPids.floor : mode === 'hop' ? serverPids.hop : mode.startsWith('sec-') ? serverPids.secured : serverPids.cluster
  const lbPid = mode.startsWith('lb-') ? serverPids.haproxy : undefined
  const before = { ...events }
  let r
  if (kind === 'latency') r = await latencyPhase(op, ops, maxMs, pids, lbPid)
  else r = await throughputPhase(op, concurrency, ops, maxMs, pids, lbPid)
  await drain(mode)
  r.readRepairs = events.readRepairs - before.readRepairs
  r.replicaErrors = events.replicaErrors - before.replicaErrors
  return r
}

async function close() {
  const cs = Object.values(clients)
  for (const k of Object.keys(clients)) clients[k] = undefined
  const pools = hopPool ? [...floorPools, hopPool] : floorPools
  floorPools = []
  hopPool = undefined
  await Promise.race([
    Promise.allSettled([...cs.map((c) => c?.close()), ...pools.map((p) => p.close())]),
    sleep(3000),
  ])
  await Promise.allSettled(pools.map((p) => p.destroy()))
  return {}
}

serve({ init, phase, close })
