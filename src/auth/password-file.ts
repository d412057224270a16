import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto'
import { promises as fsp } from 'node:fs'
import { basename, dirname, join } from 'node:path'
import { EdgebusError } from '../core/errors.ts'
import { syncDirSync } from '../core/fsync.ts'

/**
 * The password file: one user per line, `user:$scrypt$ln=14,r=8,p=1$<salt base64>$<hash base64>`,
 * blank lines and `#` comments allowed. scrypt is memory-hard, so a stolen file is slow to attack;
 * it runs on libuv's thread pool, so a CONNECT storm never blocks the event loop (it queues there
 * instead, four at a time by default).
 */

export interface ScryptParams {
  /** log2 of the CPU/memory cost N. */
  readonly ln: number
  readonly r: number
  readonly p: number
}

/** N = 2^14, r = 8: 16 MiB and tens of milliseconds per check, the scrypt paper's interactive setting. */
export const DEFAULT_SCRYPT: ScryptParams = Object.freeze({ ln: 14, r: 8, p: 1 })
const SALT_BYTES = 16
const KEY_BYTES = 32
// Bounds on what a file may ask for: one line must not be able to make every CONNECT cost seconds or GBs.
const LIMITS = { ln: [10, 20], r: [1, 32], p: [1, 16] } as const

interface HashRecord {
  readonly params: ScryptParams
  readonly salt: Buffer
  readonly hash: Buffer
}

// An unknown user is checked against this, so the answer takes as long as for a wrong password and
// the timing does not tell which user names exist. Its hash matches no password (random bytes, not
// a derived key).
const DUMMY: HashRecord = { params: DEFAULT_SCRYPT, salt: randomBytes(SALT_BYTES), hash: randomBytes(KEY_BYTES) }

let dummyChecks = 0

/** How many checks ran against the dummy record (for tests: the unknown-user path costs a scrypt). */
export function dummyCheckCount(): number {
  return dummyChecks
}

function derive(password: Buffer, salt: Buffer, params: ScryptParams): Promise<Buffer> {
  const N = 2 ** params.ln
  // scrypt needs 128 * N * r * p bytes; Node's default cap (32 MiB) is below what LIMITS allows
  const options: ScryptOptions = { N, r: params.r, p: params.p, maxmem: 256 * N * params.r * params.p }
  return new Promise((resolve, reject) => {
    scrypt(password, salt, KEY_BYTES, options, (err, key) => (err ? reject(err) : resolve(key)))
  })
}

function toBytes(password: string | Buffer): Buffer {
  return typeof password === 'string' ? Buffer.from(password, 'utf8') : password
}

/** A password-file hash (the part after `user:`) for a new password. */
export async function hashPassword(password: string | Buffer, params: ScryptParams = DEFAULT_SCRYPT): Promise<string> {
  const salt = randomBytes(SALT_BYTES)
  const hash = await derive(toBytes(password), salt, params)
  return `$scrypt$ln=${params.ln},r=${params.r},p=${params.p}$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** Whether a password matches a hash written by hashPassword. */
export async function verifyPassword(hash: string, password: string | Buffer): Promise<boolean> {
  const record = parseHash(hash)
  if (typeof record === 'string') throw new EdgebusError('EAUTH_PASSWD_FILE', `not a password hash: ${record}`)
  return check(record, password)
}

async function check(record: HashRecord, password: string | Buffer): Promise<boolean> {
  const key = await derive(toBytes(password), record.salt, record.params)
  return key.length === record.hash.length && timingSafeEqual(key, record.hash)
}

/**
 * Why a user name cannot be in the file, or null. ':' ends the name and whitespace would be lost to
 * editors; '/', '+', '#' and a leading '$' would make an ACL `%u` level a wildcard, a path or a
 * '$' topic; `$token` is how an MQTT client says "the password is an access token".
 */
export function checkUserName(user: string): string | null {
  if (user.length === 0) return 'it is empty'
  if (user.length > 256) return 'it is longer than 256 characters'
  if (/[:\s/+#\u0000]/u.test(user)) return "it contains ':', whitespace, '/', '+', '#' or NUL"
  if (user.startsWith('$')) return "it starts with '$' (reserved: '$token' marks an access token)"
  if (!user.isWellFormed()) return 'it is not well-formed Unicode'
  return null
}

const B64 = /^[A-Za-z0-9+/]+={0,2}$/

/** The record of a `$scrypt$...` hash, or why it is not one. */
function parseHash(text: string): HashRecord | string {
  const parts = text.split('$')
  // '', 'scrypt', 'ln=14,r=8,p=1', salt, hash
  if (parts.length !== 5 || parts[0] !== '' || parts[1] !== 'scrypt') {
    return 'the hash is not in the $scrypt$ln=..,r=..,p=..$salt$hash form'
  }
  const m = /^ln=(\d+),r=(\d+),p=(\d+)$/.exec(parts[2] as string)
  if (!m) return 'the scrypt parameters are not ln=N,r=N,p=N'
  const params = { ln: Number(m[1]), r: Number(m[2]), p: Number(m[3]) }
  for (const k of ['ln', 'r', 'p'] as const) {
    const [lo, hi] = LIMITS[k]
    if (params[k] < lo || params[k] > hi) return `scrypt parameter ${k}=${params[k]} is outside ${lo}..${hi}`
  }
  const salt = parts[3] as string
  const hash = parts[4] as string
  if (!B64.test(salt) || !B64.test(hash)) return 'the salt or hash is not base64'
  const record = { params, salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') }
  if (record.salt.length < 8 || record.hash.length < 16) return 'the salt or hash is too short'
  return record
}

/** One line of the file, kept as written so edits leave the rest alone. */
interface Line {
  readonly text: string
  /** The user the line defines, or null for a blank line or comment. */
  readonly user: string | null
}

/** Splits and checks the file; errors name the path and the line. */
function parseLines(path: string, content: string): { lines: Line[]; records: Map<string, HashRecord> } {
  const lines: Line[] = []
  const records = new Map<string, HashRecord>()
  const raw = content.split(/\r?\n/)
  if (raw.at(-1) === '') raw.pop() // the final newline
  for (let i = 0; i < raw.length; i++) {
    const text = raw[i] as string
    const trimmed = text.trim()
    if (trimmed === '' || trimmed.startsWith('#')) {
      lines.push({ text, user: null })
      continue
    }
    const fail = (why: string): never => {
      throw new EdgebusError('EAUTH_PASSWD_FILE', `${path}, line ${i + 1}: ${why}; fix the line, or delete it and set the password again with \`edgebus passwd ${path} USER\``, { path, line: i + 1 })
    }
    const colon = text.indexOf(':')
    if (colon === -1) fail("expected 'user:$scrypt$...'")
    const user = text.slice(0, colon)
    const nameProblem = checkUserName(user)
    if (nameProblem !== null) fail(`user name ${JSON.stringify(user)} is not valid: ${nameProblem}`)
    if (records.has(user)) fail(`user ${JSON.stringify(user)} appears a second time`)
    const record = parseHash(text.slice(colon + 1).trim())
    if (typeof record === 'string') fail(record)
    records.set(user, record as HashRecord)
    lines.push({ text, user })
  }
  return { lines, records }
}

