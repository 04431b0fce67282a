// The FLOOR server of the benchmark: a trivial node:http server in its own process (one process per
// server, like the three Zerohop nodes). It reads the request body and answers every POST with a
// fixed ~1 KB body. Started by run.ts with fork() (plain node, no tsx); it reports its port over IPC
// and exits when the parent goes away.
import http from 'node:http'
import { randomBytes } from 'node:crypto'

const BODY_BYTES = Number(process.env.FLOOR_BODY_BYTES ?? 1024)
const body = randomBytes(BODY_BYTES)
const headers = { 'content-type': 'application/x-msgpack', 'content-length': body.length }

const server = http.createServer({ keepAliveTimeout: 65_000, requestTimeout: 60_000 }, (req, res) => {
  req.on('data', () => {})
  req.on('end', () => {
    res.writeHead(200, headers)
    res.end(body)
  })
})

server.listen(0, '127.0.0.1', () => {
  process.send?.({ port: server.address().port })
})

// Never outlive the benchmark: the IPC channel closes when run.ts exits, however it exits.
process.on('disconnect', () => process.exit(0))
