// A seeded pseudo-random generator for simulations and property tests: the same seed draws the same
// sequence on every run and machine, unlike Math.random. The core's seededRandom, as a function.
import { seededRandom } from '../../packages/core/src/random.js'

export function mulberry32(seed: number): () => number {
  const r = seededRandom(seed)
  return () => r.next()
}
