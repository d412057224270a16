import { readFileSync } from 'node:fs'
import { createSecureContext, type TLSSocket, type TlsOptions } from 'node:tls'
import { EdgebusError } from '../core/errors.ts'
import type { EdgebusConfig } from '../config/schema.ts'

/**
 * The TLS settings of the listeners (MQTT over TLS, HTTPS/WSS), read from the files named in the
 * config. Read again on SIGHUP: a renewed certificate is served to new connections without a
 * restart, and a broken one is refused with the old one kept.
 */
export function readTlsOptions(tls: EdgebusConfig['tls']): TlsOptions {
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

/** The user a verified client certificate names (its subject CN), or null. */
export function certificateUser(socket: TLSSocket): string | null {
  if (!socket.authorized) return null
  const cn = socket.getPeerCertificate()?.subject?.CN
  const name = Array.isArray(cn) ? cn[0] : cn
  return typeof name === 'string' && name !== '' ? name : null
}
