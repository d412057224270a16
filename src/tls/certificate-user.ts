import type { TLSSocket } from 'node:tls'

/** The user a verified client certificate names (its subject CN), or null. */
export function certificateUser(socket: TLSSocket): string | null {
  if (!socket.authorized) return null
  const cn = socket.getPeerCertificate()?.subject?.CN
  const name = Array.isArray(cn) ? cn[0] : cn
  return typeof name === 'string' && name !== '' ? name : null
}
