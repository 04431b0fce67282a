// The real clock: Node's timers.
import type { Clock } from '@zerohop/core'

export const systemClock: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (t) => clearTimeout(t as NodeJS.Timeout),
  setImmediate: (fn) => void setImmediate(fn),
}
