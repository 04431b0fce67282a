// The framed protocol's encoding (wire.ts): encodeFrame, and FrameReader splitting what a connection
// reads, however the bytes are cut, back into the same frames.
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { FrameReader, encodeFrame, unpack } from '../src/index.js'

describe('FrameReader', () => {
  it('gives back every frame encodeFrame wrote, in order, whatever chunks the bytes arrive in', () => {
    fc.assert(
      fc.property(fc.array(fc.oneof(fc.string(), fc.uint8Array({ maxLength: 300 }), fc.integer()), { maxLength: 20 }), fc.array(fc.integer({ min: 1, max: 64 }), { minLength: 1 }), (values, cuts) => {
        const bytes = Buffer.concat(values.flatMap((v) => encodeFrame([v])))
        const reader = new FrameReader(1 << 20)
        const got: unknown[] = []
        for (let off = 0, i = 0; off < bytes.length; i++) {
          const end = Math.min(bytes.length, off + cuts[i % cuts.length])
          const { frames, over } = reader.push(bytes.subarray(off, end))
          expect(over).toBeUndefined()
          for (const f of frames) got.push((unpack(f) as unknown[])[0])
          off = end
        }
        expect(got).toEqual(values.map((v) => (v instanceof Uint8Array ? Buffer.from(v) : v)))
        expect(reader.buffered).toBe(0)
      }),
    )
  })

  it('holds a frame begun until it is complete, and stops at a length over its limit', () => {
    const reader = new FrameReader(16)
    const [head, body] = encodeFrame('hello')
    expect(reader.push(Buffer.concat([head, body.subarray(0, 2)]))).toEqual({ frames: [] })
    expect(reader.buffered).toBe(6)
    expect(reader.push(body.subarray(2)).frames.map((f) => unpack(f))).toEqual(['hello'])
    const big = Buffer.alloc(4)
    big.writeUInt32BE(17)
    const out = reader.push(Buffer.concat([...encodeFrame(1), big, Buffer.alloc(17)]))
    expect(out.frames.map((f) => unpack(f))).toEqual([1])
    expect(out.over).toBe(17)
    expect(reader.buffered).toBe(0)
  })
})
