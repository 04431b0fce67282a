// The README's "Without the SDK" curl session, run as written against a real 3-node cluster: each
// `# → ` line under a command is what that command must print (… stands for anything, such as a
// context or base64 siblings in whatever order the cluster keeps them). And its "Using the SDK"
// snippet, saved as a .mts file and run with tsx the way the README says.
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Cluster } from './harness/cluster.js'

const README = readFileSync(fileURLToPath(new URL('../README.md', import.meta.url)), 'utf8')
const MARK = '<!-- the test suite runs this block (test/readme.test.ts) -->'
const CLI_MARK = '<!-- the test suite runs this CLI block (test/readme.test.ts) -->'
const SDK_MARK = '<!-- the test suite runs this snippet as a .mts file (test/readme.test.ts) -->'
const ROOT = fileURLToPath(new URL('..', import.meta.url))

/** The shell block after the marker (`nth` 1: the one after that). */
function shellBlock(mark: string, nth = 0): string {
  const at = README.indexOf(mark)
  expect(at, `the README has ${mark}`).toBeGreaterThan(0)
  const blocks = [...README.slice(at).matchAll(/```sh\n([\s\S]*?)```/g)]
  expect(blocks.length).toBeGreaterThan(nth)
  return blocks[nth][1]
}

const curlBlock = () => shellBlock(MARK)

/** Run a block with bash -e; each line it prints must match its `# → ` line, in order. */
async function printsWhatItSays(block: string, env: NodeJS.ProcessEnv): Promise<void> {
  const expected = block.split('\n').filter((l) => l.startsWith('# → ')).map((l) => l.slice('# → '.length))
  const out = await run('bash', ['-e', '-c', block], { env: { ...process.env, ...env }, cwd: ROOT })
  const lines = out.split('\n').filter((l, i, all) => i < all.length - 1 || l !== '')
  expect(lines.length, out).toBe(expected.length)
  lines.forEach((line, i) => expect(line, `line ${i + 1} of the output`).toMatch(pattern(expected[i])))
}

/** The TypeScript block after the SDK marker. */
function sdkSnippet(): string {
  const at = README.indexOf(SDK_MARK)
  expect(at, 'the README marks its SDK snippet').toBeGreaterThan(0)
  const m = /^```ts\n([\s\S]*?)```/.exec(README.slice(at + SDK_MARK.length).trimStart())
  expect(m, 'a ```ts block right after the marker').not.toBeNull()
  return m![1]
}

function run(file: string, args: string[], options: { env?: NodeJS.ProcessEnv; cwd?: string }): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    execFile(file, args, { ...options, timeout: 30_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${err.message}\n${stderr}`))
      else resolve(stdout)
    })
  })
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
    const out = await run('bash', ['-e', '-c', block], { env: { ...process.env, ZH: cluster.nodes[0].url } })
    const lines = out.split('\n').filter((l, i, all) => i < all.length - 1 || l !== '')
    expect(lines.length, out).toBe(expected.length)
    lines.forEach((line, i) => expect(line, `line ${i + 1} of the output`).toMatch(pattern(expected[i])))
  })
})

describe('README: The command line', () => {
  // The blocks talk to npm start's cluster, the default --node; ZEROHOP_NODE points them at this
  // test's cluster instead. The commands are run as written, with the installed npx zerohop.
  it('the data commands print what the README says they print', async () => {
    const block = shellBlock(CLI_MARK)
    expect(block).toContain('npx zerohop get')
    await printsWhatItSays(block, { ZEROHOP_NODE: cluster.nodes[0].url })
  })

  it('explain, status and ring run as written (leave and remove are run by test/integration/cli.test.ts)', async () => {
    const lines = shellBlock(CLI_MARK, 1).split('\n').filter((l) => /^npx zerohop (explain|status|ring)\b/.test(l))
    expect(lines).toHaveLength(3)
    for (const line of lines) await run('bash', ['-e', '-c', line], { env: { ...process.env, ZEROHOP_NODE: cluster.nodes[0].url }, cwd: ROOT })
  })
})

describe('README: Using the SDK', () => {
  it('the snippet runs as written, saved as .mts and run with tsx', async () => {
    // The snippet talks to npm start's cluster; this test's cluster listens elsewhere, so its first
    // node's URL stands in for the snippet's seed. Nothing else is changed.
    const seed = 'http://127.0.0.1:7001'
    const snippet = sdkSnippet()
    expect(snippet).toContain(`'${seed}'`)
    // Inside the repo, so `@zerohop/client` resolves through the workspace as it does for a reader.
    const dir = await mkdtemp(path.join(ROOT, 'test', '.tmp-readme-'))
    try {
      const file = path.join(dir, 'hello.mts')
      await writeFile(file, snippet.replaceAll(seed, cluster.nodes[0].url))
      await run(process.execPath, ['--import', 'tsx', file], { cwd: ROOT })
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  })
})
