// The CLIENT process of `npm run bench:peers`: one system's client at a time (the built Zerohop SDK,
// ioredis for Redis, etcd3 for etcd), driven by peers.ts over IPC. The same keys, the same 1 KB
// values and the same concurrency for every system; all timing and CPU sampling happens here
// (measure.mjs).
//
// Commands: init, phase, close. Every loop is bounded in count and in time.
import { randomBytes } from 'node:crypto'
import { connect } from '@zerohop/client'
import { Etcd3 } from 'etcd3'
import Redis from 'ioredis'
import { latencyPhase, serve, setClkTck, sleep, throughputPhase } from './measure.mjs'

const VALUE_BYTES = 1024
const value = randomBytes(VALUE_BYTES)
/** @type {string[]} */
let keys = []
let pids = []
let getSeq = 0
let putSeq = 0
let keyPrefix = ''
/** The system's get and put, and how to close its client. */
let system

/** A value read back must be the 1 KB written: a benchmark that reads nothing measures nothing. */
function check(what, bytes) {
  if (!bytes || bytes.byteLength !== VALUE_BYTES) throw new Error(`${what}: read ${bytes ? bytes.byteLength : 'no'} bytes, not ${VALUE_BYTES}`)
}

/** Redis through ioredis: GET, and SET (followed by WAIT 1 with `wait`). */
async function redis(port, wait) {
  const r = new Redis({ port, host: '127.0.0.1', lazyConnect: true, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  await r.connect()
  return {
    async get(key) {
      check(`GET ${key}`, await r.getBuffer(key))
    },
    async put(key) {
      await r.set(key, value)
      if (!wait) return
      const acked = await r.wait(1, 1000)
      if (acked < 1) throw new Error(`WAIT 1: ${acked} replicas acknowledged within 1 s`)
    },
    close: () => r.quit(),
  }
}

const systems = {
  /** Zero-hop SDK, N=3, R=2, W=2, on a secured cluster (a token; signed requests, sets and contexts). */
  async zerohop({ seeds, token, connections }) {
    const db = await connect({ seeds, token, connections, connectTimeoutMs: 15_000 })
    return {
      async get(key) {
        const r = await db.get(key)
        if (r.siblings.length !== 1) throw new Error(`get ${key}: ${r.siblings.length} siblings`)
        check(`get ${key}`, r.value)
      },
      // A fresh key per put: a put without context on an existing key would make a sibling.
      async put(key) {
        const r = await db.put(key, value)
        if (r.siblings.length !== 1) throw new Error(`put ${key}: ${r.siblings.length} siblings`)
      },
      close: () => db.close(),
    }
  },
  /** One Redis node: GET and SET. */
  redis: ({ port }) => redis(port, false),
  /** Redis with two replicas: SET, then WAIT 1 (the write is on 2 of 3 copies), as W=2 of N=3. */
  'redis-wait': ({ port }) => redis(port, true),
  /** A 3-member etcd (Raft: a majority has the write, fsynced): linearizable gets and puts. */
  async etcd({ hosts }) {
    const client = new Etcd3({ hosts })
    return {
      async get(key) {
        check(`get ${key}`, await client.get(key).buffer())
      },
      async put(key) {
        await client.put(key).value(value)
      },
      close: async () => client.close(),
    }
  },
}

/** `prefix`: this client's keys (several client processes write apart). */
async function init({ name, args, keyCount, pids: serverPids, clkTck, prefix = '' }) {
  setClkTck(clkTck)
  pids = serverPids
  system = await systems[name](args)
  keyPrefix = prefix
  keys = Array.from({ length: keyCount }, (_, i) => `${prefix}k-${String(i).padStart(6, '0')}`)
  // Pre-write the keys the gets read, 32 at a time. A write that fails on a loaded machine may still
  // have landed: the key is read, and written again only if it is not there (up to 5 times; this is
  // set-up, not a measurement).
  let next = 0
  const deadline = Date.now() + 120_000
  await Promise.all(Array.from({ length: 32 }, async () => {
    while (next < keys.length) {
      if (Date.now() > deadline) throw new Error('pre-write took over 120 s')
      const key = keys[next++]
      for (let attempt = 1; ; attempt++) {
        try {
          await system.put(key)
          break
        } catch (err) {
          if (attempt === 5) throw err
          const there = await system.get(key).then(() => true, () => false)
          if (there) break
        }
      }
    }
  }))
  await sleep(300) // the last writes' third replicas
  return { keys: keys.length }
}

const ops = {
  get: () => system.get(keys[getSeq++ % keys.length]),
  put: () => system.put(`${keyPrefix}p-${putSeq++}`),
}

async function phase({ op, kind, ops: count, maxMs, concurrency }) {
  const r = kind === 'latency' ? await latencyPhase(ops[op], count, maxMs, pids) : await throughputPhase(ops[op], concurrency, count, maxMs, pids)
  // What a put leaves in the background (a third replica's store, a read's repair) finishes here.
  await sleep(150)
  return r
}

async function close() {
  const s = system
  system = undefined
  await Promise.race([s?.close(), sleep(3000)])
  return {}
}

serve({ init, phase, close })
