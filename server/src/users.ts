// The users file (`--users-file`): who may use a node, with which roles. It holds no token, only a
// salted scrypt hash of each: `zerohop user add` prints a new token once. A node rereads the file when
// it changes (checked at most once a second), so users added or removed take effect without a
// restart; verified tokens are cached (bounded; kept across a reload for users whose entry did not
// change), so scrypt runs once per token, not per request, and at most a few verifications run at a
// time. A token that does not parse, names no user or fails a 32-bit check is refused without scrypt.
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { open, readFile, rename, stat } from 'node:fs/promises'
import { LRUCache } from 'lru-cache'
import { ErrorCodes, HttpError, InvalidArgumentError } from '@zerohop/core'

export const ROLES = ['read', 'write', 'admin'] as const
export type Role = (typeof ROLES)[number]

export interface UserRecord {
  name: string
  roles: Role[]
  /** base64 salt and scrypt hash of the token's secret part. */
  salt: string
  hash: string
  /** scrypt cost: N, r, p. */
  scrypt: { N: number; r: number; p: number }
  /**
   * base64 of the first 4 bytes of SHA-256(salt, secret): a token that does not match is refused
   * without scrypt, so guessing tokens of a known user costs a node a hash, not a scrypt. (32 bits of
   * a 256-bit random secret tell an attacker nothing usable.)
   */
  check?: string
  created: string
}

export interface UsersFile {
  version: 1
  users: UserRecord[]
}

export interface User {
  name: string
  roles: ReadonlySet<Role>
}

const NAME = /^[A-Za-z0-9._-]{1,64}$/
const SECRET_CHARS = 43 // 32 random bytes, base64url
const COST = { N: 16384, r: 8, p: 1 }
const KEY_BYTES = 32

function scrypt(secret: string, salt: Buffer, cost: { N: number; r: number; p: number }): Promise<Buffer> {
  const options: ScryptOptions = { ...cost, maxmem: 256 * cost.N * cost.r }
  return new Promise((resolve, reject) => scryptCb(secret, salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key))))
}

/** A token's parts: `zh_NAME_SECRET`; undefined for a string that is not one. */
export function parseToken(token: string): { name: string; secret: string } | undefined {
  if (token.length > 3 + 64 + 1 + SECRET_CHARS || !token.startsWith('zh_')) return undefined
  const cut = token.length - SECRET_CHARS - 1
  if (cut < 4 || token[cut] !== '_') return undefined
  const name = token.slice(3, cut)
  const secret = token.slice(cut + 1)
  return NAME.test(name) && /^[A-Za-z0-9_-]+$/.test(secret) ? { name, secret } : undefined
}

export function parseRoles(s: string): Role[] {
  const roles = s.split(',').map((r) => r.trim()).filter(Boolean)
  const bad = roles.filter((r) => !(ROLES as readonly string[]).includes(r))
  if (roles.length === 0 || bad.length > 0) throw new InvalidArgumentError(`--roles takes a comma-separated list of ${ROLES.join(', ')}${bad.length ? `; ${bad.join(', ')} is not one` : ''}`)
  return [...new Set(roles)] as Role[]
}

/** Why a parsed users file is not one, or undefined. */
function checkFile(x: unknown): string | undefined {
  const f = x as Partial<UsersFile> | null
  if (f === null || typeof f !== 'object' || f.version !== 1 || !Array.isArray(f.users)) return 'it must be {"version":1,"users":[...]} (made by zerohop user add)'
  for (const [i, u] of f.users.entries()) {
    const r = u as Partial<UserRecord> | null
    if (r === null || typeof r !== 'object' || typeof r.name !== 'string' || !NAME.test(r.name)) return `users[${i}].name must be 1-64 characters of A-Z a-z 0-9 . _ -`
    if (!Array.isArray(r.roles) || !r.roles.every((role) => (ROLES as readonly string[]).includes(role))) return `users[${i}].roles must be a list of ${ROLES.join(', ')}`
    if (typeof r.salt !== 'string' || typeof r.hash !== 'string') return `users[${i}] needs salt and hash`
    const c = r.scrypt
    if (!c || ![c.N, c.r, c.p].every((n) => Number.isSafeInteger(n) && n > 0) || c.N > 2 ** 20 || c.r > 32 || c.p > 16) return `users[${i}].scrypt must be {N, r, p} within scrypt's sane range`
    if (r.check !== undefined && typeof r.check !== 'string') return `users[${i}].check must be a string`
  }
  if (new Set(f.users.map((u) => u.name)).size !== f.users.length) return 'a user name is listed twice'
  return undefined
}

export async function readUsersFile(path: string): Promise<UsersFile> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOENT') return { version: 1, users: [] }
    throw new InvalidArgumentError(`cannot read the users file ${path}: ${(err as Error).message}`)
  }
  let x: unknown
  try {
    x = JSON.parse(text)
  } catch {
    throw new InvalidArgumentError(`the users file ${path} is not JSON`)
  }
  const why = checkFile(x)
  if (why) throw new InvalidArgumentError(`the users file ${path} is damaged: ${why}`)
  return x as UsersFile
}

/** Write the file whole (a temp file renamed over it), readable by its owner only. */
async function writeUsersFile(path: string, file: UsersFile): Promise<void> {
  const tmp = `${path}.${process.pid}.tmp`
  const fh = await open(tmp, 'w', 0o600)
  try {
    await fh.writeFile(`${JSON.stringify(file, null, 2)}\n`)
    await fh.sync()
  } finally {
    await fh.close()
  }
  await rename(tmp, path)
}

