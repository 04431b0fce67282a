// A clock for unit tests that moves only when the test sets `t`; timers never fire.
import type { Clock } from '@zerohop/core'

export class HandClock implements Clock {
  t = 1_000_000
  now() { return this.t }
  setTimeout() { return undefined }
  clearTimeout() {}
  setImmediate(fn: () => void) { setImmediate(fn) }
}
