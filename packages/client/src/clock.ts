// The real clock (Node's timers) and the real randomness (Math.random, crypto's bytes).
import { randomBytes } from 'node:crypto'
import type { Clock, Random } from '@zerohop/core'

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
  setImmediate: (fn) => void setImmediate(fn),
}

export const systemRandom: Random = {
  next: () => Math.random(),
  bytes: (n) => randomBytes(n),
}
