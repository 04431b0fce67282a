// The dashboard: polls GET /v1/cluster of the node that served this page every 2 s (never two requests
// at once) and draws it. Rates and latencies are differences between two polls: each member's request
// histograms are counted since it started, so the figures of one window are the change of its counts
// over the change of its clock (`time`). Plain script, no dependencies: the page's CSP allows nothing else.
'use strict'
;(() => {
  const POLL_MS = 2000
  /** Below the poll interval: a slow answer never overlaps the next request. */
  const TIMEOUT_MS = 1800
  const TOKEN_KEY = 'zerohop.token'
  /** Upper bounds (seconds) of the latency histograms: LATENCY_BUCKETS in packages/core/src/wire.ts. */
  const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
  /** Owner colours (no red: red means down). */
  const PALETTE = ['#4e79a7', '#f28e2b', '#59a14f', '#b07aa1', '#76b7b2', '#edc948', '#9c755f', '#ff9da7', '#86bcb6', '#8cd17d', '#a0cbe8', '#d4a6c8', '#499894', '#f1ce63', '#79706e', '#d37295']
  const SVG = 'http://www.w3.org/2000/svg'

  const $ = (id) => document.getElementById(id)

  /** An element with attributes (false, null and undefined left out) and children (strings become text). */
  function h(tag, attrs, ...kids) {
    const svg = tag.startsWith('svg:')
    const el = svg ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag)
    for (const [k, v] of Object.entries(attrs || {})) if (v !== undefined && v !== null && v !== false) el.setAttribute(k, v === true ? '' : String(v))
    for (const k of kids.flat(Infinity)) if (k !== undefined && k !== null && k !== false) el.append(k instanceof Node ? k : String(k))
    return el
  }

  // ---- formatting -------------------------------------------------------------------------------

  const DASH = '—'
  const int = (n) => (n === undefined ? DASH : Math.round(n).toLocaleString('en-US'))
  function bytes(n) {
    if (n === undefined) return DASH
    if (n < 1024) return `${n} B`
    const units = ['KiB', 'MiB', 'GiB', 'TiB']
    let v = n / 1024
    let i = 0
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024
      i++
    }
    return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[i]}`
  }
  function rate(r) {
    if (r === undefined) return DASH
    if (r === 0) return '0'
    return r < 10 ? r.toFixed(1) : Math.round(r).toLocaleString('en-US')
  }
  function seconds(s) {
    if (s === undefined) return DASH
    if (s === Infinity) return `> ${BUCKETS[BUCKETS.length - 1]} s`
    const ms = s * 1000
    if (ms < 1) return `${ms.toFixed(2)} ms`
    if (ms < 100) return `${ms.toFixed(1)} ms`
    if (ms < 1000) return `${Math.round(ms)} ms`
    return `${s.toFixed(2)} s`
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000))
    if (s < 1) return 'just now'
    if (s < 60) return `${s} s ago`
    if (s < 3600) return `${Math.round(s / 60)} min ago`
    return `${(s / 3600).toFixed(1)} h ago`
  }
  const clock = (t) => new Date(t).toLocaleTimeString([], { hour12: false })
  const pct = (x) => `${(x * 100).toFixed(x > 0 && x < 0.1 ? 1 : 0)} %`

  // ---- rates and latencies from two polls -------------------------------------------------------

  const opKey = (r) => `${r.method} ${r.route} ${r.via}`

  /**
   * What one member served between two of its figures: per operation, the requests, their summed
   * duration and the histogram's counts in the window. Undefined if the clock did not move or a
   * count went down (the member restarted: these figures are the new baseline).
   */
  function windowOf(cur, old) {
    if (!old) return undefined
    const dt = (cur.time - old.time) / 1000
    if (!(dt > 0)) return undefined
    const before = new Map(old.requests.map((r) => [opKey(r), r]))
    const ops = new Map()
    for (const r of cur.requests) {
      const o = before.get(opKey(r))
      const count = r.count - (o ? o.count : 0)
      if (count < 0) return undefined
      ops.set(opKey(r), { count, sum: r.sum - (o ? o.sum : 0), buckets: r.buckets.map((b, i) => b - (o ? o.buckets[i] : 0)) })
    }
    return { dt, ops }
  }

  /**
   * The q-quantile of a window's histogram, linear within its bucket (as Prometheus'
   * histogram_quantile); Infinity past the last bound, undefined without requests.
   */
  function quantile(buckets, count, q) {
    if (!(count > 0) || buckets.length !== BUCKETS.length) return undefined
    const rank = q * count
    for (let i = 0; i < BUCKETS.length; i++) {
      if (buckets[i] >= rank) {
        const lower = i === 0 ? 0 : BUCKETS[i - 1]
        const below = i === 0 ? 0 : buckets[i - 1]
        const inside = buckets[i] - below
        return lower + (BUCKETS[i] - lower) * (inside > 0 ? (rank - below) / inside : 1)
      }
    }
    return Infinity
  }

  /** rate, mean and p99 of one operation over a window (or of several summed). */
  function figures(w) {
    if (!w) return { rate: undefined, mean: undefined, p99: undefined }
    return { rate: w.rate, mean: w.count > 0 ? w.sum / w.count : undefined, p99: quantile(w.buckets, w.count, 0.99) }
  }

  // ---- state ------------------------------------------------------------------------------------

  /** Each member's figures at the last poll that had them, and its window since the one before. */
  const last = new Map()
  const windows = new Map()
  /** Owner colours, kept for the session: a member keeps its colour as others come and go. */
  const colours = new Map()
  let ringKey = ''
  let unreachableSince
  let answeredAt
  /** What the token form says since the last token was tried (refused, or being checked). */
  let tokenNote

  function colourOf(id) {
    if (!id) return '#d0d7de'
    if (!colours.has(id)) colours.set(id, PALETTE[colours.size % PALETTE.length])
    return colours.get(id)
  }

  const swatch = (id) => h('svg:svg', { class: 'swatch', width: 12, height: 12, viewBox: '0 0 12 12', 'aria-hidden': 'true' }, h('svg:rect', { width: 12, height: 12, rx: 3, fill: colourOf(id) }))

  // ---- drawing ----------------------------------------------------------------------------------

  function drawRing(c) {
    const key = `${c.epoch}|${c.owners.join(',')}|${c.moves.length}|${c.members.map((m) => `${m.id}:${m.status}:${m.share}`).join(',')}`
    if (key === ringKey) return
    ringKey = key
    const svg = $('ring')
    const cx = 150
    const cy = 150
    const R = 128
    const r = 90
    const Q = c.owners.length
    const point = (radius, a) => `${(cx + radius * Math.cos(a)).toFixed(2)} ${(cy + radius * Math.sin(a)).toFixed(2)}`
    const angle = (p) => -Math.PI / 2 + (2 * Math.PI * p) / Q
    const arc = (from, to, outer, inner) => {
      const a0 = angle(from)
      const a1 = angle(to)
      const large = a1 - a0 > Math.PI ? 1 : 0
      return `M ${point(outer, a0)} A ${outer} ${outer} 0 ${large} 1 ${point(outer, a1)} L ${point(inner, a1)} A ${inner} ${inner} 0 ${large} 0 ${point(inner, a0)} Z`
    }
    // One arc per partition; past 1024 of them, runs of one owner (at most a quarter turn each).
    const segments = []
    for (let p = 0; p < Q; p++) {
      const prev = segments[segments.length - 1]
      if (Q > 1024 && prev && prev.owner === c.owners[p] && p - prev.from < Q / 4) prev.to = p + 1
      else segments.push({ from: p, to: p + 1, owner: c.owners[p] })
    }
    const separated = Q <= 256
    const arcs = segments.map((s) => h('svg:path', {
      class: 'arc', d: arc(s.from, s.to, R, r), fill: colourOf(s.owner), stroke: separated ? '#ffffff' : 'none', 'stroke-width': 0.8,
      'data-partition': s.from, 'data-owner': s.owner,
    }, h('svg:title', {}, `${s.to - s.from === 1 ? `partition ${s.from}` : `partitions ${s.from}–${s.to - 1}`}: ${s.owner || 'no owner'}`)))
    // A partition moving in a join or leave: a mark outside it, in the colour of a member gaining it.
    const marks = c.moves.map((m) => {
      const gaining = m.to.find((id) => !m.from.includes(id))
      return h('svg:path', { class: 'move', d: arc(m.partition, m.partition + 1, R + 12, R + 5), fill: colourOf(gaining), 'data-move': m.partition },
        h('svg:title', {}, `partition ${m.partition}: ${m.from.join(', ')} → ${m.to.join(', ')}`))
    })
    svg.replaceChildren(
      ...arcs,
      ...marks,
      h('svg:text', { x: cx, y: cy - 8, class: 'ring-big', 'text-anchor': 'middle' }, String(Q)),
      h('svg:text', { x: cx, y: cy + 12, class: 'ring-small', 'text-anchor': 'middle' }, 'partitions'),
      h('svg:text', { x: cx, y: cy + 30, class: 'ring-small', 'text-anchor': 'middle' }, `N = ${c.n}`),
    )
    svg.setAttribute('data-partitions', String(Q))
    const owned = new Map()
    for (const o of c.owners) owned.set(o, (owned.get(o) ?? 0) + 1)
    // Every member that holds or is to hold partitions (a joiner owns none yet, but gains the marked ones).
    const listed = c.members.filter((m) => owned.has(m.id) || (m.status !== 'left' && m.status !== 'removed'))
    $('legend').replaceChildren(...listed.map((m) => h('li', { 'data-owner': m.id },
      swatch(m.id), h('span', { class: 'legend-id' }, m.id),
      h('span', { class: 'legend-figures' }, `${int(owned.get(m.id) ?? 0)} first · ${pct(m.share)} of replicas${m.status === 'normal' ? '' : ` · ${m.status}`}`))))
    $('ring-note').textContent = c.moves.length > 0
      ? `Each arc is a partition, coloured by its first replica. Outer marks: ${c.moves.length} partitions moving, in the colour of the member gaining them.`
      : 'Each arc is a partition, coloured by its first replica.'
  }

  const badge = (kind, value, title) => h('span', { class: `badge ${kind}-${value}`, title }, value)

  function totalRate(w) {
    if (!w) return undefined
    let n = 0
    for (const o of w.ops.values()) n += o.count
    return n / w.dt
  }

  function drawMembers(c) {
    $('members').tBodies[0].replaceChildren(...c.members.map((m) => {
      const s = m.stats
      const w = windows.get(m.id)
      const healthTitle = { self: 'the node this page polls', up: 'answering gossip', suspect: 'late: its failure detector suspects it', down: 'not answering: held down' }[m.health]
      return h('tr', { 'data-member': m.id, 'data-status': m.status, 'data-health': m.health, class: `row-${m.health} row-${m.status}` },
        h('td', { class: 'member' }, swatch(m.id), h('strong', {}, m.id)),
        h('td', { class: 'url' }, m.url, m.error ? h('div', { class: 'err' }, m.error) : null),
        h('td', {}, m.zone),
        h('td', {}, badge('status', m.status)),
        h('td', {}, badge('health', m.health, healthTitle)),
        h('td', { class: 'num' }, pct(m.share)),
        h('td', { class: 'num', 'data-rate': w ? totalRate(w).toFixed(3) : null }, rate(totalRate(w))),
        h('td', { class: 'num', 'data-hints': s ? s.hints.items : null }, s ? `${int(s.hints.items)} · ${bytes(s.hints.bytes)}` : DASH))
    }))
  }

  function drawHandoff(c) {
    const card = $('handoff')
    card.setAttribute('data-transition', String(c.transition))
    card.setAttribute('data-gained', String(c.handoff.gained))
    card.setAttribute('data-pulled', String(c.handoff.pulled))
    const bar = $('handoff-bar')
    if (c.transition) {
      const done = c.handoff.gained > 0 ? c.handoff.pulled / c.handoff.gained : 1
      $('handoff-summary').replaceChildren(h('strong', {}, 'Join or leave in progress: '),
        `${int(c.handoff.pulled)} of ${int(c.handoff.gained)} partitions gained are pulled (${pct(done)}); ${int(c.moves.length)} partitions change replicas.`)
      bar.hidden = false
      bar.max = Math.max(1, c.handoff.gained)
      bar.value = c.handoff.pulled
    } else {
      $('handoff-summary').textContent = 'No join or leave in progress: the ring is settled.'
      bar.hidden = true
    }
    // Each member pulling partitions it gains; the items and bytes are counted since it started.
    const pulling = c.members.filter((m) => m.stats && m.stats.handoff.active && m.stats.handoff.gained > 0)
    $('handoff-members').hidden = pulling.length === 0
    $('handoff-members').tBodies[0].replaceChildren(...pulling.map((m) => {
      const ho = m.stats.handoff
      return h('tr', { 'data-for': m.id, 'data-pulled': ho.pulled, 'data-gained': ho.gained },
        h('td', { class: 'member' }, swatch(m.id), m.id),
        h('td', { class: 'num' }, `${int(ho.pulled)} / ${int(ho.gained)}`),
        h('td', { class: 'num' }, int(ho.items)),
        h('td', { class: 'num' }, bytes(ho.bytes)))
    }))
  }

  function drawRequests(c) {
    const shown = c.members.filter((m) => m.stats || (m.status !== 'left' && m.status !== 'removed'))
    // Every operation any member has served, summed over the members for the first column group.
    const names = new Map()
    for (const m of shown) for (const r of m.stats ? m.stats.requests : []) if (r.count > 0) names.set(opKey(r), r)
    const keys = [...names.keys()].sort((a, b) => {
      const x = names.get(a)
      const y = names.get(b)
      return x.route.localeCompare(y.route) || x.method.localeCompare(y.method) || x.via.localeCompare(y.via)
    })
    const table = $('requests')
    const group = (label, id) => h('th', { colspan: 3, class: 'group', scope: 'colgroup' }, id ? swatch(id) : null, label)
    const subs = () => [h('th', { class: 'num' }, 'req/s'), h('th', { class: 'num' }, 'mean'), h('th', { class: 'num' }, 'p99')]
    table.tHead.replaceChildren(
      h('tr', {}, h('th', { rowspan: 2 }, 'operation'), group('all members'), ...shown.map((m) => group(m.id, m.id))),
      h('tr', {}, ...subs(), ...shown.flatMap(() => subs())),
    )
    const cells = (f, who) => [
      h('td', { class: 'num first', 'data-for': who, 'data-rate': f.rate === undefined ? null : f.rate.toFixed(3) }, rate(f.rate)),
      h('td', { class: 'num' }, seconds(f.mean)),
      h('td', { class: 'num' }, seconds(f.p99)),
    ]
    const rows = keys.map((k) => {
      const r = names.get(k)
      let all
      const per = shown.map((m) => {
        const w = windows.get(m.id)
        if (!w) return figures(undefined)
        const o = w.ops.get(k) ?? { count: 0, sum: 0, buckets: BUCKETS.map(() => 0) }
        const one = { rate: o.count / w.dt, count: o.count, sum: o.sum, buckets: o.buckets }
        if (!all) all = { rate: 0, count: 0, sum: 0, buckets: BUCKETS.map(() => 0) }
        all.rate += one.rate
        all.count += o.count
        all.sum += o.sum
        o.buckets.forEach((b, i) => (all.buckets[i] += b))
        return figures(one)
      })
      if (!all || all.count === 0) return undefined
      return h('tr', { 'data-op': k },
        h('td', { class: 'op' }, h('span', { class: 'method' }, r.method), ' ', h('code', {}, r.route), r.via === 'local' ? h('span', { class: 'tag', title: 'coordinated by the node for a key it replicates: no HTTP to itself' }, 'local') : r.via === 'frames' ? h('span', { class: 'tag', title: "over the nodes' framed protocol, not HTTP" }, 'frames') : null),
        ...cells(figures(all), 'all'),
        ...per.flatMap((f, i) => cells(f, shown[i].id)))
    })
    // Operations no member served in the window are left out, and counted in a line below.
    const active = rows.filter((r) => r !== undefined)
    const idle = rows.length - active.length
    const windowed = shown.some((m) => windows.get(m.id))
    const note = !windowed ? 'Rates need two polls: the next one is at most 2 s away.' : idle > 0 ? `${idle} operation${idle === 1 ? '' : 's'} served before but not in the last 2 s not shown.` : ''
    if (note) active.push(h('tr', { class: 'note-row' }, h('td', { colspan: 1 + 3 * (shown.length + 1), class: 'muted' }, note)))
    table.tBodies[0].replaceChildren(...active)
  }

  function drawRepair(c) {
    $('repair').tBodies[0].replaceChildren(...c.members.filter((m) => m.stats || (m.status !== 'left' && m.status !== 'removed')).map((m) => {
      const s = m.stats
      if (!s) {
        return h('tr', { 'data-for': m.id }, h('td', { class: 'member' }, swatch(m.id), m.id),
          h('td', { colspan: 9, class: 'muted' }, `no figures: ${m.error ?? 'not asked'}`))
      }
      const targets = Object.entries(s.hints.targets).filter(([, t]) => t.items > 0)
      const ae = s.antiEntropy
      return h('tr', { 'data-for': m.id, 'data-hints': s.hints.items, 'data-hint-bytes': s.hints.bytes },
        h('td', { class: 'member' }, swatch(m.id), m.id),
        h('td', { class: `num first${s.hints.items > 0 ? ' warn' : ''}` }, int(s.hints.items)),
        h('td', { class: 'num' }, bytes(s.hints.bytes)),
        h('td', {}, targets.length === 0 ? h('span', { class: 'muted' }, 'nobody') : targets.map(([id, t], i) => [i > 0 ? ', ' : '', h('span', { class: 'target' }, `${id}: ${int(t.items)}`)])),
        h('td', { class: 'num' }, int(s.hints.delivered)),
        h('td', { class: 'num' }, int(s.hints.dropped + s.hints.expired)),
        h('td', { class: 'num first', 'data-rounds': ae.rounds, title: `${int(ae.exchanges)} exchanges of differing trees` }, int(ae.rounds)),
        h('td', { class: 'num', 'data-repaired': ae.keysRepaired }, int(ae.keysRepaired)),
        h('td', { class: 'num' }, ae.lastRoundAt > 0 ? ago(s.time - ae.lastRoundAt) : 'never'),
        h('td', { class: 'num first' }, int(s.tombstones.held)))
    }))
  }

  function render(c) {
    for (const m of c.members) {
      // No figures this time (down, or slow to answer): no rates rather than old ones.
      if (!m.stats) {
        windows.delete(m.id)
        continue
      }
      windows.set(m.id, windowOf(m.stats, last.get(m.id)))
      last.set(m.id, m.stats)
    }
    // Colours in the order of the members (by id), not of the partitions they happen to own first.
    for (const m of c.members) colourOf(m.id)
    document.title = `Zerohop · ${c.node}`
    $('fact-node').textContent = c.node
    $('fact-epoch').textContent = c.epoch
    $('fact-partitions').textContent = int(c.partitions)
    $('fact-n').textContent = String(c.n)
    $('fact-balance').textContent = c.balance.toFixed(2)
    drawRing(c)
    drawMembers(c)
    drawHandoff(c)
    drawRequests(c)
    drawRepair(c)
  }

  // ---- polling ----------------------------------------------------------------------------------

  function setLive(state, text) {
    $('live').setAttribute('data-state', state)
    $('updated').textContent = text
  }

  function showUnreachable(why) {
    const now = Date.now()
    unreachableSince ??= now
    const banner = $('unreachable')
    banner.replaceChildren(
      h('strong', {}, `Node unreachable since ${clock(unreachableSince)}`),
      ` (${Math.round((now - unreachableSince) / 1000)} s): ${why}. Retrying every ${POLL_MS / 1000} s`,
      answeredAt ? `; the figures below are from ${clock(answeredAt)}.` : '.')
    banner.setAttribute('data-since', new Date(unreachableSince).toISOString())
    banner.hidden = false
    $('main').classList.add('stale')
    setLive('down', answeredAt ? `last answer ${clock(answeredAt)}` : 'no answer yet')
  }

  function reachable() {
    unreachableSince = undefined
    $('unreachable').hidden = true
    $('unreachable').removeAttribute('data-since')
  }

  function showProblem(text) {
    const p = $('problem')
    p.textContent = text ?? ''
    p.hidden = !text
  }

  function askToken(refused, message) {
    if (refused) {
      sessionStorage.removeItem(TOKEN_KEY)
      tokenNote = `The node refused the token: ${message}`
    }
    $('forget').hidden = true
    $('auth-why').textContent = tokenNote ?? 'The node asks for a token (its users file is on) before it shows the cluster.'
    const form = $('auth')
    if (form.hidden) {
      form.hidden = false
      $('token').focus()
    }
    $('main').classList.add('stale')
    setLive('auth', 'needs a token')
  }

  function errorMessage(text) {
    try {
      return JSON.parse(text).error.message
    } catch {
      return text.slice(0, 200)
    }
  }

  async function poll() {
    const started = Date.now()
    const abort = new AbortController()
    const timeout = setTimeout(() => abort.abort(), TIMEOUT_MS)
    try {
      const token = sessionStorage.getItem(TOKEN_KEY)
      const headers = { accept: 'application/json' }
      if (token) headers.authorization = `Bearer ${token}`
      let res
      let text
      try {
        res = await fetch('/v1/cluster', { headers, signal: abort.signal, cache: 'no-store', credentials: 'omit' })
        text = await res.text()
      } catch (err) {
        showUnreachable(err && err.name === 'AbortError' ? `no answer within ${TIMEOUT_MS / 1000} s` : 'the connection failed')
        return
      }
      reachable()
      if (res.status === 401) {
        showProblem(null)
        askToken(token !== null, errorMessage(text))
        return
      }
      if (!res.ok) {
        showProblem(`GET /v1/cluster answered HTTP ${res.status}: ${errorMessage(text)}`)
        setLive('warn', `HTTP ${res.status} at ${clock(Date.now())}`)
        return
      }
      const cluster = JSON.parse(text)
      answeredAt = Date.now()
      tokenNote = undefined
      $('auth').hidden = true
      $('forget').hidden = token === null
      showProblem(null)
      render(cluster)
      $('main').classList.remove('stale')
      setLive('ok', `updated ${clock(answeredAt)} · ${answeredAt - started} ms`)
    } catch (err) {
      showProblem(`could not show the answer: ${err && err.message}`)
    } finally {
      clearTimeout(timeout)
      // Every 2 s from the start of the last request, which the timeout ends before then.
      setTimeout(poll, Math.max(0, POLL_MS - (Date.now() - started)))
    }
  }

  $('auth').addEventListener('submit', (e) => {
    e.preventDefault()
    const token = $('token').value.trim()
    if (!token) return
    sessionStorage.setItem(TOKEN_KEY, token)
    $('token').value = ''
    tokenNote = 'Checking the token at the next poll…'
    $('auth-why').textContent = tokenNote
  })
  $('forget').addEventListener('click', () => {
    sessionStorage.removeItem(TOKEN_KEY)
    $('forget').hidden = true
  })

  poll()
})()
