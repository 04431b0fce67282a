// Throwaway TLS material for tests, made at test time with the system's `openssl` in a directory the
// caller owns (and removes): a CA, and for each name a certificate it signed for 127.0.0.1 and
// localhost, good as server and as client certificate. No key is ever committed.
import { execFile } from 'node:child_process'
import { writeFile } from 'node:fs/promises'
import path from 'node:path'
import { promisify } from 'node:util'

const run = promisify(execFile)

export interface Certs {
  /** PEM file of the CA certificate. */
  ca: string
  /** Per name: PEM files of its certificate and key. */
  nodes: Record<string, { cert: string; key: string }>
}

const EC = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes']

async function openssl(...args: string[]): Promise<void> {
  await run('openssl', args, { timeout: 20_000 })
}

/** A CA named `caName` in `dir` and one certificate per name, signed by it. */
export async function makeCerts(dir: string, names: string[], caName = 'zerohop-test-ca'): Promise<Certs> {
  const ca = path.join(dir, 'ca.pem')
  const caKey = path.join(dir, 'ca.key')
  await openssl('req', '-x509', ...EC, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=${caName}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign')
  const ext = path.join(dir, 'leaf.ext')
  await writeFile(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth,clientAuth\n')
  const nodes: Certs['nodes'] = {}
  await Promise.all(names.map(async (name) => {
    const key = path.join(dir, `${name}.key`)
    const csr = path.join(dir, `${name}.csr`)
    const cert = path.join(dir, `${name}.pem`)
    await openssl('req', ...EC, '-keyout', key, '-out', csr, '-subj', `/CN=${name}`)
    await openssl('x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-set_serial', String(1000 + names.indexOf(name)), '-days', '2', '-extfile', ext, '-out', cert)
    nodes[name] = { cert, key }
  }))
  return { ca, nodes }
}
