// Seeds that once caught a bug, kept in the suite with what they caught. A seed's schedule depends on
// the code it runs (a change to the node, the SDK or the simulator draws other faults), so a seed
// replays its bug only on the code it was found with; each bug therefore has a scenario test of its
// own that pins it (a scenario in simulator.test.ts, or a unit test), and the seeds stay as extra
// schedules that once mattered.
export const regressions: { seed: number; caught: string }[] = [
  { seed: 308, caught: 'a node that completed its leave while cut off stopped before any member heard, leaving the ring in transition for good' },
  { seed: 1760, caught: 'an acknowledged write whose copies were its coordinator\'s and a hint merged into an older one: the hint expired undelivered (its target cut off, one lost delivery waiting out 5 s) and the coordinator lost its disk' },
  { seed: 2448, caught: 'a removal written by a node that had not heard of the removed node\'s latest entries lost to them: the dead node stayed a member for good' },
]
