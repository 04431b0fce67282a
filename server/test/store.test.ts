// Runs the Store conformance suite against both backends: MemoryStore, and LevelStore on a fresh
// LevelDB directory per test (removed after each test, pass or fail, with a sweep in afterAll).
import { access, mkdtemp, rm } from 'node:fs/promises'
import os from 'node:os'
import path from 'node:path'
import { afterAll, expect } from 'vitest'
import { LevelStore } from '../src/storage/level-store.js'
import { MemoryStore } from '../src/storage/store.js'
import { storeConformance } from './store-conformance.js'

storeConformance('MemoryStore', async () => {
  const store = new MemoryStore()
  return { store, cleanup: () => store.close() }
})

const dirs = new Set<string>()

storeConformance(
  'LevelStore',
  async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), 'zerohop-store-test-'))
    dirs.add(dir)
    const store = new LevelStore(path.join(dir, 'db'))
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
  },
  { persistent: true },
)

afterAll(async () => {
  // Whatever an aborted test left behind.
  const left = [...dirs]
  await Promise.all(left.map((d) => rm(d, { recursive: true, force: true })))
  for (const d of left) await expect(access(d)).rejects.toThrow()
  expect(left, 'every LevelDB directory was removed by its own test').toEqual([])
})
