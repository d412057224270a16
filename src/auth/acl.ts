import { EdgebusError } from '../core/errors.ts'
import type { AclConfig, AclRule } from './acl-config.ts'
import { coversLevels, overlapsLevels } from './filter-relation.ts'

/**
 * The ACL engine (semantics in ACL.md). AccessControl compiles a client's rules once, when it
 * connects; ClientAccess answers per topic. canReceive runs for every delivered message, so it is a
 * Map lookup on a hit and an allocation-free scan of the rules on a miss, and a server without an
 * `acl` section hands every client the shared ALLOW_ALL, which does no work at all.
 */

const DOLLAR = 36 // '$'

/** One rule with its placeholders filled in for one client. */
class CompiledRule {
  constructor(
    readonly allow: boolean,
    /** Applies to PUBLISH. */
    readonly pub: boolean,
    /** Applies to SUBSCRIBE and to delivery. */
    readonly sub: boolean,
    readonly levels: readonly string[],
    readonly where: string,
  ) {}
}

type RuleList = readonly CompiledRule[]

/**
 * Whether a concrete topic matches filter levels, without splitting the topic (no allocation).
 * Same answers as topicMatchesFilter in src/subjects/topic.ts (a property test checks it).
 */
export function matchesLevels(levels: readonly string[], topic: string): boolean {
  const first = levels[0]
  // [MQTT-4.7.2-1] a filter starting with a wildcard does not match topics starting with '$'
  if (topic.charCodeAt(0) === DOLLAR && (first === '+' || first === '#')) return false
  const len = topic.length
  let pos = 0
  for (let i = 0; i < levels.length; i++) {
    const level = levels[i] as string
    if (level === '#') return true // this level and all below, or none: 'a/#' matches 'a' [MQTT-4.7.1-2]
    if (pos > len) return false // the topic has fewer levels than the filter
    let end = topic.indexOf('/', pos)
    if (end === -1) end = len
    if (level !== '+' && (end - pos !== level.length || !topic.startsWith(level, pos))) return false
    pos = end + 1
  }
  return pos === len + 1 // every level of the topic was consumed
}

/**
 * A placeholder's value as one level, or null when it cannot be one: a '+', '#', '/' or NUL would
 * turn a client-chosen id into a wildcard or a different path, an empty value would match the empty
 * level, and a leading '$' in the first level would reach '$' topics that no wildcard rule reaches.
 */
function placeholderLevel(value: string | null, index: number): string | null {
  if (value === null || value.length === 0) return null
  for (let i = 0; i < value.length; i++) {
    const c = value.charCodeAt(i)
    if (c === 0x2b || c === 0x23 || c === 0x2f || c === 0) return null // + # / NUL
  }
  if (index === 0 && value.charCodeAt(0) === DOLLAR) return null
  return value
}

/** Compiles rules for one client; a rule whose placeholder cannot be filled is left out (it matches nothing). */
function compileRules(rules: readonly AclRule[], user: string | null, clientId: string): CompiledRule[] {
  const out: CompiledRule[] = []
  next: for (const rule of rules) {
    const levels = rule.filter.split('/')
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i]
      if (level !== '%u' && level !== '%c') continue
      const value = placeholderLevel(level === '%u' ? user : clientId, i)
      if (value === null) continue next
      levels[i] = value
    }
    out.push(new CompiledRule(rule.allow, rule.access !== 'sub', rule.access !== 'pub', levels, rule.where))
  }
  return out
}

function usesClientId(rules: readonly AclRule[]): boolean {
  return rules.some((r) => r.filter.split('/').includes('%c'))
}

// Decision cache bits: a topic's publish and receive answers share one Map entry.
const PUB_KNOWN = 1
const PUB_OK = 2
const RECV_KNOWN = 4
const RECV_OK = 8

export interface AccessOptions {
  /** Cached topics of a rule set shared by all clients of one user (no %c, no token restriction). */
  readonly sharedCacheSize?: number
  /** Cached topics of a client's own rule set (rules with %c, or a token restriction). */
  readonly clientCacheSize?: number
  /** Longer topics are decided every time: a cache of 64 KB topics would be a memory attack. */
  readonly maxCachedTopicLength?: number
  /** Search steps a SUBSCRIBE check may take before it gives up and accepts (see canSubscribe). */
  readonly subscribeBudget?: number
}

const DEFAULTS = { sharedCacheSize: 1024, clientCacheSize: 64, maxCachedTopicLength: 256, subscribeBudget: 10_000 }

export type AclAction = 'pub' | 'sub'

export interface AclExplanation {
  readonly allowed: boolean
  /** The rule that decided (`auth.acl.users.alice[0]`), or null: no rule matched (default deny) or no ACL. */
  readonly rule: string | null
}

