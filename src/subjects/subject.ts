import { EdgebusError } from '../core/errors.ts'

/**
 * NATS-style subjects: tokens separated by '.', '*' matches one token, '>' the rest (last token only).
 * A token may carry the escapes of docs/subjects.md, so that every MQTT topic has exactly one
 * NATS-style spelling and back (see mqtt-map.ts):
 *   %25 = '%'   %2E = '.'   whole token %2A = literal '*'   whole token %3E = literal '>'   whole token % = empty level
 * Any other '%' is an error, and '%25' may not be followed by '2F', '2B' or '23' (that spelling is
 * taken by the raw '/', '+', '#', which an MQTT level writes as %2F, %2B, %23).
 */

function fail(subject: string, why: string): never {
  throw new EdgebusError('ESUBJECT_INVALID', `invalid subject ${JSON.stringify(subject)}: ${why}`, { subject })
}

/** Splits and checks a NATS-style subject; returns its tokens (wildcards kept as '*' and '>'). */
export function parseNatsSubject(subject: string, allowWildcards: boolean): string[] {
  if (subject.length === 0) fail(subject, 'it is empty')
  if (subject.includes('\u0000')) fail(subject, 'it contains the null character U+0000')
  const tokens = subject.split('.')
  for (let i = 0; i < tokens.length; i++) {
    const token = tokens[i] as string
    if (token.length === 0) {
      fail(subject, `token ${i + 1} is empty; an empty MQTT level is written '%'`)
    }
    if (token === '*' || token === '>') {
      if (!allowWildcards) fail(subject, `wildcard '${token}' is only allowed in filters`)
      if (token === '>' && i !== tokens.length - 1) fail(subject, "'>' must be the last token")
      continue
    }
    checkEscapes(subject, token)
  }
  return tokens
}

const SPECIAL_TOKENS = new Set(['%', '%2A', '%3E'])

function checkEscapes(subject: string, token: string): void {
  if (SPECIAL_TOKENS.has(token)) return
  let i = token.indexOf('%')
  while (i !== -1) {
    const code = token.slice(i + 1, i + 3)
    if (code === '25') {
      const next = token.slice(i + 3, i + 5)
      if (next === '2F' || next === '2B' || next === '23') {
        fail(subject, `'%25${next}' is ambiguous: write the raw character ('/', '+' or '#') instead`)
      }
    } else if (code !== '2E') {
      fail(subject, `'%${code}' is not an escape: write '%25' for a literal '%' (escapes: %25 %2E, and whole tokens %, %2A, %3E)`)
    }
    i = token.indexOf('%', i + 3)
  }
}

/** Whether a NATS-style subject (already validated) contains wildcards. */
export function natsHasWildcard(tokens: readonly string[]): boolean {
  return tokens.some((t) => t === '*' || t === '>')
}
