// Bytes that are not HTTP get a JSON 400 with a stable code, and the node keeps serving.
import net from 'node:net'
import { request } from 'undici'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { Cluster } from '../../test/harness/cluster.js'

let cluster: Cluster
beforeAll(async () => {
  cluster = await Cluster.start({ nodes: 1, n: 1 })
})
afterAll(async () => {
  await cluster?.close()
})

function rawExchange(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(bytes))
    let out = ''
    socket.on('data', (d) => (out += d.toString()))
    socket.on('end', () => resolve(out))
    socket.on('error', reject)
    socket.setTimeout(5000, () => socket.destroy(new Error('no answer')))
  })
}

it('answers a malformed HTTP request with 400 ZH_BAD_BODY and keeps serving', async () => {
  const node = cluster.nodes[0]
  const answer = await rawExchange(node.port, 'this is not http\r\n\r\n')
  expect(answer).toMatch(/^HTTP\/1\.1 400 /)
  const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))
  expect(body).toEqual({ error: { code: 'ZH_BAD_BODY', message: expect.any(String) } })
  const res = await request(`${node.url}/v1/health`)
  expect(res.statusCode).toBe(200)
  await res.body.dump()
})
