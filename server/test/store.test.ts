// Runs the Store conformance suite against both backends: MemoryStore, and LevelStore (also with no
// time for synchronous reads, so that getMany reads on the thread pool) on a fresh
// LevelDB directory per test (removed after each test, pass or fail, with a sweep in afterAll).
import { randomBytes } from 'node:crypto'
import { access, mkdtemp, readdir, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, describe, expect, it } from 'vitest'
import { LevelStore, WRITE_BUFFER_BYTES, type LevelStoreOptions } from '../src/storage/level-store.js'
import { MemoryStore } from '../src/storage/store.js'
import { storeConformance } from './store-conformance.js'

storeConformance('MemoryStore', async () => {
  const store = new MemoryStore()
  return { store, cleanup: () => store.close() }
})

const dirs = new Set<string>()

function levelStore(options: LevelStoreOptions = {}) {
  return async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    const store = new LevelStore(path.join(dir, 'db'), options)
    return {
      store,
      async cleanup() {
        try {
          await store.close()
        } finally {
          await rm(dir, { recursive: true, force: true })
          dirs.delete(dir)
        }
      },
    }
  }
}

storeConformance('LevelStore', levelStore(), { persistent: true })
// With no time for synchronous reads, a getMany of more than 7 keys reads the rest on the thread pool.
storeConformance('LevelStore past its synchronous read budget', levelStore({ syncReadBudgetMs: 0 }), { persistent: true })

describe('LevelStore write buffer', () => {
  /** Table files (.ldb) LevelDB wrote in `db` after `bytes` of 1 KB puts and a close. */
  async function tablesAfter(bytes: number, options: { writeBufferBytes?: number }): Promise<number> {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    try {
      const store = new LevelStore(path.join(dir, 'db'), options)
      await store.open()
      const value = randomBytes(1024)
      for (let i = 0; i * 1024 < bytes; i += 64) {
        await Promise.all(Array.from({ length: 64 }, (_, j) => store.put(Buffer.from(`k${i + j}`), value)))
      }
      await store.close()
      return (await readdir(path.join(dir, 'db'))).filter((f) => f.endsWith('.ldb')).length
    } finally {
      await rm(dir, { recursive: true, force: true })
      dirs.delete(dir)
    }
  }

  it('holds 8 MB of writes in memory by default, where a 1 MiB buffer has flushed them to table files', async () => {
    // LevelDB's own default (4 MiB) would have flushed too: the default reaches LevelDB.
    expect(await tablesAfter(8 * 1024 * 1024, {})).toBe(0)
    expect(await tablesAfter(8 * 1024 * 1024, { writeBufferBytes: 1024 * 1024 })).toBeGreaterThan(0)
  })

  it('refuses a write buffer that is not a whole number of bytes of at least 64 KiB', async () => {
    // In a directory of the test's own: a store that were made would open a LevelDB there.
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    for (const bad of [0, 1024, 65535, 100000.5, Number.NaN, '1048576']) {
      expect(() => new LevelStore(path.join(dir, 'db'), { writeBufferBytes: bad as number })).toThrow(/writeBufferBytes must be a whole number of bytes, at least 65536/)
    }
    await rm(dir, { recursive: true, force: true })
    dirs.delete(dir)
    expect(WRITE_BUFFER_BYTES).toBe(32 * 1024 * 1024)
  })

  it('getMany reads cached keys synchronously within its budget, and the rest on the thread pool past it', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    /** Whether a getMany of 100 written keys resolved before a setImmediate queued beside it. */
    const beforeTurnEnds = async (options: LevelStoreOptions, name: string): Promise<boolean> => {
      const store = new LevelStore(path.join(dir, name), options)
      await store.open()
      try {
        const keys = Array.from({ length: 100 }, (_, i) => Buffer.from(`k${i}`))
        await Promise.all(keys.map((k) => store.put(k, k)))
        const order: string[] = []
        const turnEnd = new Promise<void>((r) => setImmediate(() => r(void order.push('turn'))))
        const read = store.getMany(keys).then((rows) => {
          order.push('read')
          expect(rows.map((r) => Buffer.from(r!).toString())).toEqual(keys.map(String))
        })
        await Promise.all([turnEnd, read])
        return order[0] === 'read'
      } finally {
        await store.close()
      }
    }
    // Synchronous reads settle in the same turn; a thread-pool round trip cannot.
    expect(await beforeTurnEnds({ syncReadBudgetMs: 1000 }, 'sync')).toBe(true)
    expect(await beforeTurnEnds({ syncReadBudgetMs: 0 }, 'pool')).toBe(false)
    await rm(dir, { recursive: true, force: true })
    dirs.delete(dir)
  })

  it('refuses a synchronous read budget that is not a number of milliseconds from 0 to 1000', async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    for (const bad of [-1, 1001, Number.NaN, '5']) {
      expect(() => new LevelStore(path.join(dir, 'db'), { syncReadBudgetMs: bad as number })).toThrow(/syncReadBudgetMs must be a number of milliseconds from 0 to 1000/)
    }
    await rm(dir, { recursive: true, force: true })
    dirs.delete(dir)
  })
})
