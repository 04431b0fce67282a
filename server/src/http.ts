// The node's node:http adapter: reads the body within the limit, hands the request to the node's
// request handler (see routes/), and writes the reply. Connections of a stopping node are closed.
import http from 'node:http'
import { ErrorCodes } from '@zerohop/core'
import type { Logger } from 'pino'
import { bad, errorReply, type RequestHandler } from './routes/request.js'

export interface HttpOptions {
  handler: RequestHandler
  maxBodyBytes: number
  log: Logger
  stopping: () => boolean
}

function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const declared = Number(req.headers['content-length'])
    if (Number.isFinite(declared) && declared > limit) {
      reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body of ${declared} bytes is over the limit of ${limit} (--max-body-bytes)`))
      return
    }
    const chunks: Buffer[] = []
    let size = 0
    req.on('data', (c: Buffer) => {
      size += c.length
      if (size > limit) {
        reject(bad(413, ErrorCodes.BODY_TOO_LARGE, `request body is over the limit of ${limit} bytes (--max-body-bytes)`))
        req.pause()
        return
      }
      chunks.push(c)
    })
    req.on('end', () => resolve(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)))
    req.on('error', reject)
    req.on('aborted', () => reject(bad(400, ErrorCodes.BAD_BODY, 'request body was cut off')))
  })
}

const EMPTY: Buffer = Buffer.alloc(0)

export function createHttpServer(o: HttpOptions): http.Server {
  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = req.url ?? '/'
    const q = url.indexOf('?')
    const arrivedStopping = o.stopping()
    let received: Buffer = EMPTY
    let bodyError: unknown
    try {
      received = await readBody(req, o.maxBodyBytes)
    } catch (err) {
      bodyError = err
    }
    let reply
    try {
      reply = await o.handler({
        method: req.method ?? 'GET',
        path: q < 0 ? url : url.slice(0, q),
        query: new URLSearchParams(q < 0 ? '' : url.slice(q + 1)),
        headers: req.headers,
        body: received,
        arrivedStopping,
        bodyError,
      })
    } catch (err) {
      reply = errorReply(err, o.log)
    }
    if (res.headersSent) return void res.destroy()
    const body = reply.body === undefined ? undefined : typeof reply.body === 'string' ? Buffer.from(reply.body) : reply.body
    const headers: Record<string, string | number> = { ...reply.headers, 'content-length': body?.byteLength ?? 0 }
    // A request that started before shutdown still gets its answer, but its connection must not go
    // back to keep-alive: stop() waits for every connection to close (up to its grace period). A body
    // over the limit was not read: the connection cannot be reused either.
    if (o.stopping() || reply.status === 413) headers.connection = 'close'
    res.writeHead(reply.status, headers)
    res.end(body)
    // Drain what is left of a rejected body so the connection stays usable.
    if (!req.complete && headers.connection === undefined) req.resume()
  }

  const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, (req, res) => {
    handle(req, res).catch((err) => {
      o.log.error({ err }, 'could not answer a request')
      res.destroy()
    })
  })
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
    if (!socket.writable) return socket.destroy(err)
    const timeout = err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
    const body = JSON.stringify({ error: timeout
      ? { code: ErrorCodes.REQUEST_TIMEOUT, message: 'the request was not received in full before the request timeout' }
      : { code: ErrorCodes.BAD_BODY, message: 'malformed HTTP request' } })
    const status = timeout ? '408 Request Timeout' : '400 Bad Request'
    socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`)
  })
  return server
}
