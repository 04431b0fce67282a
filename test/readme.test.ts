// The README's "Without the SDK" curl session, run as written against a real 3-node cluster: each
// `# → ` line under a command is what that command must print (… stands for anything, such as a
// context or base64 siblings in whatever order the cluster keeps them).
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from './harness/cluster.js'

const README = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8')
const MARK = '<!-- the test suite runs this block (test/readme.test.ts) -->'

/** The shell block after the marker. */
function curlBlock(): string {
  const at = README.indexOf(MARK)
  expect(at, 'the README marks its curl block').toBeGreaterThan(0)
  const m = /```sh\n([\s\S]*?)```/.exec(README.slice(at))
  expect(m).not.toBeNull()
  return m![1]
}

function pattern(expected: string): RegExp {
  return new RegExp(`^${expected.split('…').map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`)
}

let cluster: Cluster
beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 3 })
})
afterAll(async () => {
  await cluster?.close()
})

describe('README: Without the SDK', () => {
  it('the curl session prints what the README says it prints', async () => {
    const block = curlBlock()
    const expected = block.split('\n').filter((l) => l.startsWith('# → ')).map((l) => l.slice('# → '.length))
    expect(expected.length).toBeGreaterThanOrEqual(5)
    expect(block).toContain('x-zerohop-context')
    const out = await new Promise<string>((resolve, reject) => {
      execFile('bash', ['-e', '-c', block], { env: { ...process.env, ZH: cluster.nodes[0].url }, timeout: 30_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`${err.message}\n${stderr}`))
        else resolve(stdout)
      })
    })
    const lines = out.split('\n').filter((l, i, all) => i < all.length - 1 || l !== '')
    expect(lines.length, out).toBe(expected.length)
    lines.forEach((line, i) => expect(line, `line ${i + 1} of the output`).toMatch(pattern(expected[i])))
  })
})
