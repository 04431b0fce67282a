// The CLI's pure parts: --node as host:port or a URL, the exit code of each kind of error, and the
// cluster view behind zerohop status, ring and the dashboard (health, share, balance, moves, handoff).
import { describe, expect, it } from 'vitest'
import { ClusterView, ErrorCodes, ZerohopError, type MemberState, type NodeStats } from '@zerohop/core'
import { DEFAULT_NODE, Exit, exitCodeOf, nodeUrlOf, parseCommand, showValue, table } from '../src/commands.js'
import { clusterStatus } from '../src/cluster-status.js'

describe('--node', () => {
  it('takes host:port (http, or https with --ca) or a URL; defaults to the dev cluster; names the fix otherwise', () => {
    expect(nodeUrlOf('127.0.0.1:7001', false)).toBe('http://127.0.0.1:7001')
    expect(nodeUrlOf('db.example:7443', true)).toBe('https://db.example:7443')
    expect(nodeUrlOf('http://127.0.0.1:7002/', false)).toBe('http://127.0.0.1:7002')
    expect(() => nodeUrlOf('ftp://x:1', false)).toThrow(/http:\/\/ or https:\/\//)
    expect(() => nodeUrlOf('http://x:1/v1/ring', false)).toThrow(/address only/)
    expect(() => nodeUrlOf('http://[bad', false)).toThrow(/host:port or a URL/)
    const saved = process.env.ZEROHOP_NODE
    try {
      delete process.env.ZEROHOP_NODE
      expect(parseCommand('status', [], {}, []).target.url).toBe(DEFAULT_NODE)
      process.env.ZEROHOP_NODE = '10.0.0.5:7009'
      expect(parseCommand('status', [], {}, []).target.url).toBe('http://10.0.0.5:7009')
      expect(parseCommand('status', ['--node', 'h:1'], {}, []).target.url).toBe('http://h:1')
    } finally {
      if (saved === undefined) delete process.env.ZEROHOP_NODE
      else process.env.ZEROHOP_NODE = saved
    }
  })

  it('a wrong number of arguments or an unknown option is a usage error', () => {
    expect(() => parseCommand('get', [], {}, ['KEY'])).toThrow(/zerohop get takes KEY, got none/)
    expect(() => parseCommand('status', ['x'], {}, [])).toThrow(/takes no arguments, got "x"/)
    expect(() => parseCommand('status', ['--bogus'], {}, [])).toThrow(/Unknown option '--bogus'.*zerohop help/)
  })
})

describe('exit codes', () => {
  it('1 not found, 2 usage, 3 unavailable', () => {
    const e = (code: string) => new ZerohopError(code as never, 'x')
    expect(exitCodeOf(e(ErrorCodes.KEY_NOT_FOUND))).toBe(Exit.notFound)
    expect(exitCodeOf(e(ErrorCodes.NOT_FOUND))).toBe(Exit.notFound)
    for (const c of [ErrorCodes.INVALID_ARGUMENT, ErrorCodes.BAD_CONTEXT, ErrorCodes.CONFLICT, ErrorCodes.UNAUTHENTICATED, ErrorCodes.FORBIDDEN, ErrorCodes.VALUE_TOO_LARGE]) expect(exitCodeOf(e(c)), c).toBe(Exit.usage)
    for (const c of [ErrorCodes.QUORUM_NOT_MET, ErrorCodes.NO_SEED_REACHABLE, ErrorCodes.NOT_READY, ErrorCodes.REQUEST_TIMEOUT, ErrorCodes.OVERLOADED]) expect(exitCodeOf(e(c)), c).toBe(Exit.unavailable)
    expect(exitCodeOf(new Error('bug'))).toBe(Exit.unavailable)
  })
})

describe('output', () => {
  it('values: printable text quoted, other bytes by size and hex; tables aligned', () => {
    expect(showValue(Buffer.from('hello'))).toBe('"hello"')
    expect(showValue(Buffer.from([0, 1, 2, 255]))).toBe('<4 bytes: 000102ff>')
    expect(table([['A', 'BB'], ['ccc', 'd']])).toBe('A    BB\nccc  d\n')
  })
})

const member = (id: string, over: Partial<MemberState> = {}): MemberState => ({ id, url: `http://${id}`, zone: 'z', weight: 1, status: 'normal', incarnation: '1', version: 1, heartbeat: 0, since: 0, until: 0, removed: false, ready: '', ...over })

function stats(id: string, pulled: number): NodeStats {
  return { id, url: `http://${id}`, time: 0, member: 'joining', hints: { items: 0, bytes: 0, targets: {}, stored: 0, delivered: 0, dropped: 0, expired: 0 }, handoff: { active: true, gained: 99, pulled, items: 0, bytes: 0 }, antiEntropy: { ready: true, rounds: 0, exchanges: 0, keysRepaired: 0, lastRoundAt: 0 }, tombstones: { scanned: true, held: 0, reaped: 0 }, requests: [] }
}

describe('clusterStatus', () => {
  const live = (down: string[], phi: Record<string, number> = {}) => ({ self: 'a', isUp: (id: string) => !down.includes(id), phi: (id: string) => phi[id] ?? 0, phiThreshold: 8 })

  it('settled: shares sum to 1, balance is max over mean, no moves; health up, suspect (phi past half the threshold), down', () => {
    const view = new ClusterView(['a', 'b', 'c', 'd'].map((id) => member(id)), { partitions: 64, n: 3 })
    const c = clusterStatus(view, live(['d'], { c: 5 }), new Map([['d', 'down as far as a can tell']]))
    expect(c.members.map((m) => [m.id, m.health])).toEqual([['a', 'self'], ['b', 'up'], ['c', 'suspect'], ['d', 'down']])
    expect(c.members.reduce((x, m) => x + m.share, 0)).toBeCloseTo(1, 10)
    const shares = c.members.map((m) => m.share)
    expect(c.balance).toBeCloseTo(Math.max(...shares) / (1 / 4), 10)
    expect(c.owners).toHaveLength(64)
    expect(c.moves).toEqual([])
    expect(c.transition).toBe(false)
    expect(c.members[3].error).toMatch(/down/)
  })

  it('a join in progress: every partition the joiner gains is a move; pulled counts from its figures, all once it is ready', () => {
    const view = new ClusterView([...['a', 'b', 'c'].map((id) => member(id)), member('d', { status: 'joining', since: 10 })], { partitions: 64, n: 3 })
    expect(view.transition).toBe(true)
    const c = clusterStatus(view, live([]), new Map([['d', stats('d', 5)]]))
    expect(c.moves.length).toBeGreaterThan(0)
    expect(c.moves.every((m) => m.to.includes('d') && !m.from.includes('d'))).toBe(true)
    expect(c.handoff).toEqual({ gained: c.moves.length, pulled: 5 })
    expect(c.members.find((m) => m.id === 'd')?.status).toBe('joining')
    const ready = new ClusterView([...['a', 'b', 'c'].map((id) => member(id)), member('d', { status: 'joining', since: 10, ready: view.next.epoch })], { partitions: 64, n: 3 })
    expect(clusterStatus(ready, live([]), new Map()).handoff).toEqual({ gained: c.moves.length, pulled: c.moves.length })
  })

  it('a leave from 3 to 2 members with N=3 moves nothing: every partition only loses a replica', () => {
    const view = new ClusterView([member('a'), member('b'), member('c', { status: 'leaving', until: 10 })], { partitions: 64, n: 3 })
    expect(view.transition).toBe(true)
    const c = clusterStatus(view, live([]), new Map())
    expect(c.moves).toEqual([])
    expect(c.handoff).toEqual({ gained: 0, pulled: 0 })
  })
})
