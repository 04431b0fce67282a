// The dashboard (GET /dashboard) in a real headless Chromium, against real node processes: the page
// and its files come from the node itself under a strict CSP; it shows the members with their status
// and health, the ring, live request rates and latencies, a join with its handoff, a killed node down
// with the hints held for it, and, when the node it polls dies, "node unreachable since …" until it is
// back. A secured cluster asks for a token, kept in sessionStorage and sent as a bearer header.
//
// With ZEROHOP_SCREENSHOT=PATH set, the run also saves a screenshot of the page (a node down, hints
// held for it, live traffic) to PATH: `npm run build && ZEROHOP_SCREENSHOT=docs/dashboard.png npx vitest
// run test/integration/dashboard.test.ts` makes the README's picture.
import { existsSync, readFileSync } from 'node:fs'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core'
import { request } from 'undici'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { connect, type Client } from '@zerohop/client'
import { LATENCY_BUCKETS } from '@zerohop/core'
import { Cluster, waitFor } from '../harness/cluster.js'

/** Debian's chromium (apt-get install chromium), found as .ci/run finds it: on the PATH. */
function findChromium(): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    const file = dir && path.join(dir, 'chromium')
    if (file && existsSync(file)) return file
  }
  return undefined
}

const CHROMIUM = findChromium()
const MISSING = CHROMIUM ? undefined : 'no chromium on the PATH: the dashboard test drives a real headless Chromium (Debian: apt-get install chromium)'
if (MISSING && !process.env.CI) console.warn(`test/integration/dashboard.test.ts skipped: ${MISSING}`)

const SCREENSHOT = process.env.ZEROHOP_SCREENSHOT
const FAST = ['--gossip-interval-ms', '200', '--drop-delay-ms', '500', '--ae-interval-ms', '500']
const DASHBOARD_JS = fileURLToPath(new URL('../../server/dashboard/dashboard.js', import.meta.url))

function launch(): Promise<Browser> {
  // As root (CI) Chromium's sandbox cannot start; it only ever loads our own page here.
  return chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-dev-shm-usage'] })
}

