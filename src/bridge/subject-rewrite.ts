import { EdgebusError } from '../core/errors.ts'
import { detectSyntax, toMqttFilter, tokenToLevel } from '../subjects/mqtt-map.ts'

/**
 * A bridge rule's subject rewrite: a filter (either syntax) and a template for the subject on the
 * other side. The template may use the filter's wildcard captures: `{1}`, `{2}`, ... for the
 * single-level wildcards ('+' or '*') in order, `{#}` (or `{>}`) for the levels the multi-level
 * one ('#' or '>') matched. Without a template the subject stays as it is. Subjects are canonical
 * MQTT inside (docs/subjects.md): a NATS-style template's tokens are read as NATS tokens.
 *
 *   new SubjectRewrite('sensors.*.temp', 'site1/{1}/temperature').apply('sensors/d7/temp')  // 'site1/d7/temperature'
 */
export class SubjectRewrite {
  /** Canonical MQTT filter. */
  readonly filter: string
  readonly #levels: readonly string[]
  /** Per template level: literal text and capture numbers; null = keep the subject. */
  readonly #template: ReadonlyArray<ReadonlyArray<string | number>> | null
  /** The template level `{#}` stands at, or -1. */
  readonly #tailAt: number

  constructor(from: string, to: string | null = null) {
    this.filter = toMqttFilter(from)
    this.#levels = this.filter.split('/')
    if (to === null) {
      this.#template = null
      this.#tailAt = -1
      return
    }
    const singles = this.#levels.filter((l) => l === '+').length
    const hasTail = this.#levels[this.#levels.length - 1] === '#'
    // the template's syntax, read with its placeholders put aside ('{1}' is neither)
    const prefixed = to.startsWith('mqtt:') || to.startsWith('nats:')
    const syntax = prefixed ? (to.slice(0, 4) as 'mqtt' | 'nats') : detectSyntax(to.replace(/\{(\d+|#|>)\}/g, 'x')).syntax
    const text = prefixed ? to.slice(5) : to
    let tailAt = -1
    const template: Array<Array<string | number>> = []
    for (const part of syntax === 'mqtt' ? text.split('/') : text.split('.')) {
      if (part === '{#}' || part === '{>}') {
        if (!hasTail) throw bad(to, `"${part}" needs a filter ending in a multi-level wildcard ('#' or '>'), and "${from}" has none`)
        if (tailAt !== -1) throw bad(to, `"${part}" may appear once`)
        tailAt = template.length
        template.push([])
        continue
      }
      const pieces: Array<string | number> = []
      let rest = part
      for (let m = /\{(\d+)\}/.exec(rest); m !== null; m = /\{(\d+)\}/.exec(rest)) {
        const n = Number(m[1])
        if (n < 1 || n > singles) throw bad(to, `"{${m[1]}}" refers to single-level wildcard ${n}, and "${from}" has ${singles}`)
        if (m.index > 0) pieces.push(rest.slice(0, m.index))
        pieces.push(n)
        rest = rest.slice(m.index + m[0].length)
      }
      if (rest !== '' || pieces.length === 0) pieces.push(rest)
      const out: Array<string | number> = []
      for (const p of pieces) {
        if (typeof p === 'number') { out.push(p); continue }
        const wild = syntax === 'mqtt' ? /[+#{}]/.test(p) : /[*>{}]/.test(p) || p === ''
        if (wild) throw bad(to, `"${part}" is not a subject level or a capture such as {1} or {#}`)
        out.push(syntax === 'mqtt' ? p : tokenToLevel(p))
      }
      template.push(out)
    }
    this.#template = template
    this.#tailAt = tailAt
  }

  /** The rewritten subject (canonical MQTT), or null when `topic` does not match the filter. */
  apply(topic: string): string | null {
    const f = this.#levels
    // [MQTT-4.7.2-1] a leading wildcard does not match a topic starting with '$'
    if ((f[0] === '+' || f[0] === '#') && topic.charCodeAt(0) === 0x24) return null
    const levels = topic.split('/')
    const caps: string[] = []
    let tail: string[] | null = null
    for (let i = 0; i < f.length; i++) {
      const fl = f[i] as string
      if (fl === '#') {
        tail = levels.slice(i) // '#' also matches its parent level: then the tail is empty
        break
      }
      const tl = levels[i]
      if (tl === undefined) return null
      if (fl === '+') caps.push(tl)
      else if (fl !== tl) return null
    }
    if (tail === null && levels.length !== f.length) return null
    if (this.#template === null) return topic
    const out: string[] = []
    for (let i = 0; i < this.#template.length; i++) {
      if (i === this.#tailAt) {
        for (const l of tail as string[]) out.push(l)
        continue
      }
      let s = ''
      for (const p of this.#template[i] as ReadonlyArray<string | number>) s += typeof p === 'number' ? caps[p - 1] : p
      out.push(s)
    }
    return out.length === 0 ? topic : out.join('/')
  }
}

function bad(to: string, why: string): EdgebusError {
  return new EdgebusError('EBRIDGE_INVALID', `rewrite "${to}": ${why}`, { to })
}