function quickCheck(salt: Buffer, secret: string): string {
  return createHash('sha256').update(salt).update(secret).digest().subarray(0, 4).toString('base64')
}

/** Add a user; returns its token, which exists nowhere else (only its hash is stored). */
export async function addUser(path: string, name: string, roles: Role[]): Promise<string> {
  if (typeof name !== 'string' || !NAME.test(name)) throw new InvalidArgumentError(`user name ${JSON.stringify(name)} must be 1-64 characters of A-Z a-z 0-9 . _ -`)
  const file = await readUsersFile(path)
  if (file.users.some((u) => u.name === name)) throw new InvalidArgumentError(`user ${name} exists in ${path}; remove it first (zerohop user remove ${name} --users-file ${path}) to issue a new token`)
  const secret = randomBytes(32).toString('base64url')
  const salt = randomBytes(16)
  const hash = await scrypt(secret, salt, COST)
  file.users.push({ name, roles, salt: salt.toString('base64'), hash: hash.toString('base64'), scrypt: COST, check: quickCheck(salt, secret), created: new Date().toISOString() })
  await writeUsersFile(path, file)
  return `zh_${name}_${secret}`
}

export async function removeUser(path: string, name: string): Promise<boolean> {
  const file = await readUsersFile(path)
  const users = file.users.filter((u) => u.name !== name)
  if (users.length === file.users.length) return false
  await writeUsersFile(path, { ...file, users })
  return true
}

export interface UsersOptions {
  path: string
  now: () => number
  /** Most scrypt verifications running at once (each uses a thread of the pool and 16 MiB). */
  concurrency?: number
  /** Most verifications waiting for one of those; more are refused with 503 ZH_OVERLOADED. */
  queue?: number
}

/** The node's view of the users file: verifies tokens. */
export class Users {
  readonly #o: Required<UsersOptions>
  #file: Map<string, UserRecord> = new Map()
  #mtime = -1
  #checked = -Infinity
  #reloading?: Promise<void>
  /**
   * Token → the user it proved (in memory only, like the tokens requests carry). Only tokens that
   * verified: anything else a client sends is refused by a check that costs no scrypt, so it can
   * neither push verified tokens out nor queue behind them.
   */
  #verified = new LRUCache<string, { user: User; record: UserRecord }>({ max: 10_000 })
  /** Tokens that passed the quick check but failed scrypt (about one in 4 billion guesses). */
  #failed = new LRUCache<string, true>({ max: 1000 })
  #running = 0
  #waiting: (() => void)[] = []

  constructor(o: UsersOptions) {
    this.#o = { concurrency: 2, queue: 256, ...o }
  }

  /** Read the file (at start: a damaged file stops the node). */
  async load(): Promise<void> {
    const st = await stat(this.#o.path).catch(() => undefined)
    const file = await readUsersFile(this.#o.path)
    this.#file = new Map(file.users.map((u) => [u.name, u]))
    this.#mtime = st?.mtimeMs ?? 0
    this.#checked = this.#o.now()
    // Keep the tokens of users whose entry did not change; drop those removed or changed.
    for (const [token, { record }] of this.#verified.entries()) {
      const now = this.#file.get(record.name)
      if (!now || now.hash !== record.hash || now.salt !== record.salt || now.roles.join() !== record.roles.join()) this.#verified.delete(token)
    }
    this.#failed.clear()
  }

  get size(): number {
    return this.#file.size
  }

  /** Reread the file if it changed; looks at most once a second (undefined: nothing to wait for). */
  #fresh(): Promise<void> | undefined {
    const now = this.#o.now()
    if (now - this.#checked < 1000) return this.#reloading
    this.#checked = now
    this.#reloading ??= (async () => {
      try {
        const st = await stat(this.#o.path).catch(() => undefined)
        if ((st?.mtimeMs ?? 0) !== this.#mtime) await this.load()
      } catch {
        // A damaged file mid-edit: keep the users of the last good one.
      } finally {
        this.#reloading = undefined
      }
    })()
    return this.#reloading
  }

  /** The user a bearer token proves, or undefined. */
  async verify(token: string): Promise<User | undefined> {
    const reloading = this.#fresh()
    if (reloading) await reloading
    const cached = this.#verified.get(token)
    if (cached !== undefined) return cached.user
    const parsed = parseToken(token)
    const record = parsed && this.#file.get(parsed.name)
    if (!parsed || !record || this.#failed.has(token)) return undefined
    const salt = Buffer.from(record.salt, 'base64')
    if (record.check !== undefined && quickCheck(salt, parsed.secret) !== record.check) return undefined
    const hash = await this.#limited(() => scrypt(parsed.secret, salt, record.scrypt))
    const expected = Buffer.from(record.hash, 'base64')
    const ok = hash.length === expected.length && timingSafeEqual(hash, expected)
    // The file may have been reloaded meanwhile: the answer is the current record's.
    if (this.#file.get(record.name) !== record) return this.verify(token)
    if (!ok) {
      this.#failed.set(token, true)
      return undefined
    }
    const user: User = { name: record.name, roles: new Set(record.roles) }
    this.#verified.set(token, { user, record })
    return user
  }

  async #limited<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#running >= this.#o.concurrency) {
      if (this.#waiting.length >= this.#o.queue) throw new HttpError(503, ErrorCodes.OVERLOADED, 'too many token verifications are waiting; retry shortly')
      await new Promise<void>((resolve) => this.#waiting.push(resolve))
    }
    this.#running++
    try {
      return await fn()
    } finally {
      this.#running--
      this.#waiting.shift()?.()
    }
  }
}