/** Script errors and console errors (a CSP violation is one) of a page, but for failed loads. */
function watchErrors(page: Page): string[] {
  const errors: string[] = []
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`))
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) errors.push(`console: ${m.text()}`)
  })
  return errors
}

/** Puts and gets through the SDK, two at a time, until stopped: the figures the page shows rates of. */
class Traffic {
  ops = 0
  failures = 0
  #stopped = false
  #loops: Promise<void>[] = []

  constructor(readonly db: Client) {}

  start(): void {
    this.#loops = [0, 1].map(async (lane) => {
      for (let i = 0; !this.#stopped; i++) {
        const key = `traffic-${lane}-${i % 500}`
        try {
          await this.db.put(key, `value ${i}`)
          await this.db.get(key)
          this.ops += 2
        } catch {
          this.failures++
        }
      }
    })
  }

  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }
}

async function get(url: string, method: 'GET' | 'HEAD' | 'POST' = 'GET', headers: Record<string, string> = {}) {
  const res = await request(url, { method, headers, headersTimeout: 5000, bodyTimeout: 5000 })
  return { status: res.statusCode, headers: res.headers, body: await res.body.text() }
}

// The tests read the page through selectors and attributes only: they typecheck without the DOM library.

/** The numbers in an attribute of every element a selector matches (none: an empty list). */
const figures = (page: Page, selector: string, attr: string): Promise<number[]> =>
  page.locator(selector).evaluateAll((els, a) => els.map((e) => Number(e.getAttribute(a))), attr)

/** Until some element the selector matches shows a positive number in `attr`. */
async function waitForFigure(page: Page, selector: string, attr: string, what: string, timeoutMs = 15_000): Promise<void> {
  await waitFor(async () => (await figures(page, selector, attr)).some((n) => n > 0), { timeoutMs, intervalMs: 100, what })
}

/** Until an element's text differs from `before` (the page rewrote it at a later poll). */
async function waitForNewText(page: Page, selector: string, before: string | null, timeoutMs = 6000): Promise<string> {
  return waitFor(async () => {
    const now = await page.locator(selector).textContent({ timeout: 1000 })
    return now !== null && now !== before ? now : undefined
  }, { timeoutMs, intervalMs: 100, what: `${selector} to change` })
}

const storedToken = (page: Page) => page.evaluate<string | null>('sessionStorage.getItem("zerohop.token")')

// In CI a missing browser is a failure, not a skip.
if (MISSING && process.env.CI) {
  describe('dashboard', () => {
    it('has a Chromium to test with', () => {
      throw new Error(`${MISSING}; .ci/run installs it`)
    })
  })
}

describe.skipIf(!!MISSING)('dashboard of a 3-node cluster', () => {
  let cluster: Cluster | undefined
  let browser: Browser | undefined
  let page: Page
  let db: Client | undefined
  let traffic: Traffic | undefined
  let errors: string[] = []

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 3, partitions: 64, args: FAST })
    browser = await launch()
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } })
    errors = watchErrors(page)
    db = await connect({ seeds: cluster.seeds, timeoutMs: 2000, refreshIntervalMs: 1000 })
  })

  afterAll(async () => {
    // Each step on its own: one failing must not leave the browser or the nodes running.
    await traffic?.stop().catch(() => {})
    await browser?.close().catch(() => {})
    await db?.close().catch(() => {})
    await cluster?.close()
  })

  it('is served by the node itself, open, under a strict CSP, with GET and HEAD only', async () => {
    const base = cluster!.node('n1').url
    const page = await get(`${base}/dashboard`)
    expect(page.status).toBe(200)
    expect(page.headers['content-type']).toBe('text/html; charset=utf-8')
    expect(page.headers['cache-control']).toBe('no-cache')
    const csp = String(page.headers['content-security-policy'])
    expect(csp).toContain("default-src 'self'")
    expect(csp).not.toContain('unsafe-inline')
    // No inline script or style, nothing from elsewhere.
    expect(page.body).toContain('<script src="/dashboard/dashboard.js" defer></script>')
    expect(page.body).not.toMatch(/<script(?![^>]*\bsrc=)[^>]*>/)
    expect(page.body).not.toMatch(/<style|\sstyle=|\son[a-z]+=/i)
    expect(page.body).not.toMatch(/(src|href)="(https?:)?\/\//)

    const js = await get(`${base}/dashboard/dashboard.js`)
    expect(js.status).toBe(200)
    expect(js.headers['content-type']).toBe('text/javascript; charset=utf-8')
    expect(js.body).toBe(readFileSync(DASHBOARD_JS, 'utf8'))
    const css = await get(`${base}/dashboard/dashboard.css`)
    expect(css.headers['content-type']).toBe('text/css; charset=utf-8')
    expect(css.body).not.toMatch(/@import|url\(/)

    const head = await get(`${base}/dashboard`, 'HEAD')
    expect(head.status).toBe(200)
    expect(head.body).toBe('')
    expect(Number(head.headers['content-length'])).toBe(Buffer.byteLength(page.body))
    const post = await get(`${base}/dashboard`, 'POST')
    expect(post.status).toBe(405)
    expect(post.headers.allow).toBe('GET, HEAD')
    expect((await get(`${base}/dashboard/other.js`)).status).toBe(404)

    // The page estimates percentiles with the histograms' bounds: they must be the node's.
    const bounds = /const BUCKETS = \[([^\]]*)\]/.exec(js.body)
    expect(bounds?.[1].split(',').map(Number)).toEqual([...LATENCY_BUCKETS])
  })

  it('shows the three members normal and up, the ring, and live request rates and latencies', async () => {
    await page.goto(`${cluster!.node('n1').url}/dashboard`)
    await page.waitForSelector('[data-member="n1"][data-status="normal"][data-health="self"]', { timeout: 10_000 })
    await page.waitForSelector('[data-member="n2"][data-status="normal"][data-health="up"]', { timeout: 10_000 })
    await page.waitForSelector('[data-member="n3"][data-status="normal"][data-health="up"]', { timeout: 10_000 })
    expect(await page.locator('#ring path.arc').count()).toBe(64)
    expect(await page.locator('#legend li').count()).toBe(3)
    expect(await page.textContent('#fact-node')).toBe('n1')

    traffic = new Traffic(db!)
    traffic.start()
    // Coordinated writes: a rate over the last poll, with a mean and a p99. The SDK speaks the framed
    // protocol (its default), and the row says so.
    const row = '#requests tr[data-op="POST /v1/replica/coordinate frames"]'
    await waitForFigure(page, `${row} td[data-for="all"]`, 'data-rate', 'a rate of coordinated writes')
    expect(await page.textContent(`${row} td.op .tag`)).toBe('frames')
    const cells = await page.$$eval(`${row} td`, (tds) => tds.slice(1, 4).map((td) => td.textContent))
    expect(cells[0]).toMatch(/^[\d.,]+$/)
    expect(cells[1]).toMatch(/^[\d.]+ (ms|s)$/)
    expect(cells[2]).toMatch(/^[\d.]+ (ms|s)$/)
    // Anti-entropy rounds between the replicas.
    await waitForFigure(page, '#repair td[data-rounds]', 'data-rounds', 'an anti-entropy round')
    expect(await page.isVisible('#unreachable')).toBe(false)
    expect(await page.isVisible('#auth')).toBe(false)
    expect(errors).toEqual([])
  })

  it('shows a fourth node joining, with the handoff in progress, then normal', async () => {
    // Data to hand off (n4 pulls about 1 MB of it: its share of the replicas, from each source), and
    // a slow pull (64 KB/s, about 15 s), so that the join lasts several 2 s polls even when a loaded
    // machine makes some of them late, and ends well within the minute waited for below.
    const value = 'x'.repeat(1500)
    for (let i = 0; i < 300; i++) await db!.put(`cold-${i}`, value)
    const joining = page.waitForSelector('[data-member="n4"][data-status="joining"]', { timeout: 20_000 })
    const moving = page.waitForSelector('#handoff[data-transition="true"]', { timeout: 20_000 })
    const pulling = page.waitForSelector('#handoff-members tr[data-for="n4"]', { timeout: 20_000 })
    await cluster!.join('n4', ['--handoff-rate-bytes', '65536'])
    await Promise.all([joining, moving, pulling])
    expect(Number(await page.getAttribute('#handoff', 'data-gained'))).toBeGreaterThan(0)
    expect(await page.locator('#ring path.move').count()).toBeGreaterThan(0)
    await page.waitForSelector('[data-member="n4"][data-status="normal"]', { timeout: 60_000 })
    await page.waitForSelector('#handoff[data-transition="false"]', { timeout: 10_000 })
    expect(await page.locator('#legend li').count()).toBe(4)
    expect(errors).toEqual([])
  }, 120_000)

  it('shows a killed node down, in red, and the hints the others hold for it', async () => {
    await cluster!.node('n3').kill()
    await page.waitForSelector('[data-member="n3"][data-health="down"]', { timeout: 15_000 })
    const red = await page.$eval('[data-member="n3"] .badge.health-down', (el) => el.ownerDocument.defaultView!.getComputedStyle(el).backgroundColor)
    expect(red).toBe('rgb(207, 34, 46)')
    // The traffic's writes to n3's keys go to a spare with a hint for n3.
    await waitForFigure(page, '#repair tr[data-hints]', 'data-hints', 'hints held for n3')
    const held = await figures(page, '#members tr[data-member] td[data-hints]', 'data-hints')
    expect(held.some((n) => n > 0)).toBe(true)
    if (SCREENSHOT) {
      // Two more polls, so that every figure on the picture is a fresh one.
      await waitForNewText(page, '#updated', await page.textContent('#updated'))
      await page.screenshot({ path: SCREENSHOT, fullPage: true })
      console.log(`dashboard screenshot saved to ${SCREENSHOT} (${traffic!.ops} operations so far)`)
    }
    expect(errors).toEqual([])
  })

  it('says "node unreachable since …" while the node it polls is down, retries every 2 s, and clears once it is back', async () => {
    await traffic!.stop()
    await cluster!.node('n1').kill()
    await page.waitForSelector('#unreachable', { state: 'visible', timeout: 10_000 })
    const first = (await page.textContent('#unreachable'))!
    expect(first).toMatch(/^Node unreachable since \d\d:\d\d:\d\d/)
    const since = await page.getAttribute('#unreachable', 'data-since')
    // Still trying: the banner is rewritten at each failed poll, since the same moment.
    await waitForNewText(page, '#unreachable', first)
    expect(await page.getAttribute('#unreachable', 'data-since')).toBe(since)
    expect(await page.getAttribute('#live', 'data-state')).toBe('down')

    await cluster!.restart('n1')
    await page.waitForSelector('#unreachable', { state: 'hidden', timeout: 15_000 })
    await page.waitForSelector('[data-member="n1"][data-health="self"]', { timeout: 5000 })
    expect(await page.getAttribute('#live', 'data-state')).toBe('ok')
  })
})

describe.skipIf(!!MISSING)('dashboard of a secured cluster', () => {
  let cluster: Cluster | undefined
  let browser: Browser | undefined
  let context: BrowserContext
  let page: Page

  beforeAll(async () => {
    cluster = await Cluster.start({ nodes: 1, n: 1, partitions: 16, secure: 'users' })
    browser = await launch()
    context = await browser.newContext()
    page = await context.newPage()
  })

  afterAll(async () => {
    await browser?.close().catch(() => {})
    await cluster?.close()
  })

  it('serves the page without a token, asks for one, keeps it in sessionStorage and sends it as a bearer header', async () => {
    const base = cluster!.node('n1').url
    expect((await get(`${base}/dashboard`)).status).toBe(200)
    expect((await get(`${base}/dashboard/dashboard.js`)).status).toBe(200)
    expect((await get(`${base}/v1/cluster`)).status).toBe(401)

    const polls: { at: number; authorization?: string; done?: number }[] = []
    page.on('request', (r) => {
      if (new URL(r.url()).pathname === '/v1/cluster') polls.push({ at: Date.now(), authorization: r.headers().authorization })
    })
    const finished = (r: { url(): string }) => {
      const p = polls.findLast((x) => x.done === undefined)
      if (p && new URL(r.url()).pathname === '/v1/cluster') p.done = Date.now()
    }
    page.on('requestfinished', finished)
    page.on('requestfailed', finished)

    await page.goto(`${base}/dashboard`)
    await page.waitForSelector('#auth', { state: 'visible', timeout: 10_000 })
    expect(polls[0].authorization).toBeUndefined()

    // A wrong token is refused, forgotten, and the form says so.
    await page.fill('#token', 'not-a-token')
    await page.click('#auth button[type="submit"]')
    expect(await waitForNewText(page, '#auth-why', 'Checking the token at the next poll…')).toMatch(/^The node refused the token: /)
    expect(await storedToken(page)).toBeNull()

    const token = cluster!.tokens!.reader
    await page.fill('#token', token)
    await page.click('#auth button[type="submit"]')
    await page.waitForSelector('[data-member="n1"][data-status="normal"][data-health="self"]', { timeout: 6000 })
    expect(await page.isVisible('#auth')).toBe(false)
    expect(await storedToken(page)).toBe(token)
    expect(polls.at(-1)!.authorization).toBe(`Bearer ${token}`)
    expect(page.url()).not.toContain(token)

    // Reloaded in the same tab, the page still has its token.
    await page.reload()
    await page.waitForSelector('[data-member="n1"]', { timeout: 6000 })
    expect(await page.isVisible('#auth')).toBe(false)

    // One request at a time, 2 s apart.
    const from = polls.length
    await waitFor(() => polls.length >= from + 3, { timeoutMs: 10_000, what: 'three more polls' })
    const recent = polls.slice(from)
    for (let i = 1; i < recent.length; i++) {
      expect(recent[i].at - recent[i - 1].at, 'time between two polls').toBeGreaterThanOrEqual(1950)
      if (recent[i - 1].done !== undefined) expect(recent[i - 1].done!).toBeLessThanOrEqual(recent[i].at)
    }
  })
})
