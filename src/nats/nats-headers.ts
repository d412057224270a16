/**
 * NATS headers (HPUB/HMSG): a block `NATS/1.0[ status[ description]]\r\n(Name: value\r\n)*\r\n`,
 * MIME-like ("Client Protocol", HPUB). Inside edgebus they are MQTT 5 user properties, one pair per
 * header line in order, so an MQTT 5 subscriber sees them and an MQTT 5 publisher's user
 * properties reach NATS subscribers as headers.
 */

export type UserProperties = Record<string, string | string[]>

export interface NatsHeaderBlock {
  /** The status code of the version line ('503' for no responders), or null. */
  readonly status: string | null
  readonly pairs: ReadonlyArray<readonly [string, string]>
}

const PREFIX = 'NATS/1.0'

/** Parses a header block; null when it is not one. */
export function parseHeaders(block: Buffer): NatsHeaderBlock | null {
  const text = block.toString('utf8')
  if (!text.startsWith(PREFIX)) return null
  const lines = text.split('\r\n')
  const first = (lines[0] as string).slice(PREFIX.length).trim()
  const status = first === '' ? null : (first.split(' ')[0] as string)
  const pairs: Array<[string, string]> = []
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string
    if (line === '') continue
    const colon = line.indexOf(':')
    if (colon <= 0) return null
    pairs.push([line.slice(0, colon).trim(), line.slice(colon + 1).trim()])
  }
  return { status, pairs }
}

/** Header pairs as MQTT 5 user properties (a repeated name becomes a list, in order). */
export function headersToUserProperties(pairs: ReadonlyArray<readonly [string, string]>): UserProperties {
  const out: UserProperties = {}
  for (const [k, v] of pairs) {
    const had = out[k]
    if (had === undefined) out[k] = v
    else if (Array.isArray(had)) had.push(v)
    else out[k] = [had, v]
  }
  return out
}

/** MQTT 5 user properties as a header block; null when there are none. */
export function userPropertiesToHeaders(props: UserProperties | undefined, status: string | null = null): Buffer | null {
  let text = status === null ? PREFIX + '\r\n' : `${PREFIX} ${status}\r\n`
  let any = status !== null
  if (props !== undefined) {
    for (const k in props) {
      const v = props[k] as string | string[]
      // CR and LF would end the line: a header cannot carry them
      const name = clean(k)
      if (name === '') continue
      if (Array.isArray(v)) for (const x of v) text += `${name}: ${clean(x)}\r\n`
      else text += `${name}: ${clean(v)}\r\n`
      any = true
    }
  }
  return any ? Buffer.from(text + '\r\n') : null
}

function clean(s: string): string {
  return s.includes('\r') || s.includes('\n') ? s.replace(/[\r\n]+/g, ' ') : s
}

/** `NATS/1.0 503\r\n\r\n`: no one is subscribed to the subject a request went to. */
export const NO_RESPONDERS = Buffer.from(`${PREFIX} 503\r\n\r\n`)
