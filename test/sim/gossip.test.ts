// The gossip scenario of the simulator, small enough for every run: twelve real nodes form a cluster,
// learn of a joiner, and hold a crashed node down, on virtual time; no live peer is held down in a
// minute of calm. npm run bench:sim runs the same scenario at 25 to 100 nodes.
import { describe, expect, it } from 'vitest'
import { gossipScenario } from './gossip.js'

describe('gossip over twelve real nodes', () => {
  it('forms, spreads a join, finds a crash, and holds no live peer down', async () => {
    const f = await gossipScenario({ nodes: 12, seed: 1, steadyRounds: 60 })
    // The founding seeds wait for each other: a second or two of discovery.
    expect(f.formMs).toBeLessThan(5_000)
    // A joiner's entry spreads by push-pull within a few rounds.
    expect(f.joinKnownMs).toBeLessThan(10_000)
    // Phi 8 on 1 s heartbeats: a few seconds of silence, then everyone within a few more rounds.
    expect(f.deathFirstMs).toBeGreaterThan(1_000)
    expect(f.deathFirstMs).toBeLessThan(15_000)
    expect(f.deathAllMs).toBeLessThan(25_000)
    expect(f.falseSuspicions).toBe(0)
    // Every round each node pushes and pulls the whole member map (13 entries, some 2 KiB both ways).
    expect(f.bytesPerNodeRound).toBeGreaterThan(500)
  }, 60_000)
})