/**
 * What one client may do. All clients of a user share one instance when their rules do not use
 * %c and no token narrows them; otherwise each client has its own.
 */
export class ClientAccess {
  /** True when every answer is yes: callers may skip the checks altogether. */
  readonly unrestricted: boolean
  readonly user: string | null
  /** Every list must allow (a token's `acl` is a second list that can only narrow the first). */
  readonly #lists: readonly RuleList[]
  readonly #cache: Map<string, number> | null
  readonly #cacheSize: number
  readonly #maxTopic: number
  readonly #budget: number

  constructor(user: string | null, lists: readonly RuleList[], cacheSize: number, options: AccessOptions = {}) {
    this.user = user
    this.#lists = lists
    this.unrestricted = lists.length === 0
    this.#cacheSize = cacheSize
    this.#cache = this.unrestricted || cacheSize <= 0 ? null : new Map()
    this.#maxTopic = options.maxCachedTopicLength ?? DEFAULTS.maxCachedTopicLength
    this.#budget = options.subscribeBudget ?? DEFAULTS.subscribeBudget
  }

  /** May the client PUBLISH to this concrete topic? */
  canPublish(topic: string): boolean {
    if (this.unrestricted) return true
    const cache = this.#cache
    const bits = cache === null ? undefined : cache.get(topic)
    if (bits !== undefined && (bits & PUB_KNOWN) !== 0) return (bits & PUB_OK) !== 0
    const ok = this.#decide(topic, false)
    this.#remember(topic, (bits ?? 0) | (ok ? PUB_KNOWN | PUB_OK : PUB_KNOWN))
    return ok
  }

  /** May a message on this concrete topic be delivered to the client? Called per delivery. */
  canReceive(topic: string): boolean {
    if (this.unrestricted) return true
    const cache = this.#cache
    const bits = cache === null ? undefined : cache.get(topic)
    if (bits !== undefined && (bits & RECV_KNOWN) !== 0) return (bits & RECV_OK) !== 0
    const ok = this.#decide(topic, true)
    this.#remember(topic, (bits ?? 0) | (ok ? RECV_KNOWN | RECV_OK : RECV_KNOWN))
    return ok
  }

  /**
   * May the client SUBSCRIBE to this filter? No when no topic the filter can match could be
   * delivered (SUBACK 0x87 / 0x80); yes otherwise, and each delivery is then checked by canReceive.
   * `$share/{group}/{filter}` is judged by its filter. Exact, except when the search runs over its
   * budget: then yes, which is safe because deliveries are still checked one by one.
   */
  canSubscribe(filter: string): boolean {
    if (this.unrestricted) return true
    const levels = innerFilter(filter).split('/')
    const open: RuleList[] = []
    for (const list of this.#lists) {
      const quick = quickSubscribe(list, levels)
      if (quick === false) return false
      if (quick === null) open.push(list) // undecided: the rules split the filter
    }
    if (open.length === 0) return true
    return someTopicAllowed(levels, open, this.#budget) !== false
  }

  /** Which rule decides an action on a topic (not cached; for logs and error messages). */
  explain(action: AclAction, topic: string): AclExplanation {
    if (this.unrestricted) return { allowed: true, rule: null }
    let rule: string | null = null
    for (const list of this.#lists) {
      const r = firstMatch(list, topic, action === 'sub')
      if (r === null || !r.allow) return { allowed: false, rule: r === null ? null : r.where }
      rule = r.where
    }
    return { allowed: true, rule }
  }

  /** The EACL_DENIED error for a refused action, naming the rule and the fix. */
  denied(action: AclAction | 'subscribe', subject: string): EdgebusError {
    const who = this.user === null ? 'anonymous clients' : `user ${JSON.stringify(this.user)}`
    const verb = action === 'pub' ? 'publish to' : action === 'sub' ? 'receive' : 'subscribe to'
    const where = this.user === null ? 'auth.acl.anonymous' : `auth.acl.users.${this.user} (or auth.acl.default)`
    let why = `no ACL rule allows it (add an allow rule under ${where})`
    if (action !== 'subscribe') {
      const e = this.explain(action, subject)
      if (e.rule !== null) why = `denied by the rule at ${e.rule}`
    } else {
      why = `no topic that filter can match may be received; add an allow "sub" rule under ${where}`
    }
    return new EdgebusError('EACL_DENIED', `${who} may not ${verb} ${JSON.stringify(subject)}: ${why}`, { user: this.user, action, subject })
  }

  #decide(topic: string, read: boolean): boolean {
    const lists = this.#lists
    for (let i = 0; i < lists.length; i++) {
      const r = firstMatch(lists[i] as RuleList, topic, read)
      if (r === null || !r.allow) return false // no matching rule: default deny
    }
    return true
  }

