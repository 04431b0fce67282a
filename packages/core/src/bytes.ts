// Keys and values travel as bytes; strings are UTF-8.

const encoder = new TextEncoder()
const decoder = new TextDecoder()

export function utf8(s: string): Uint8Array {
  return encoder.encode(s)
}

export function fromUtf8(b: Uint8Array): string {
  return decoder.decode(b)
}

export function bytesEqual(a: Uint8Array | null | undefined, b: Uint8Array | null | undefined): boolean {
  if (a === b) return true
  if (!a || !b || a.byteLength !== b.byteLength) return false
  return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength))
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex')
}