async function readText(path: string, missingOk: boolean): Promise<string> {
  try {
    return await fsp.readFile(path, 'utf8')
  } catch (err) {
    const e = err as NodeJS.ErrnoException
    if (missingOk && e.code === 'ENOENT') return ''
    const fix = e.code === 'ENOENT' ? `create it with \`edgebus passwd ${path} USER\` or correct auth.passwordFile` : 'check the path and its permissions'
    throw new EdgebusError('EAUTH_PASSWD_FILE', `cannot read the password file ${path}: ${e.message}; ${fix}`, { path, errno: e.code })
  }
}

export class PasswordFile {
  readonly path: string
  readonly #records: Map<string, HashRecord>

  private constructor(path: string, records: Map<string, HashRecord>) {
    this.path = path
    this.#records = records
  }

  static async load(path: string): Promise<PasswordFile> {
    return new PasswordFile(path, parseLines(path, await readText(path, false)).records)
  }

  /** From text already in memory (tests, and files embedded elsewhere). */
  static parse(content: string, path = '(password file)'): PasswordFile {
    return new PasswordFile(path, parseLines(path, content).records)
  }

  has(user: string): boolean {
    return this.#records.has(user)
  }

  get size(): number {
    return this.#records.size
  }

  users(): string[] {
    return [...this.#records.keys()]
  }

  /** Whether the password is the user's. An unknown user costs the same scrypt as a wrong password. */
  async verify(user: string, password: string | Buffer): Promise<boolean> {
    const record = this.#records.get(user)
    if (record === undefined) {
      dummyChecks++
      await check(DUMMY, password)
      return false
    }
    return check(record, password)
  }
}

/** Sets (adds or replaces) a user's password; creates the file when missing. Other lines stay as written. */
export async function setPassword(path: string, user: string, password: string | Buffer, params: ScryptParams = DEFAULT_SCRYPT): Promise<void> {
  const nameProblem = checkUserName(user)
  if (nameProblem !== null) throw new EdgebusError('EAUTH_PASSWD_FILE', `user name ${JSON.stringify(user)} is not valid: ${nameProblem}`, { user })
  const { lines } = parseLines(path, await readText(path, true))
  const entry = `${user}:${await hashPassword(password, params)}`
  const i = lines.findIndex((l) => l.user === user)
  if (i === -1) lines.push({ text: entry, user })
  else lines[i] = { text: entry, user }
  await writeAtomic(path, lines)
}

/** Removes a user; returns false when the user was not in the file. */
export async function removeUser(path: string, user: string): Promise<boolean> {
  const { lines } = parseLines(path, await readText(path, false))
  const kept = lines.filter((l) => l.user !== user)
  if (kept.length === lines.length) return false
  await writeAtomic(path, kept)
  return true
}

/**
 * Temp file in the same directory, fsync, rename over the old file, fsync the directory: a reader
 * (the server on SIGHUP) sees the old file or the new one, never half of one, and a crash leaves one of
 * the two. Mode 0600: the hashes are for the server's eyes only.
 */
async function writeAtomic(path: string, lines: readonly Line[]): Promise<void> {
  const dir = dirname(path)
  const tmp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`)
  const text = lines.map((l) => l.text + '\n').join('')
  try {
    const fh = await fsp.open(tmp, 'wx', 0o600)
    try {
      await fh.chmod(0o600) // a umask could have narrowed it (to 0400, say): set it exactly
      await fh.writeFile(text, 'utf8')
      await fh.sync()
    } finally {
      await fh.close()
    }
    await fsp.rename(tmp, path)
    syncDirSync(dir)
  } catch (err) {
    await fsp.rm(tmp, { force: true }).catch(() => {})
    const e = err as NodeJS.ErrnoException
    throw new EdgebusError('EAUTH_PASSWD_FILE', `cannot write the password file ${path}: ${e.message}; check that its directory exists and is writable`, { path, errno: e.code })
  }
}
