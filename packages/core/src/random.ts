// Randomness reaches the logic through this interface, never through Math.random or crypto directly,
// so that a seeded simulator can run the real node and SDK and replay a run exactly (see Clock).

export interface Random {
  /** A number uniform in [0, 1). */
  next(): number
  /** `n` random bytes (identifiers such as incarnations; never key material). */
  bytes(n: number): Uint8Array
}

/** A seeded generator (mulberry32): the same seed draws the same sequence on every run and machine. */
export function seededRandom(seed: number): Random {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) | 0
    let t = Math.imul(a ^ (a >>> 15), 1 | a)
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  return {
    next,
    bytes(n) {
      const out = new Uint8Array(n)
      for (let i = 0; i < n; i++) out[i] = Math.floor(next() * 256)
      return out
    },
  }
}

/** Whether `r` implements Random (for the validation of options). */
export function isRandom(r: unknown): r is Random {
  return typeof (r as Random | null)?.next === 'function' && typeof (r as Random).bytes === 'function'
}