  #remember(topic: string, bits: number): void {
    const cache = this.#cache
    if (cache === null || topic.length > this.#maxTopic) return
    // Bounded by clearing: simpler than LRU, and a working set under the bound stays warm.
    if (cache.size >= this.#cacheSize && !cache.has(topic)) cache.clear()
    cache.set(topic, bits)
  }
}

/** The rule that decides, first match wins among the rules for the action. */
function firstMatch(list: RuleList, topic: string, read: boolean): CompiledRule | null {
  for (let i = 0; i < list.length; i++) {
    const r = list[i] as CompiledRule
    if ((read ? r.sub : r.pub) && matchesLevels(r.levels, topic)) return r
  }
  return null
}

/** The one object every client gets when no ACL is configured. */
export const ALLOW_ALL: ClientAccess = new ClientAccess(null, [], 0)

/** The filter of a `$share/{group}/{filter}` subscription [MQTT-4.8.2]; others unchanged. */
function innerFilter(filter: string): string {
  if (!filter.startsWith('$share/')) return filter
  const slash = filter.indexOf('/', 7)
  return slash === -1 ? filter : filter.slice(slash + 1)
}

/**
 * The precise cheap case: the first read rule that overlaps the filter decides it whole when it
 * covers the filter (earlier rules match none of its topics, this one matches them all). True or
 * false when decided, null when the rules split the filter.
 */
function quickSubscribe(list: RuleList, filter: readonly string[]): boolean | null {
  for (const r of list) {
    if (!r.sub || !overlapsLevels(r.levels, filter)) continue
    return coversLevels(r.levels, filter) ? r.allow : null
  }
  return false // no rule reaches any of its topics: default deny
}

// Search states of a filter (the subscription's or a rule's) after a prefix of the topic.
const DEAD = 0
const ALIVE = 1 // matched every level so far, at the same depth as the topic
const HASH = 2 // reached its '#': matches any continuation

/**
 * Whether some topic matched by `filter` is allowed by every list: a depth-first search over topics
 * built level by level. At each level only the literals some live rule names, plus one "fresh" value
 * no rule names, can lead to different answers, so the search is finite; a memo of dead-end states
 * keeps it small. Returns null when it takes more than `budget` steps.
 */
export function someTopicAllowed(filter: readonly string[], lists: readonly RuleList[], budget: number): boolean | null {
  // pattern 0 is the filter, then every read rule of every list, in order
  const patterns: Array<readonly string[]> = [filter]
  const owner: number[] = [-1]
  const allow: boolean[] = [false]
  lists.forEach((list, li) => {
    for (const r of list) if (r.sub) { patterns.push(r.levels); owner.push(li); allow.push(r.allow) }
  })
  const n = patterns.length
  const failed = new Set<string>()
  let steps = 0

  /** At the end of a topic of `depth` levels: does pattern j match it? */
  const endMatch = (state: Uint8Array, j: number, depth: number): boolean => {
    const s = state[j]
    if (s === HASH) return true
    if (s !== ALIVE) return false
    const p = patterns[j] as readonly string[]
    return p.length === depth || (p.length === depth + 1 && p[depth] === '#')
  }

  const allowedAtEnd = (state: Uint8Array, depth: number): boolean => {
    for (let li = 0; li < lists.length; li++) {
      let decided = false
      for (let j = 1; j < n; j++) {
        if (owner[j] !== li || !endMatch(state, j, depth)) continue
        if (!allow[j]) return false
        decided = true
        break
      }
      if (!decided) return false
    }
    return true
  }

  const visit = (state: Uint8Array, depth: number, emptyTopic: boolean): boolean => {
    if (++steps > budget) throw SEARCH_BUDGET
    const key = `${depth}${emptyTopic ? '!' : ':'}${state.join('')}`
    if (failed.has(key)) return false
    // end the topic here (the empty topic '' is not a topic [MQTT-4.7.3-1])
    if (depth > 0 && !emptyTopic && endMatch(state, 0, depth) && allowedAtEnd(state, depth)) return true
    const f = patterns[0] as readonly string[]
    let anyAlive = false
    for (let j = 1; j < n; j++) if (state[j] === ALIVE) { anyAlive = true; break }
    // the filter must allow one more level; past every rule's end the answers no longer change
    const canExtend = state[0] === HASH ? anyAlive : state[0] === ALIVE && f.length > depth
    if (canExtend) {
      const fLevel = state[0] === ALIVE ? f[depth] as string : '#'
      const candidates: Array<string | null> = [] // null: a fresh value no rule names
      if (fLevel !== '+' && fLevel !== '#') {
        candidates.push(fLevel)
      } else {
        for (let j = 1; j < n; j++) {
          const p = patterns[j] as readonly string[]
          const l = p[depth]
          if (state[j] !== ALIVE || l === undefined || l === '+' || l === '#' || candidates.includes(l)) continue
          // [MQTT-4.7.2-1] the filter's leading wildcard cannot match a '$' first level
          if (depth === 0 && l.charCodeAt(0) === DOLLAR) continue
          candidates.push(l)
        }
        candidates.push(null)
      }
      for (const c of candidates) {
        const next = step(state, depth, c)
        if (next[0] !== DEAD && visit(next, depth + 1, depth === 0 && c === '')) return true
      }
    }
    failed.add(key)
    return false
  }

  const step = (state: Uint8Array, depth: number, c: string | null): Uint8Array => {
    const next = new Uint8Array(n)
    const dollar = depth === 0 && c !== null && c.charCodeAt(0) === DOLLAR
    for (let j = 0; j < n; j++) {
      const s = state[j]
      if (s !== ALIVE) { next[j] = s as number; continue }
      const l = (patterns[j] as readonly string[])[depth]
      if (l === undefined) next[j] = DEAD // the pattern ended: it cannot match a longer topic
      else if (l === '#') next[j] = dollar ? DEAD : HASH
      else if (l === '+') next[j] = dollar ? DEAD : ALIVE
      else next[j] = c === l ? ALIVE : DEAD
    }
    return next
  }

  try {
    return visit(new Uint8Array(n).fill(ALIVE), 0, false)
  } catch (err) {
    if (err === SEARCH_BUDGET) return null
    throw err
  }
}

const SEARCH_BUDGET = Symbol('search budget')

/** The ACL of a server: rules from the config, compiled per client on connect. */
export class AccessControl {
  #acl: AclConfig | null
  readonly #options: AccessOptions
  /** Rule sets shared by all clients of a user (key: user name, or ANON). */
  readonly #shared = new Map<string, ClientAccess>()
  /** Users' rules set at run time (runtime-users.ts): they replace the config's rules of that user. */
  #runtime: ReadonlyMap<string, readonly AclRule[]> = new Map()

