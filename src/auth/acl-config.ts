import { EdgebusError } from '../core/errors.ts'
import { detectSyntax, natsToMqtt } from '../subjects/mqtt-map.ts'
import { validateTopicFilter } from '../subjects/topic.ts'

/**
 * The `auth` section of the config file, checked and typed. ACL.md describes the semantics; this
 * file only reads values and names the exact key path and the fix when one is wrong.
 */

export const AclAccesses = ['pub', 'sub', 'pubsub'] as const
export type AclAccess = (typeof AclAccesses)[number]

/** A placeholder level, replaced per client: `%u` the user name, `%c` the client id. */
export const Placeholders = ['%u', '%c'] as const
export type Placeholder = (typeof Placeholders)[number]

export interface AclRule {
  readonly allow: boolean
  readonly access: AclAccess
  /** Canonical MQTT filter; whole levels `%u` / `%c` are placeholders. */
  readonly filter: string
  /** Where the rule was written (`auth.acl.users.alice[2]`), for logs and error messages. */
  readonly where: string
}

export interface AclConfig {
  /** Rules of every authenticated user, after the user's own. */
  readonly default: readonly AclRule[]
  /** The only rules of a client without a user. */
  readonly anonymous: readonly AclRule[]
  /** A user's own rules, first. A null-prototype dictionary. */
  readonly users: Readonly<Record<string, readonly AclRule[]>>
}

export interface AuthConfig {
  /** As written; relative paths are resolved by the Authenticator (see its `baseDir`). */
  readonly passwordFile: string | null
  readonly allowAnonymous: boolean
  readonly tokenSecret: string | null
  /** null: no `acl` section, every authenticated client may do everything. */
  readonly acl: AclConfig | null
}

export const MIN_TOKEN_SECRET_LENGTH = 32

const AUTH_KEYS = ['passwordFile', 'allowAnonymous', 'tokenSecret', 'acl'] as const
const ACL_KEYS = ['default', 'anonymous', 'users'] as const
const RULE_EXAMPLE = '{"allow": "pubsub", "subject": "devices/%c/#"}'

/** What `auth` means when the config file has none: open, as before issue 8. */
export const OPEN_AUTH: AuthConfig = Object.freeze({ passwordFile: null, allowAnonymous: true, tokenSecret: null, acl: null })

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v)
}

/** `auth.acl.users.alice` or, for a key that is not a plain name, `auth.acl.users["a.b"]`. */
function keyPath(base: string, key: string): string {
  return /^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) ? `${base}.${key}` : `${base}[${JSON.stringify(key)}]`
}

function unknownKey(path: string, key: string, known: readonly string[]): never {
  throw new EdgebusError('ECONFIG_UNKNOWN_KEY', `${keyPath(path, key)} is not a setting; known keys of ${path}: ${known.join(', ')}`, { key: keyPath(path, key) })
}

/** Checks the `auth` section; `undefined` (no section) is OPEN_AUTH. */
export function parseAuthConfig(value: unknown, path = 'auth'): AuthConfig {
  if (value === undefined) return OPEN_AUTH
  const invalid = (key: string, v: unknown, fix: string): never => {
    throw new EdgebusError('ECONFIG_INVALID', `${path}.${key}: ${JSON.stringify(v)} is not valid; ${fix}`, { key: `${path}.${key}`, value: key === 'tokenSecret' ? '(hidden)' : v })
  }
  if (!isObject(value)) {
    throw new EdgebusError('ECONFIG_INVALID', `${path} must be an object like {"passwordFile": "passwd", "acl": {...}}`, { key: path })
  }
  for (const key of Object.keys(value)) if (!(AUTH_KEYS as readonly string[]).includes(key)) unknownKey(path, key, AUTH_KEYS)

  const passwordFile = value.passwordFile ?? null
  if (passwordFile !== null && (typeof passwordFile !== 'string' || passwordFile.length === 0)) {
    invalid('passwordFile', passwordFile, 'use the path of a password file written by `edgebus passwd FILE USER`')
  }
  const tokenSecret = value.tokenSecret ?? null
  if (tokenSecret !== null && (typeof tokenSecret !== 'string' || tokenSecret.length < MIN_TOKEN_SECRET_LENGTH)) {
    // the secret itself is never echoed
    throw new EdgebusError('ECONFIG_INVALID', `${path}.tokenSecret is not valid; use a random string of at least ${MIN_TOKEN_SECRET_LENGTH} characters, e.g. the output of \`openssl rand -base64 48\``, { key: `${path}.tokenSecret` })
  }
  const acl = value.acl === undefined ? null : parseAclConfig(value.acl, `${path}.acl`)
  const allowAnonymous = value.allowAnonymous ?? null
  if (allowAnonymous !== null && typeof allowAnonymous !== 'boolean') invalid('allowAnonymous', allowAnonymous, 'use true or false')
  // Anonymous access stays open only while nothing says users exist: a password file, tokens or
  // per-user rules turn it off unless it is asked for.
  const usersExist = passwordFile !== null || tokenSecret !== null || (acl !== null && Object.keys(acl.users).length > 0)
  return {
    passwordFile: passwordFile as string | null,
    allowAnonymous: (allowAnonymous as boolean | null) ?? !usersExist,
    tokenSecret: tokenSecret as string | null,
    acl,
  }
}

