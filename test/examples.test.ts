// Every example runs against a real cluster and must exit 0 (examples check their own outcomes).
import { spawn } from 'node:child_process'
import { readdirSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from './harness/cluster.js'

const dir = fileURLToPath(new URL('../examples/', import.meta.url))
const examples = readdirSync(dir).filter((f) => f.endsWith('.ts'))

let cluster: Cluster
beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 })
})
afterAll(async () => {
  await cluster?.close()
})

describe('examples', () => {
  it('has examples', () => expect(examples.length).toBeGreaterThan(0))

  for (const file of examples) {
    it(`${file} runs and exits 0`, async () => {
      const child = spawn(process.execPath, ['--import', 'tsx', `${dir}${file}`], {
        env: { ...process.env, ZEROHOP_SEEDS: cluster.seeds.join(',') },
        stdio: ['ignore', 'pipe', 'pipe'],
      })
      let out = ''
      child.stdout.on('data', (d) => (out += d))
      child.stderr.on('data', (d) => (out += d))
      const timer = setTimeout(() => child.kill('SIGKILL'), 30_000)
      const code = await new Promise<number | null>((resolve) => child.on('exit', (c) => resolve(c)))
      clearTimeout(timer)
      expect(code, out).toBe(0)
      expect(out).toMatch(/merged/)
    })
  }
})
