import { resolve } from 'node:path'
import { EdgebusError, isEdgebusError } from '../core/errors.ts'
import { parseAclRules, type AclRule, type AuthConfig } from './acl-config.ts'
import { PasswordFile } from './password-file.ts'
import { verifyToken } from './token.ts'

/**
 * Who a client is, from what it presented: a client certificate (mTLS), an access token, a user name
 * and password, or nothing. One place decides for MQTT (TCP and WebSocket), the JSON WebSocket and
 * HTTP, so every door has the same rules (ACL.md, "Authentication").
 */

/** The MQTT user name that says "the password field is an access token". */
export const TOKEN_USERNAME = '$token'

export interface Credentials {
  readonly clientId: string
  readonly username?: string | null
  /** MQTT passwords are binary; HTTP Basic and tests give strings. */
  readonly password?: string | Buffer | null
  /** A token given outside the password field: `Authorization: Bearer`, the /ws `token` field. */
  readonly token?: string | null
  /** The common name of a client certificate the TLS layer has already verified. */
  readonly certCommonName?: string | null
}

export type AuthMethod = 'anonymous' | 'password' | 'token' | 'certificate'

export interface Identity {
  /** null: anonymous. */
  readonly user: string | null
  readonly method: AuthMethod
  /** A token's `acl` claim: rules that narrow the user's (pass to AccessControl.forClient). */
  readonly restrict: readonly AclRule[] | null
  /** When a token stops being valid (ms since the epoch), or null. */
  readonly expiresAt: number | null
}

export interface AuthenticatorOptions {
  /** Relative password file paths are resolved against it (the config file's directory); default: the working directory. */
  readonly baseDir?: string
  /** The clock for token expiry (tests pass a fake one). */
  readonly now?: () => number
}

const ANONYMOUS: Identity = Object.freeze({ user: null, method: 'anonymous', restrict: null, expiresAt: null })

export class Authenticator {
  readonly config: AuthConfig
  /** The resolved password file path, or null. */
  readonly passwordPath: string | null
  #passwords: PasswordFile | null
  /** Users added at run time (runtime-users.ts), checked after the password file. */
  #runtime: PasswordFile | null = null
  readonly #now: () => number

  private constructor(config: AuthConfig, passwordPath: string | null, passwords: PasswordFile | null, now: () => number) {
    this.config = config
    this.passwordPath = passwordPath
    this.#passwords = passwords
    this.#now = now
  }

  /** Reads the password file (EAUTH_PASSWD_FILE when it cannot be read or parsed). */
  static async create(config: AuthConfig, options: AuthenticatorOptions = {}): Promise<Authenticator> {
    const path = config.passwordFile === null ? null : resolve(options.baseDir ?? process.cwd(), config.passwordFile)
    const passwords = path === null ? null : await PasswordFile.load(path)
    return new Authenticator(config, path, passwords, options.now ?? Date.now)
  }

  /** The passwords of users added at run time: they log in as those of the password file do. */
  useRuntimePasswords(passwords: PasswordFile | null): void {
    this.#runtime = passwords
  }

  /** The users of the config's password file. */
  passwordFileUsers(): string[] {
    return this.#passwords?.users() ?? []
  }

  /** Whether the config's password file has this user (its password is changed there, not at run time). */
  inPasswordFile(user: string): boolean {
    return this.#passwords?.has(user) ?? false
  }

  /** Users in the password file (0 without one). */
  get users(): number {
    return this.#passwords?.size ?? 0
  }

  /**
   * Reads the password file again (on SIGHUP). On error the old file stays in force and the error
   * is thrown for the caller to log; connected clients are not affected either way.
   */
  async reload(): Promise<void> {
    if (this.passwordPath === null) return
    this.#passwords = await PasswordFile.load(this.passwordPath)
  }

