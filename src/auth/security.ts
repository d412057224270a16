import type { Logger } from '../core/log.ts'
import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import { RateLimitedLog } from '../core/rate-limited-log.ts'
import { OPEN_AUTH, type AuthConfig } from './acl-config.ts'
import { AccessControl, ALLOW_ALL, type ClientAccess } from './acl.ts'
import { Authenticator, type Credentials, type Identity } from './authenticator.ts'
import { firstUnreadable } from './stream-access.ts'
import { RuntimeUsers } from './runtime-users.ts'
import type { StreamManager } from '../stream/stream-manager.ts'

/** Who a client is and what it may do, as every protocol layer needs it. */
export interface Principal {
  identity: Identity
  access: ClientAccess
}

export interface SecurityCounters {
  authFailures: number
  /** Denials by what was denied. */
  deniedPublish: number
  deniedSubscribe: number
  deniedDelivery: number
}

/**
 * The one place MQTT, /ws and HTTP ask "who is this" and "may it": the Authenticator (password
 * file, tokens, certificates) and the ACLs, with the counters and the rate-limited log of denials.
 */
export class Security {
  readonly authenticator: Authenticator
  readonly acl: AccessControl
  readonly counters: SecurityCounters = { authFailures: 0, deniedPublish: 0, deniedSubscribe: 0, deniedDelivery: 0 }
  /** Users and rules added at run time (null: not kept, the server has no data directory for them). */
  readonly runtime: RuntimeUsers | null
  readonly #warn: RateLimitedLog

  private constructor(authenticator: Authenticator, acl: AccessControl, runtime: RuntimeUsers | null, log: Logger) {
    this.authenticator = authenticator
    this.acl = acl
    this.runtime = runtime
    this.#warn = new RateLimitedLog(log)
    this.#applyRuntime()
  }

  /** `runtimeDir`: where users and rules added at run time are kept (<dataDir>/auth). */
  static async open(config: AuthConfig, log: Logger, runtimeDir: string | null = null): Promise<Security> {
    const problem = anonymousRulesUnused(config)
    if (problem !== null) log.warn({ key: 'auth.allowAnonymous' }, problem)
    const runtime = runtimeDir === null ? null : await RuntimeUsers.open(runtimeDir, (file, err) => {
      log.error({ code: (err as EdgebusError).code, file, err: err.message }, 'run-time users or ACLs unreadable: set aside as .damaged, started without them')
    })
    return new Security(await Authenticator.create(config), new AccessControl(config.acl), runtime, log)
  }

  /** The run-time users' files changed (an API call, SIGHUP): passwords and rules in force from now on. */
  #applyRuntime(): void {
    this.authenticator.useRuntimePasswords(this.runtime?.passwords ?? null)
    this.acl.setRuntimeRules(this.runtime?.ruleMap() ?? new Map())
  }

  /**
   * Changes run-time users or rules (`change` edits this.runtime) and puts them in force. Callers
   * then re-check live connections (`reauthorize`). EUSER_AUTH_OFF on an open server: a user added
   * there could not log in (every client already may do everything) and anyone could add one.
   */
  async changeRuntime<T>(change: (runtime: RuntimeUsers) => Promise<T>): Promise<T> {
    if (this.runtime === null || this.open) {
      throw new EdgebusError('EUSER_AUTH_OFF', 'this server has no "auth" section, so every client may do everything: add one to the config file (e.g. {"auth": {"allowAnonymous": false, "tokenSecret": "…"}}) and restart, then manage users at run time')
    }
    try {
      return await change(this.runtime)
    } finally {
      this.#applyRuntime()
    }
  }

  /** Reads the run-time users' files again (SIGHUP); on error the old ones stay in force and it throws. */
  async reloadRuntime(): Promise<void> {
    if (this.runtime === null) return
    await this.runtime.reload()
    this.#applyRuntime()
  }

  /** What a connected client may do now, by the identity it logged in with (after a change of rules). */
  reauthorize(p: Principal, clientId: string): Principal {
    return { identity: p.identity, access: this.acl.forClient(p.identity.user, clientId, p.identity.restrict) }
  }

  /** Whether clients must prove who they are (some credential is configured and anonymous access is off). */
  get required(): boolean {
    return !this.authenticator.config.allowAnonymous
  }

  /** True when nothing is configured: every client may do everything (the fast paths skip the checks). */
  get open(): boolean {
    const c = this.authenticator.config
    return c === OPEN_AUTH || (c.passwordFile === null && c.tokenSecret === null && c.allowAnonymous && c.acl === null)
  }

  /** Authenticates; the error (EAUTH_*) is counted and logged (rate-limited) before it is thrown. */
  async identify(c: Credentials, where: string): Promise<Principal> {
    try {
      const identity = await this.authenticator.authenticate(c)
      return { identity, access: this.acl.forClient(identity.user, c.clientId, identity.restrict) }
    } catch (err) {
      this.counters.authFailures++
      const code = isEdgebusError(err) ? err.code : 'EAUTH_BAD_CREDENTIALS'
      this.#warn.warn(code, { code, where, clientId: c.clientId }, `authentication failed: ${(err as Error).message}`)
      throw err
    }
  }

  /**
   * Reading a stream (a replay, a consumer) covers every subject it can deliver: allowed when the
   * client may subscribe to all of it. The EACL_DENIED error (counted, logged) or null; an unknown
   * stream or consumer throws its own error.
   */
  streamDenial(p: Principal, streams: StreamManager, stream: string, what: { consumer: string } | { filter: string | null }, where: string): EdgebusError | null {
    if (p.access === ALLOW_ALL) return null
    const denied = firstUnreadable(p.access, streams, stream, what)
    return denied === null ? null : this.denied(p, 'sub', denied, where)
  }

  /** Counts and logs (rate-limited) a denial; returns the EACL_DENIED error to answer with. */
  denied(p: Principal, action: 'pub' | 'sub' | 'deliver', subject: string, where: string): EdgebusError {
    if (action === 'pub') this.counters.deniedPublish++
    else if (action === 'sub') this.counters.deniedSubscribe++
    else this.counters.deniedDelivery++
    const err = p.access.denied(action === 'deliver' ? 'sub' : action === 'sub' ? 'subscribe' : 'pub', subject)
    this.#warn.warn(`EACL_DENIED:${action}`, { code: 'EACL_DENIED', where, user: p.identity.user, action, subject: subject.slice(0, 200) }, err.message)
    return err
  }
}

/** The principal of everything inside the server and of clients when security is open. */
export const OPEN_PRINCIPAL: Principal = Object.freeze({
  identity: Object.freeze({ user: null, method: 'anonymous', restrict: null, expiresAt: null }) as Identity,
  access: ALLOW_ALL,
})

/**
 * `acl.anonymous` rules while anonymous clients are refused (users exist and allowAnonymous is not
 * true): the rules can never apply. A config that says two things: the warning names the fix.
 */
export function anonymousRulesUnused(config: AuthConfig): string | null {
  const rules = config.acl?.anonymous.length ?? 0
  if (rules === 0 || config.allowAnonymous) return null
  return `auth.acl.anonymous has ${rules} rule${rules === 1 ? '' : 's'} but anonymous clients are refused (users exist): ` +
    'they apply to no one; set "auth": {"allowAnonymous": true} to let clients without credentials in under them, or remove them'
}