export function parseAclConfig(value: unknown, path = 'auth.acl'): AclConfig {
  if (!isObject(value)) {
    throw new EdgebusError('EACL_INVALID', `${path} must be an object with "default", "anonymous" and/or "users", like {"users": {"alice": [${RULE_EXAMPLE}]}}`, { key: path })
  }
  for (const key of Object.keys(value)) if (!(ACL_KEYS as readonly string[]).includes(key)) unknownKey(path, key, ACL_KEYS)
  const users: Record<string, readonly AclRule[]> = Object.create(null) as Record<string, readonly AclRule[]>
  if (value.users !== undefined) {
    if (!isObject(value.users)) {
      throw new EdgebusError('EACL_INVALID', `${path}.users must be an object of user name to rule list, like {"alice": [${RULE_EXAMPLE}]}`, { key: `${path}.users` })
    }
    for (const [user, rules] of Object.entries(value.users)) {
      if (user.length === 0) throw new EdgebusError('EACL_INVALID', `${path}.users has an empty user name; use the user's name as the key`, { key: `${path}.users` })
      users[user] = parseAclRules(rules, keyPath(`${path}.users`, user))
    }
  }
  return {
    default: value.default === undefined ? [] : parseAclRules(value.default, `${path}.default`),
    anonymous: value.anonymous === undefined ? [] : parseAclRules(value.anonymous, `${path}.anonymous`),
    users,
  }
}

/** A rule list (`[{"allow": "sub", "subject": "a/#"}, ...]`), also the shape of a token's `acl` claim. */
export function parseAclRules(value: unknown, path: string): AclRule[] {
  if (!Array.isArray(value)) {
    throw new EdgebusError('EACL_INVALID', `${path} must be a list of rules, like [${RULE_EXAMPLE}]`, { key: path })
  }
  return value.map((rule, i) => parseAclRule(rule, `${path}[${i}]`))
}

export function parseAclRule(value: unknown, path: string): AclRule {
  const bad = (key: string, fix: string, v?: unknown): never => {
    const what = key === '' ? path : `${path}.${key}`
    throw new EdgebusError('EACL_INVALID', `${what}${v === undefined ? '' : ` ${JSON.stringify(v)}`} is not valid; ${fix}`, { key: what, value: v })
  }
  if (!isObject(value)) bad('', `write a rule as ${RULE_EXAMPLE}`, value)
  const rule = value as Record<string, unknown>
  for (const key of Object.keys(rule)) {
    if (key !== 'allow' && key !== 'deny' && key !== 'subject') bad(key, `a rule has only "allow" or "deny", and "subject", as in ${RULE_EXAMPLE}`)
  }
  if ((rule.allow === undefined) === (rule.deny === undefined)) bad('', `give exactly one of "allow" or "deny", as in ${RULE_EXAMPLE}`)
  const allow = rule.allow !== undefined
  const key = allow ? 'allow' : 'deny'
  const access = rule[key]
  if (typeof access !== 'string' || !(AclAccesses as readonly string[]).includes(access)) {
    bad(key, `use "pub" (publish), "sub" (subscribe and receive) or "pubsub" (both)`, access)
  }
  if (typeof rule.subject !== 'string') bad('subject', "use a subject or filter in either syntax: 'devices/%c/#' or 'devices.%c.>'", rule.subject)
  let filter: string
  try {
    filter = ruleFilter(rule.subject as string)
  } catch (err) {
    return bad('subject', `${(err as Error).message}; use a subject or filter in either syntax ('a/+/#' or 'a.*.>'), with %u and %c only as whole levels`, rule.subject)
  }
  return { allow, access: access as AclAccess, filter, where: path }
}

/**
 * A rule's subject in canonical MQTT syntax, its `%u` / `%c` levels kept. The placeholders are set
 * aside before the syntax conversion (NATS-style '%c' is not a valid escape) and put back at the same
 * level: one NATS token is always one MQTT level.
 */
export function ruleFilter(subject: string): string {
  const { syntax, text } = detectSyntax(subject)
  const sep = syntax === 'mqtt' ? '/' : '.'
  const parts = text.split(sep)
  const slots: Array<Placeholder | null> = parts.map((p) => ((Placeholders as readonly string[]).includes(p) ? (p as Placeholder) : null))
  for (const p of parts) {
    if (/%[uc]/.test(p) && !(Placeholders as readonly string[]).includes(p)) {
      throw new Error(`placeholder in ${JSON.stringify(p)} must be a whole level, as in 'devices/%c/#'`)
    }
  }
  const neutral = parts.map((p, i) => (slots[i] === null ? p : 'x')).join(sep)
  const converted = syntax === 'mqtt' ? neutral : natsToMqtt(neutral, true)
  validateTopicFilter(converted)
  const levels = converted.split('/')
  if (levels.length !== parts.length) throw new Error('internal: level count changed in conversion')
  return levels.map((l, i) => slots[i] ?? l).join('/')
}
