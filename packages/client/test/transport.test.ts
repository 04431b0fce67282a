// The undici transport against a local server that never answers: deadlines hold even for requests
// that wait in the pool's queue (undici starts its own timeouts only once a request is sent).
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { UndiciTransport } from '../src/transport.js'

let server: http.Server
let url: string
const held: http.ServerResponse[] = []

beforeAll(async () => {
  server = http.createServer((_req, res) => void held.push(res))
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  for (const res of held) res.destroy()
  server.closeAllConnections()
  await new Promise((r) => server.close(r))
})

describe('UndiciTransport', () => {
  it('ends queued requests at their deadline, not one connection timeout after another', async () => {
    const transport = new UndiciTransport({ connections: 2 })
    try {
      const t0 = Date.now()
      const ends = await Promise.all(
        Array.from({ length: 6 }, () =>
          transport
            .post(url, '/x', new Uint8Array([1]), { timeoutMs: 300, deadline: () => AbortSignal.timeout(300) })
            .then(() => 'answered', () => Date.now() - t0),
        ),
      )
      for (const e of ends) {
        expect(typeof e).toBe('number')
        // Sent or queued, every request is over within its deadline plus undici's timer granularity.
        expect(e as number).toBeLessThan(1500)
      }
    } finally {
      await transport.close()
    }
  })

  it('refuses new requests once closed', async () => {
    const transport = new UndiciTransport()
    await transport.close()
    await expect(transport.post(url, '/x', new Uint8Array([1]))).rejects.toMatchObject({ code: 'ZH_CLIENT_CLOSED' })
  })
})
