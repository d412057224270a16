import { existsSync } from 'node:fs'
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { parseAclRules, type AclRule } from './acl-config.ts'
import { checkUserName, PasswordFile, removeUser, setPassword } from './password-file.ts'

const PASSWORDS = 'passwd'
const RULES = 'acl.json'

/**
 * Users and ACL rules added at run time (`edgebus user`, `edgebus acl`, /api/auth): kept beside the
 * data, in <dataDir>/auth/passwd (the password file's format, scrypt) and <dataDir>/auth/acl.json
 * (`{"alice": [rules as the config file writes them]}`); read at start and again on SIGHUP. The
 * config file's password file and ACL stay as they are: these add to them (ACL.md, "At run time").
 */
export class RuntimeUsers {
  readonly dir: string
  #passwords: PasswordFile
  /** A user's rules as given (to show them back) and compiled. */
  #rules: Map<string, { raw: unknown[]; rules: AclRule[] }>

  private constructor(dir: string, passwords: PasswordFile, rules: Map<string, { raw: unknown[]; rules: AclRule[] }>) {
    this.dir = dir
    this.#passwords = passwords
    this.#rules = rules
  }

  /**
   * Reads both files. One that is damaged (EAUTH_PASSWD_FILE, EACL_INVALID) is renamed to
   * `<name>.damaged` and told to `onDamaged`: the server starts without what it held, which can be
   * added again, and never refuses to start over it.
   */
  static async open(dir: string, onDamaged: (file: string, err: Error) => void = () => {}): Promise<RuntimeUsers> {
    const orAside = async <T>(name: string, read: () => Promise<T>): Promise<T> => {
      try {
        return await read()
      } catch (err) {
        const file = join(dir, name)
        await rename(file, `${file}.damaged`).catch(() => {})
        onDamaged(file, err as Error)
        return read()
      }
    }
    return new RuntimeUsers(dir, await orAside(PASSWORDS, () => readPasswords(dir)), await orAside(RULES, () => readRules(dir)))
  }

  get passwords(): PasswordFile {
    return this.#passwords
  }

  /** The user's run-time rules, or undefined when it has none. */
  rules(user: string): readonly AclRule[] | undefined {
    return this.#rules.get(user)?.rules
  }

  /** Every user with run-time rules, and the rules as given. */
  ruleEntries(): Array<[string, unknown[]]> {
    return [...this.#rules].map(([u, r]) => [u, r.raw])
  }

  /** Compiled rules by user, for AccessControl. */
  ruleMap(): Map<string, readonly AclRule[]> {
    return new Map([...this.#rules].map(([u, r]) => [u, r.rules]))
  }

  async setPassword(user: string, password: string): Promise<void> {
    const problem = checkUserName(user)
    if (problem !== null) throw new EdgebusError('EUSER_INVALID', `user name ${JSON.stringify(user)} is not valid: ${problem}`, { user })
    if (password.length === 0) throw new EdgebusError('EUSER_INVALID', `user ${JSON.stringify(user)}: the password is empty`, { user })
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    await setPassword(join(this.dir, PASSWORDS), user, password)
    this.#passwords = await readPasswords(this.dir)
  }

  /** Removes the user's password and rules; false when it had neither. */
  async removeUser(user: string): Promise<boolean> {
    const hadPassword = this.#passwords.has(user) && await removeUser(join(this.dir, PASSWORDS), user)
    if (hadPassword) this.#passwords = await readPasswords(this.dir)
    const hadRules = await this.removeRules(user)
    return hadPassword || hadRules
  }

  /** Sets a user's rules (checked first: EACL_INVALID names the rule). */
  async setRules(user: string, raw: unknown): Promise<void> {
    const problem = checkUserName(user)
    if (problem !== null) throw new EdgebusError('EUSER_INVALID', `user name ${JSON.stringify(user)} is not valid: ${problem}`, { user })
    const rules = parseAclRules(raw, `the rules of ${JSON.stringify(user)}`)
    const next = new Map(this.#rules)
    next.set(user, { raw: raw as unknown[], rules })
    await this.#writeRules(next)
  }

  async removeRules(user: string): Promise<boolean> {
    if (!this.#rules.has(user)) return false
    const next = new Map(this.#rules)
    next.delete(user)
    await this.#writeRules(next)
    return true
  }

  /** Reads both files again (SIGHUP, or edited by hand); on error the old ones stay in force. */
  async reload(): Promise<void> {
    const passwords = await readPasswords(this.dir)
    const rules = await readRules(this.dir)
    this.#passwords = passwords
    this.#rules = rules
  }

  async #writeRules(next: Map<string, { raw: unknown[]; rules: AclRule[] }>): Promise<void> {
    await mkdir(this.dir, { recursive: true, mode: 0o700 })
    const file = join(this.dir, RULES)
    // written whole and renamed over: a reader (SIGHUP, a crash) sees the old file or the new one
    await writeFile(`${file}.tmp`, JSON.stringify(Object.fromEntries([...next].map(([u, r]) => [u, r.raw])), null, 2) + '\n', { mode: 0o600 })
    await rename(`${file}.tmp`, file)
    this.#rules = next
  }
}

async function readPasswords(dir: string): Promise<PasswordFile> {
  const path = join(dir, PASSWORDS)
  return existsSync(path) ? PasswordFile.load(path) : PasswordFile.parse('', path)
}

async function readRules(dir: string): Promise<Map<string, { raw: unknown[]; rules: AclRule[] }>> {
  const path = join(dir, RULES)
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch {
    return new Map()
  }
  let doc: unknown
  try {
    doc = JSON.parse(text)
  } catch (err) {
    throw new EdgebusError('EACL_INVALID', `${path} is not valid JSON: ${(err as Error).message}; fix it or remove it (edgebus acl set rewrites it)`, { file: path })
  }
  if (doc === null || typeof doc !== 'object' || Array.isArray(doc)) {
    throw new EdgebusError('EACL_INVALID', `${path} must be an object of user name to rule list, like {"alice": [{"allow": "pubsub", "subject": "devices/%u/#"}]}`, { file: path })
  }
  const out = new Map<string, { raw: unknown[]; rules: AclRule[] }>()
  for (const [user, raw] of Object.entries(doc)) out.set(user, { raw: raw as unknown[], rules: parseAclRules(raw, `${path}: ${JSON.stringify(user)}`) })
  return out
}
