import { execFileSync } from 'node:child_process'
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export interface TestPki {
  dir: string
  ca: string
  serverCert: string
  serverKey: string
  /** A client certificate per common name: { cert, key } file paths. */
  client(cn: string): { cert: string; key: string }
  read(path: string): Buffer
}

/**
 * A throwaway CA made with openssl for one test file: a server certificate for 127.0.0.1 /
 * localhost, and client certificates (mTLS) signed by the same CA on demand.
 */
export function makeTestPki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'edgebus-pki-'))
  const p = (name: string): string => join(dir, name)
  const ssl = (...args: string[]): void => { execFileSync('openssl', args, { stdio: 'pipe' }) }
  ssl('req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=edgebus test CA',
    '-keyout', p('ca.key'), '-out', p('ca.pem'))
  const sign = (name: string, cn: string, ext: string): void => {
    ssl('req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-subj', `/CN=${cn}`, '-keyout', p(`${name}.key`), '-out', p(`${name}.csr`))
    writeFileSync(p(`${name}.ext`), ext)
    ssl('x509', '-req', '-in', p(`${name}.csr`), '-CA', p('ca.pem'), '-CAkey', p('ca.key'), '-CAcreateserial', '-days', '2', '-extfile', p(`${name}.ext`), '-out', p(`${name}.pem`))
  }
  sign('server', 'localhost', 'subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n')
  return {
    dir,
    ca: p('ca.pem'),
    serverCert: p('server.pem'),
    serverKey: p('server.key'),
    client(cn) {
      const name = `client-${cn}`
      sign(name, cn, 'extendedKeyUsage=clientAuth\n')
      return { cert: p(`${name}.pem`), key: p(`${name}.key`) }
    },
    read: (path) => readFileSync(path),
  }
}
