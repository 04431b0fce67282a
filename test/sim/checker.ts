// What must hold once a simulated run has healed and gone quiet, read straight off every replica's
// disk (no client, no repair):
// - all replicas of a key hold the same set (byte for byte);
// - every acknowledged element is in its set, and no element is there that no add sent;
// - every acknowledged register write is present, or causally superseded: a present write, or any
//   delete that was sent, saw it (directly or through writes it saw);
// - no present value is superseded by an acknowledged write or delete, or by another present value
//   (nothing deleted comes back, siblings are truly concurrent);
// - nothing read or present was never written, and nothing of a write never sent;
// - a key holds few siblings.
import { decodeSet, fromUtf8, siblings, utf8, type ClusterView } from '@zerohop/core'
import { dataKey } from '@zerohop/server'
import type { SimCluster } from './cluster.js'
import type { Op } from './workload.js'

/** Most siblings a key may hold at the end (each client writes one operation at a time). */
export const MAX_SIBLINGS = 8

export interface KeyState {
  key: string
  /** Stored bytes per replica id (undefined: nothing stored). */
  replicas: Map<string, Uint8Array | undefined>
  /** The live values (decoded JSON) of the first replica's set. */
  values: unknown[]
}

const hex = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')

/** What each current replica of `key` holds on its disk, as `view` places the key. */
export function readKey(sim: SimCluster, view: ClusterView, key: string): KeyState {
  const k = utf8(key)
  const partition = view.current.partitionOf(k)
  const stored = hex(dataKey(partition, k))
  const replicas = new Map<string, Uint8Array | undefined>()
  for (const m of view.replicas(partition).current) replicas.set(m.id, sim.nodes.get(m.id)?.disk.cache.get(stored)?.[1])
  const first = [...replicas.values()][0]
  const values = first ? siblings(decodeSet(first)).map((v) => JSON.parse(fromUtf8(v)) as unknown) : []
  return { key, replicas, values }
}

/** Why the replicas of a key differ, or undefined when they hold the same bytes. */
export function disagreement(state: KeyState): string | undefined {
  const all = [...state.replicas.entries()]
  const [, first] = all[0]
  const same = all.every(([, b]) => (b === undefined) === (first === undefined) && (b === undefined || Buffer.compare(b, first!) === 0))
  if (same) return undefined
  return `replicas of ${state.key} differ: ${all.map(([id, b]) => `${id} ${b ? hex(b).slice(-12) : 'none'}`).join(', ')}`
}

export function check(ops: readonly Op[], states: readonly KeyState[]): string[] {
  const out: string[] = []
  const byId = new Map(ops.map((o) => [o.id, o]))
  for (const state of states) {
    const why = disagreement(state)
    if (why) out.push(why)
    if (state.values.length > MAX_SIBLINGS) out.push(`${state.key} holds ${state.values.length} siblings (at most ${MAX_SIBLINGS})`)
  }
  const keyOps = (key: string) => ops.filter((o) => o.key === key)
  for (const state of states) {
    const mine = keyOps(state.key)
    if (state.key.startsWith('set-')) out.push(...checkSet(state, mine))
    else out.push(...checkRegister(state, mine, byId))
  }
  out.push(...checkReads(ops, byId))
  return out
}

function checkSet(state: KeyState, ops: Op[]): string[] {
  const out: string[] = []
  const present = new Set<string>()
  for (const v of state.values) {
    if (!Array.isArray(v)) out.push(`${state.key} holds ${JSON.stringify(v)}, not a set`)
    else for (const e of v) present.add(String(e))
  }
  const adds = new Map(ops.filter((o) => o.kind === 'add').map((o) => [o.element!, o]))
  for (const [e, op] of adds) {
    if (op.outcome === 'ok' && !present.has(e)) out.push(`acknowledged element ${e} is missing from ${state.key}`)
    if (op.outcome === 'failed' && present.has(e)) out.push(`element ${e} of an add never sent is in ${state.key}`)
  }
  for (const e of present) if (!adds.has(e)) out.push(`${state.key} holds element ${e}, which no add of it wrote`)
  return out
}

/** The writes `op` superseded: what its read saw, and what those saw in turn. */
function closure(op: Op, byId: Map<string, Op>, memo: Map<string, Set<string>>): Set<string> {
  const known = memo.get(op.id)
  if (known) return known
  const out = new Set<string>()
  memo.set(op.id, out)
  for (const id of op.saw) {
    out.add(id)
    const w = byId.get(id)
    if (w) for (const x of closure(w, byId, memo)) out.add(x)
  }
  return out
}

function checkRegister(state: KeyState, ops: Op[], byId: Map<string, Op>): string[] {
  const out: string[] = []
  const memo = new Map<string, Set<string>>()
  const present = new Set<string>()
  for (const v of state.values) {
    const id = String(v)
    present.add(id)
    const w = byId.get(id)
    if (!w || w.kind !== 'write' || w.key !== state.key) out.push(`${state.key} holds ${JSON.stringify(v)}, which no write of it wrote`)
    else if (w.outcome === 'failed') out.push(`${state.key} holds ${id}, a write never sent`)
  }
  const writes = ops.filter((o) => o.kind === 'write' || o.kind === 'delete')
  // Nothing superseded by an acknowledged write or delete, or by a present value, is present.
  for (const q of writes) {
    if (q.outcome !== 'ok' && !present.has(q.id)) continue
    for (const x of closure(q, byId, memo)) {
      if (present.has(x)) out.push(`${state.key} holds ${x}, which ${q.kind} ${q.id} (${present.has(q.id) ? 'present' : 'acknowledged'}) superseded`)
    }
  }
  // Every acknowledged write is present, or superseded by a present write or by a delete that was sent.
  const covered = new Set<string>()
  for (const q of writes) {
    if (q.outcome === 'failed') continue
    if (present.has(q.id) || q.kind === 'delete') for (const x of closure(q, byId, memo)) covered.add(x)
  }
  for (const w of ops) {
    if (w.kind !== 'write' || w.outcome !== 'ok') continue
    if (!present.has(w.id) && !covered.has(w.id)) out.push(`acknowledged write ${w.id} of ${state.key} is lost: not present, and nothing present or deleted saw it`)
  }
  return out
}

/** Every value a read returned was written (sent, and begun before the read ended). */
function checkReads(ops: readonly Op[], byId: Map<string, Op>): string[] {
  const out: string[] = []
  const elements = new Map(ops.filter((o) => o.kind === 'add').map((o) => [o.element!, o]))
  for (const r of ops) {
    if (r.read === undefined) continue
    for (const v of r.read) {
      const written = r.key.startsWith('set-')
        ? Array.isArray(v) && v.every((e) => { const a = elements.get(String(e)); return a && a.key === r.key && a.outcome !== 'failed' && a.start <= r.end! })
        : (() => { const w = byId.get(String(v)); return w && w.kind === 'write' && w.key === r.key && w.outcome !== 'failed' && w.start <= r.end! })()
      if (!written) out.push(`read ${r.id} of ${r.key} returned ${JSON.stringify(v)}, which was never written`)
    }
  }
  return out
}