  constructor(acl: AclConfig | null, options: AccessOptions = {}) {
    this.#acl = acl
    this.#options = options
  }

  /** False when there is no `acl` section and no run-time rules: ALLOW_ALL for everyone (token restrictions still apply). */
  get enabled(): boolean {
    return this.#acl !== null || this.#runtime.size > 0
  }

  /** The config file's `acl` read again (SIGHUP): accesses handed out from now on follow it. */
  setConfigRules(acl: AclConfig | null): void {
    this.#acl = acl
    this.#shared.clear()
  }

  /** New run-time rules: accesses handed out from now on follow them (callers re-check live clients). */
  setRuntimeRules(rules: ReadonlyMap<string, readonly AclRule[]>): void {
    this.#runtime = rules
    this.#shared.clear()
  }

  /**
   * The access of one client, by the user it authenticated as (null: anonymous), its client id
   * (for %c) and the extra rules of its token, if any.
   */
  forClient(user: string | null, clientId: string, restrict: readonly AclRule[] | null = null): ClientAccess {
    const acl = this.#acl
    const own = user === null ? undefined : this.#runtime.get(user)
    // without an acl section a user is unrestricted, unless rules were given to it at run time
    if (acl === null && own === undefined && restrict === null) return ALLOW_ALL
    const rules = user === null ? acl?.anonymous ?? null
      : acl === null ? own ?? null
        : [...(own ?? acl.users[user] ?? []), ...acl.default]
    const shareable = restrict === null && rules !== null && !usesClientId(rules)
    const key = user ?? ANON
    if (shareable) {
      const known = this.#shared.get(key)
      if (known !== undefined) return known
    }
    const lists: RuleList[] = []
    if (rules !== null) lists.push(compileRules(rules, user, clientId))
    if (restrict !== null) lists.push(compileRules(restrict, user, clientId))
    const o = this.#options
    const access = new ClientAccess(user, lists, shareable ? o.sharedCacheSize ?? DEFAULTS.sharedCacheSize : o.clientCacheSize ?? DEFAULTS.clientCacheSize, o)
    if (shareable) {
      // token subjects are not limited to the configured users: keep the map bounded
      if (this.#shared.size >= 10_000) this.#shared.clear()
      this.#shared.set(key, access)
    }
    return access
  }
}

// Not a valid user name (checkUserName refuses NUL), so it cannot collide with one.
const ANON = '\u0000anonymous'
