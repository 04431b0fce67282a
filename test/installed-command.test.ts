// The `zerohop` command as npm installs it (node_modules/.bin/zerohop), not `node server/dist/cli.js`:
// npm links a bin only if its file exists at install time, before `prepare` builds server/dist, so the
// link points at server/bin/zerohop.mjs, which runs the built command line.
import { execFile } from 'node:child_process'
import { realpathSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { expect, it } from 'vitest'

const BIN = fileURLToPath(new URL('../node_modules/.bin/zerohop', import.meta.url))

function run(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(BIN, args, { timeout: 20_000 }, (err, stdout, stderr) => resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }))
  })
}

it('npm install links the zerohop command to server/bin/zerohop.mjs, and it runs the built command line', async () => {
  expect(realpathSync(BIN)).toBe(fileURLToPath(new URL('../server/bin/zerohop.mjs', import.meta.url)))
  const help = await run('help')
  expect(help.code, help.stderr).toBe(0)
  expect(help.stdout).toMatch(/^zerohop — a Dynamo-style key-value store/)
  expect(help.stdout).toContain('zerohop user add')
  const wrong = await run('no-such-command')
  expect(wrong.code).toBe(2)
  expect(wrong.stderr).toContain('unknown command "no-such-command"')
})
