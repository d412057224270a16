import { readFileSync } from 'node:fs'
import type { TlsOptions } from 'node:tls'
import { EdgebusError } from '../core/errors.ts'
import type { EdgebusConfig } from '../config/schema.ts'

/**
 * The TLS settings of the listeners (MQTT over TLS, HTTPS/WSS), read from the files named in the
 * config (loaded only when TLS is configured: node:tls and node:https cost ~1.5 MB of RSS). Read again on SIGHUP: a renewed certificate is served to new connections without a
 * restart, and a broken one is refused with the old one kept.
 */
export async function readTlsOptions(tls: EdgebusConfig['tls']): Promise<TlsOptions> {
  // a dynamic import: bundled, a static one would load node:tls at start even without TLS
  const { createSecureContext } = await import('node:tls')
  const read = (key: string, path: string): Buffer => {
    try {
      return readFileSync(path)
    } catch (err) {
      throw new EdgebusError('ETLS_CONFIG', `config "tls.${key}": cannot read ${path}: ${(err as Error).message}`, { key: `tls.${key}`, path })
    }
  }
  const opts: TlsOptions = {
    cert: read('cert', tls.cert),
    key: read('key', tls.key),
    // mTLS: ask for a certificate; without requireClientCert a client may still log in with a password
    ...(tls.ca !== '' ? { ca: read('ca', tls.ca), requestCert: true, rejectUnauthorized: tls.requireClientCert } : {}),
    minVersion: 'TLSv1.2',
  }
  try {
    createSecureContext(opts) // a key that does not match its certificate, PEM that is not PEM
  } catch (err) {
    throw new EdgebusError('ETLS_CONFIG', `config "tls.cert"/"tls.key" (${tls.cert}, ${tls.key}): ${(err as Error).message}; give the PEM certificate chain and its private key`, { key: 'tls.cert' })
  }
  return opts
}
