// Time reaches the logic through this interface, never through globals, so a seeded in-process
// simulator can one day run the real SDK and node code on virtual time. The core only defines it;
// the real clock lives where timers may (client, server).

export interface Clock {
  /** Milliseconds since the epoch (or since the simulation began). */
  now(): number
  setTimeout(fn: () => void, ms: number): ClockTimer
  clearTimeout(timer: ClockTimer): void
  /** Run `fn` once the current turn of the event loop has finished its I/O callbacks. */
  setImmediate(fn: () => void): void
}

/** Opaque handle of a scheduled callback. */
export type ClockTimer = unknown

/** Resolves after `ms` on `clock`, or at once when `signal` fires. */
export function sleep(clock: Clock, ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve()
    const t = clock.setTimeout(done, ms)
    function done() {
      clock.clearTimeout(t)
      signal?.removeEventListener('abort', done)
      resolve()
    }
    signal?.addEventListener('abort', done, { once: true })
  })
}