  /**
   * The identity of a client, or EAUTH_BAD_CREDENTIALS / EAUTH_ANONYMOUS / EAUTH_TOKEN_INVALID /
   * EAUTH_TOKEN_EXPIRED. Order: certificate, token, user name and password, anonymous.
   */
  async authenticate(c: Credentials): Promise<Identity> {
    const username = c.username ?? null
    const cn = c.certCommonName ?? null
    if (cn !== null && cn !== '') {
      // mTLS: the certificate is the credential; a user name, if given, must agree with it
      if (username !== null && username !== '' && username !== cn) {
        throw new EdgebusError('EAUTH_BAD_CREDENTIALS', `client ${JSON.stringify(c.clientId)}: user name ${JSON.stringify(username)} does not match its certificate (CN=${cn}); leave the user name empty or set it to the CN`, { clientId: c.clientId, username, cn })
      }
      return { user: cn, method: 'certificate', restrict: null, expiresAt: null }
    }
    if (c.token !== undefined && c.token !== null) return this.#fromToken(c.token)
    if (username === TOKEN_USERNAME) {
      const pw = c.password ?? null
      if (pw === null || pw.length === 0) {
        throw new EdgebusError('EAUTH_TOKEN_INVALID', `client ${JSON.stringify(c.clientId)} gave user name ${TOKEN_USERNAME} without a token; put the access token in the password field`, { clientId: c.clientId })
      }
      return this.#fromToken(typeof pw === 'string' ? pw : pw.toString('utf8'))
    }
    if (username !== null && username !== '') {
      const file = this.#passwords
      const runtime = this.#runtime !== null && this.#runtime.size > 0 ? this.#runtime : null
      // the file's user first; an unknown user still costs one scrypt (on either)
      const passwords = file !== null && (file.has(username) || runtime === null || !runtime.has(username)) ? file : runtime
      if (passwords === null) {
        // Without a password file no user name can be proven: the client is anonymous, never that user.
        if (this.config.allowAnonymous) return ANONYMOUS
        throw new EdgebusError('EAUTH_BAD_CREDENTIALS', `client ${JSON.stringify(c.clientId)}: user ${JSON.stringify(username)} cannot be checked, no password file is configured; set auth.passwordFile`, { clientId: c.clientId, username })
      }
      if (await passwords.verify(username, c.password ?? '')) return { user: username, method: 'password', restrict: null, expiresAt: null }
      // one message for both cases, so a client cannot learn which user names exist
      throw new EdgebusError('EAUTH_BAD_CREDENTIALS', `client ${JSON.stringify(c.clientId)}: unknown user ${JSON.stringify(username)} or wrong password; set it with \`edgebus passwd FILE USER\``, { clientId: c.clientId, username })
    }
    if (c.password !== undefined && c.password !== null && c.password.length > 0) {
      // MQTT 5 allows a password alone; silently treating the client as anonymous would hide its mistake
      throw new EdgebusError('EAUTH_BAD_CREDENTIALS', `client ${JSON.stringify(c.clientId)} gave a password without a user name; give the user name too (or ${TOKEN_USERNAME} if the password is an access token)`, { clientId: c.clientId })
    }
    if (this.config.allowAnonymous) return ANONYMOUS
    throw new EdgebusError('EAUTH_ANONYMOUS', `client ${JSON.stringify(c.clientId)} gave no credentials and anonymous access is off; give a user name and password or a token, or set auth.allowAnonymous to true`, { clientId: c.clientId })
  }

  #fromToken(token: string): Identity {
    const secret = this.config.tokenSecret
    if (secret === null) {
      throw new EdgebusError('EAUTH_TOKEN_INVALID', 'access tokens are not enabled on this server; set auth.tokenSecret', {})
    }
    const claims = verifyToken(token, secret, this.#now())
    let restrict: AclRule[] | null = null
    if (claims.acl !== undefined) {
      try {
        restrict = parseAclRules(claims.acl, 'token.acl')
      } catch (err) {
        // a signed token with bad rules was minted wrong: refuse it rather than ignore the rules
        if (isEdgebusError(err)) throw new EdgebusError('EAUTH_TOKEN_INVALID', `the access token's acl claim is not valid: ${err.message}`, { sub: claims.sub })
        throw err
      }
    }
    return { user: claims.sub, method: 'token', restrict, expiresAt: claims.exp * 1000 }
  }
}
