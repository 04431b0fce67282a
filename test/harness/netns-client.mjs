// An SDK client driven over stdin/stdout, for tests that need a client inside a network namespace
// (one side of a partition): `ip netns exec NS node netns-client.mjs`. Each stdin line is a JSON
// command {id, op, ...}; each answer is one stdout line {id, result} or {id, error}. Runs the built
// SDK (npm run build), the same code an application gets.
//
//   {"id":1,"op":"connect","options":{"seeds":["http://10.64.1.1:7001"],"encoding":"json"}}
//   {"id":2,"op":"get","key":"k","options":{"r":1}}
//   {"id":3,"op":"put","key":"k","value":{"items":[]},"options":{"context":"...","w":2}}
//   {"id":4,"op":"delete","key":"k","options":{"w":2}}
//   {"id":5,"op":"explain","key":"k"}
//   {"id":6,"op":"view"}      which nodes the SDK sends to now, and its node-up/down events so far
//   {"id":7,"op":"close"}
import { createInterface } from 'node:readline'
import { connect } from '@zerohop/client'

let db
let text = false
const events = []

/** Values cross the pipe as JSON: with encoding 'bytes', strings in and UTF-8 strings out. */
const out = (v) => (text && v instanceof Uint8Array ? Buffer.from(v).toString('utf8') : v)

const ops = {
  async connect({ options }) {
    text = (options.encoding ?? 'bytes') === 'bytes'
    db = await connect(options)
    const t0 = Date.now()
    for (const kind of ['node-up', 'node-down']) db.on(kind, (e) => events.push({ at: Date.now() - t0, event: kind, id: e.id, reason: e.reason }))
    return { members: [...db.view.members.keys()] }
  },
  async get({ key, options }) {
    const r = await db.get(key, options)
    return { found: r.found, value: out(r.value), siblings: r.siblings.map(out), context: r.context }
  },
  async put({ key, value, options }) {
    const r = await db.put(key, value, options)
    return { context: r.context, conflict: r.conflict, siblings: r.siblings.map(out) }
  },
  async delete({ key, options }) {
    return db.delete(key, options)
  },
  async explain({ key, options }) {
    const r = await db.explain(key, options)
    return {
      replicas: r.replicas.map((x) => ({
        id: x.id,
        found: x.found,
        siblings: x.siblings.map(out),
        digest: x.digest,
        ...(x.error ? { error: { cause: x.error.cause, code: x.error.code } } : {}),
      })),
    }
  },
  async view() {
    return { up: Object.fromEntries([...db.view.members.keys()].map((id) => [id, db.isUp(id)])), events }
  },
  async close() {
    await db?.close()
    db = undefined
    return {}
  },
}

function errorOf(err) {
  return {
    name: err?.name ?? 'Error',
    code: err?.code,
    message: err?.message ?? String(err),
    replicas: Array.isArray(err?.replicas) ? err.replicas.map((r) => ({ id: r.id, cause: r.cause, code: r.code })) : undefined,
  }
}

const lines = createInterface({ input: process.stdin })
for await (const line of lines) {
  if (!line.trim()) continue
  let msg
  try {
    msg = JSON.parse(line)
  } catch {
    continue
  }
  const op = ops[msg.op]
  // Commands run concurrently, as an application's would; answers carry their id.
  void (op ? op(msg) : Promise.reject(new Error(`unknown op ${msg.op}`))).then(
    (result) => process.stdout.write(`${JSON.stringify({ id: msg.id, result })}\n`),
    (err) => process.stdout.write(`${JSON.stringify({ id: msg.id, error: errorOf(err) })}\n`),
  )
  if (msg.op === 'close') break
}
// stdin closed or close asked: let the answers drain, then exit.
await db?.close()
