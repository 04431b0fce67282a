// Seeds that once caught a bug, kept in the suite with what they caught. A seed's schedule depends on
// the code it runs (a change to the node, the SDK or the simulator draws other faults), so each bug
// also has a scenario test of its own where one could be written (simulator.test.ts); the seeds stay
// as cheap extra schedules that once mattered.
export const regressions: { seed: number; caught: string }[] = [
  { seed: 308, caught: 'a node that completed its leave while cut off stopped before any member heard, leaving the ring in transition for good' },
]
