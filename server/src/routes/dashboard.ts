// GET /dashboard: the node's live dashboard, one page of plain files (server/dashboard/) that the node
// serves itself, read from disk once and kept in memory. The files hold no data, so they are open to
// anyone (see auth.ts); the page polls GET /v1/cluster of the node it came from, which stays protected.
import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { ErrorCodes } from '@zerohop/core'
import { allow, bad, type NodeReply, type Route } from './request.js'

export const DASHBOARD_PATH = '/dashboard'

/** Whether a path is the dashboard's (its page or one of its files). */
export const isDashboardPath = (p: string) => p === DASHBOARD_PATH || p.startsWith(`${DASHBOARD_PATH}/`)

const PAGE = { file: 'index.html', type: 'text/html; charset=utf-8' }
/** Every file the dashboard has: nothing else under /dashboard is read from disk. */
const FILES: Record<string, { file: string; type: string }> = {
  [DASHBOARD_PATH]: PAGE,
  [`${DASHBOARD_PATH}/`]: PAGE,
  [`${DASHBOARD_PATH}/dashboard.js`]: { file: 'dashboard.js', type: 'text/javascript; charset=utf-8' },
  [`${DASHBOARD_PATH}/dashboard.css`]: { file: 'dashboard.css', type: 'text/css; charset=utf-8' },
}

/** Only the node's own files, no inline script or style, no framing: the page runs nothing else. */
const CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

const HEADERS = {
  // Revalidated on every load: a node upgraded in place serves its new page at once.
  'cache-control': 'no-cache',
  'content-security-policy': CSP,
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}

/**
 * server/dashboard/, beside the module that runs: the build bundles this file into server/dist/*.js
 * (../dashboard), the tests run it from server/src/routes/ (../../dashboard).
 */
function dashboardDir(): string {
  // __dirname in the CommonJS build, import.meta.url in the ES module build and the sources.
  const here = typeof __dirname === 'string' ? __dirname : path.dirname(fileURLToPath(import.meta.url))
  const candidates = [path.join(here, '..', 'dashboard'), path.join(here, '..', '..', 'dashboard')]
  const found = candidates.find((d) => existsSync(path.join(d, PAGE.file)))
  if (!found) throw bad(500, ErrorCodes.INTERNAL, `the dashboard's files are missing (looked in ${candidates.join(' and ')}); reinstall the server package`)
  return found
}

export function dashboardRoute(): Route {
  let dir: string | undefined
  const cache = new Map<string, Promise<Buffer>>()

  function load(file: string): Promise<Buffer> {
    let body = cache.get(file)
    if (!body) {
      dir ??= dashboardDir()
      body = readFile(path.join(dir, file))
      // A failed read is not kept: the next request tries again.
      body.catch(() => cache.delete(file))
      cache.set(file, body)
    }
    return body
  }

  async function serve(file: string, type: string): Promise<NodeReply> {
    let body: Buffer
    try {
      body = await load(file)
    } catch (err) {
      if ((err as { status?: number }).status) throw err
      throw bad(500, ErrorCodes.INTERNAL, `could not read the dashboard's ${file}: ${(err as Error).message}`)
    }
    return { status: 200, headers: { 'content-type': type, ...HEADERS }, body }
  }

  return (req) => {
    const f = FILES[req.path]
    if (!f) return undefined
    return (async () => {
      allow(req, ['GET', 'HEAD'])
      return serve(f.file, f.type)
    })()
  }
}
