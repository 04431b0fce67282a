// The users file and the authorization policy, as units: tokens are issued once and only their hash
// is kept, verify only whole and unchanged, are cached (scrypt runs once per token) and follow the
// file's changes; every endpoint needs what the policy table says, and each principal gets exactly
// what its roles allow.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { ClusterKeys, ErrorCodes, SIGNATURE_HEADER, SIGNATURE_WINDOW_MS } from '@zerohop/core'
import { Auth, NonceWindow, needOf, type Principal } from '../src/auth.js'
import { proofMaxAge } from '../src/parts.js'
import { Users, addUser, parseRoles, parseToken, readUsersFile, removeUser } from '../src/users.js'
import type { NodeRequest } from '../src/routes/request.js'

let dir: string
beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-auth-'))
})
afterAll(async () => {
  await rm(dir, { recursive: true, force: true })
})

function req(method: string, p: string, headers: Record<string, string> = {}, body = Buffer.alloc(0)): NodeRequest {
  return { method, path: p, query: new URLSearchParams(), headers, body }
}

describe('users file', () => {
  it('issues a token once, keeps only a scrypt hash, owner-readable; names and roles are checked', async () => {
    const file = path.join(dir, 'a.json')
    const token = await addUser(file, 'app', ['read', 'write'])
    expect(parseToken(token)).toMatchObject({ name: 'app' })
    const text = await readFile(file, 'utf8')
    expect(text).not.toContain(parseToken(token)!.secret)
    expect((await stat(file)).mode & 0o777).toBe(0o600)
    const [user] = (await readUsersFile(file)).users
    expect(user).toMatchObject({ name: 'app', roles: ['read', 'write'], scrypt: { N: 16384, r: 8, p: 1 } })
    await expect(addUser(file, 'app', ['read'])).rejects.toThrow(/exists/)
    await expect(addUser(file, 'bad name', ['read'])).rejects.toThrow(/must be 1-64/)
    expect(() => parseRoles('read,root')).toThrow(/root is not one/)
    expect(parseRoles('write, read,write')).toEqual(['write', 'read'])
  })

  it('refuses guessed tokens without scrypt: 2000 guesses of a known user\'s token, malformed and unknown ones, cost less than a few scrypts', async () => {
    const file = path.join(dir, 'guess.json')
    const real = await addUser(file, 'admin', ['admin'])
    const users = new Users({ path: file, now: () => 0 })
    await users.load()
    const started = performance.now()
    expect(await users.verify(real)).toMatchObject({ name: 'admin' })
    const one = performance.now() - started
    const guessing = performance.now()
    for (let i = 0; i < 2000; i++) {
      const guess = i % 3 === 0 ? `zh_admin_${String(i).padStart(43, 'x')}` : i % 3 === 1 ? `zh_nobody_${String(i).padStart(43, 'y')}` : 'x'.repeat(15_000 + i)
      expect(await users.verify(guess)).toBeUndefined()
    }
    // scrypt costs tens of milliseconds: 667 of them would take many seconds.
    expect(performance.now() - guessing).toBeLessThan(Math.max(2000, one * 20))
    // The real token is still cached, however many guesses came in between.
    const again = performance.now()
    expect(await users.verify(real)).toMatchObject({ name: 'admin' })
    expect(performance.now() - again).toBeLessThan(one)
  })

  it('verifies only the whole token; a cached answer skips scrypt; removal and damaged files are handled', async () => {
    const file = path.join(dir, 'b.json')
    const token = await addUser(file, 'svc', ['read'])
    let now = 0
    const users = new Users({ path: file, now: () => now })
    await users.load()
    const started = performance.now()
    expect(await users.verify(token)).toMatchObject({ name: 'svc' })
    const first = performance.now() - started
    const again = performance.now()
    for (let i = 0; i < 100; i++) await users.verify(token)
    // 100 cached verifications cost less than one scrypt.
    expect(performance.now() - again).toBeLessThan(first)
    expect(await users.verify(token.slice(0, -1) + (token.endsWith('A') ? 'B' : 'A'))).toBeUndefined()
    expect(await users.verify(`zh_nobody_${'A'.repeat(43)}`)).toBeUndefined()
    expect(await users.verify('not a token')).toBeUndefined()
    // Removed from the file: refused once the node looks again (at most once a second).
    await removeUser(file, 'svc')
    now += 1500
    expect(await users.verify(token)).toBeUndefined()
    // A damaged file mid-edit keeps the last good users.
    const kept = await addUser(file, 'kept', ['read'])
    now += 1500
    expect(await users.verify(kept)).toMatchObject({ name: 'kept' })
    await writeFile(file, '{"version":1,"users":[{')
    now += 1500
    expect(await users.verify(kept)).toMatchObject({ name: 'kept' })
    await expect(new Users({ path: file, now: () => 0 }).load()).rejects.toThrow(/not JSON/)
  })
})

describe('policy', () => {
  it('names what each endpoint needs', () => {
    expect(needOf('GET', '/v1/health')).toBe('open')
    for (const p of ['/v1/gossip', '/v1/replica/range', '/v1/ae/roots', '/v1/ae/tree', '/v1/ae/keys', '/v1/replica/reap']) expect(needOf('POST', p)).toBe('node')
    expect(needOf('POST', '/v1/admin/leave')).toBe('admin')
    expect(needOf('POST', '/v1/admin/remove')).toBe('admin')
    expect(needOf('POST', '/v1/replica/read')).toBe('read')
    expect(needOf('POST', '/v1/replica/coordinate')).toBe('write')
    expect(needOf('POST', '/v1/replica/store')).toBe('read')
    expect(needOf('GET', '/v1/kv/x')).toBe('read')
    expect(needOf('HEAD', '/v1/kv/x')).toBe('read')
    expect(needOf('PUT', '/v1/kv/x')).toBe('write')
    expect(needOf('DELETE', '/v1/kv/x')).toBe('write')
    expect(needOf('GET', '/v1/explain/x')).toBe('read')
    expect(needOf('GET', '/v1/ring')).toBe('user')
    expect(needOf('GET', '/v1/metrics')).toBe('user')
    // A key's hints hold its values; the figures of the node and of the cluster are for any user.
    expect(needOf('POST', '/v1/replica/hints')).toBe('read')
    expect(needOf('GET', '/v1/stats')).toBe('user')
    expect(needOf('GET', '/v1/cluster')).toBe('user')
  })

  it('admits each principal to what its roles allow, refusing with 401 or 403 and counting why', async () => {
    const file = path.join(dir, 'c.json')
    const reader = await addUser(file, 'r', ['read'])
    const admin = await addUser(file, 'a', ['read', 'write', 'admin'])
    const users = new Users({ path: file, now: () => 0 })
    await users.load()
    const keys = new ClusterKeys(Buffer.from('secret secret secret secret!'))
    const auth = new Auth({ keys, users, now: () => 1_000_000, self: 'http://127.0.0.1:7001' })
    const refusal = async (r: NodeRequest) => auth.admit(r).then(() => undefined, (e: { status: number; code: string }) => `${e.status} ${e.code}`)
    const bearer = (t: string) => ({ authorization: `Bearer ${t}` })
    expect(await refusal(req('GET', '/v1/health'))).toBeUndefined()
    expect(await refusal(req('GET', '/v1/kv/x'))).toBe(`401 ${ErrorCodes.UNAUTHENTICATED}`)
    expect(await refusal(req('GET', '/v1/kv/x', bearer(reader)))).toBeUndefined()
    expect(await refusal(req('PUT', '/v1/kv/x', bearer(reader)))).toBe(`403 ${ErrorCodes.FORBIDDEN}`)
    expect(await refusal(req('POST', '/v1/admin/leave', bearer(reader)))).toBe(`403 ${ErrorCodes.FORBIDDEN}`)
    expect(await refusal(req('POST', '/v1/admin/leave', bearer(admin)))).toBeUndefined()
    expect(await refusal(req('POST', '/v1/gossip', bearer(admin)))).toBe(`401 ${ErrorCodes.UNAUTHENTICATED}`)
    const body = Buffer.from('x')
    const signed = req('POST', '/v1/gossip', { [SIGNATURE_HEADER]: keys.signRequest('http://127.0.0.1:7001', 'POST', '/v1/gossip', body, 1_000_000) }, body)
    expect(((await auth.admit(signed)) as Principal).kind).toBe('node')
    expect(await refusal(signed)).toBe(`401 ${ErrorCodes.UNAUTHENTICATED}`)
    expect(((await auth.admit({ ...req('POST', '/v1/gossip'), local: true })) as Principal).kind).toBe('node')
    expect(Object.fromEntries(auth.refused)).toEqual({ 'no-token': 1, forbidden: 2, unsigned: 1, replay: 1 })
  })

  it('a relayed set\'s proof lives 30 s, or less when tombstones are reaped sooner', () => {
    expect(proofMaxAge({ tombstoneGraceMs: 24 * 3600_000, hintTtlMs: 3 * 3600_000 })).toBe(30_000)
    expect(proofMaxAge({ tombstoneGraceMs: 12_000, hintTtlMs: 500 })).toBe(5750)
  })

  it('without a secret or users file, checks nothing', async () => {
    const auth = new Auth({ now: () => 0, self: 'http://127.0.0.1:7001' })
    expect(auth.enabled).toBe(false)
    expect((await auth.admit(req('POST', '/v1/gossip'))).kind).toBe('anonymous')
  })
})

describe('the nonces of signed requests', () => {
  it('are remembered for at least two signature windows, forgotten after four, and a full generation turns early', () => {
    let t = 1_000_000
    const w = new NonceWindow(() => t, 3)
    expect(w.seen('a')).toBe(false)
    expect(w.seen('a')).toBe(true)
    // One turn later (two windows), 'a' is in the older generation: still seen.
    t += 2 * SIGNATURE_WINDOW_MS
    expect(w.seen('b')).toBe(false)
    expect(w.seen('a')).toBe(true)
    // Two turns later, 'a' is gone (a request signed that long ago is refused by its timestamp).
    t += 2 * SIGNATURE_WINDOW_MS
    expect(w.seen('c')).toBe(false)
    expect(w.seen('a')).toBe(false)
    expect(w.seen('b')).toBe(true)
    // Three nonces fill a generation: the next one turns it, and the oldest generation goes.
    expect(w.seen('d')).toBe(false)
    expect(w.seen('e')).toBe(false)
    expect(w.seen('b')).toBe(false)
  })
})
