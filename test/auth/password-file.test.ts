import { mkdtempSync, promises, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it, vi } from 'vitest'
import { PasswordFile, dummyCheckCount, hashPassword, removeUser, setPassword, verifyPassword } from '../../src/auth/password-file.ts'
import { EdgebusError } from '../../src/core/errors.ts'

const dir = (): string => mkdtempSync(join(tmpdir(), 'edgebus-passwd-'))

async function failure(p: Promise<unknown>): Promise<EdgebusError> {
  try {
    await p
  } catch (err) {
    if (err instanceof EdgebusError) return err
    throw err
  }
  throw new Error('expected an EdgebusError')
}

describe('password hashes', () => {
  it('round-trips scrypt with the documented format, salted', async () => {
    const hash = await hashPassword('correct horse')
    expect(hash).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]{22}==\$[A-Za-z0-9+/]{43}=$/)
    expect(await verifyPassword(hash, 'correct horse')).toBe(true)
    expect(await verifyPassword(hash, Buffer.from('correct horse'))).toBe(true) // MQTT passwords are bytes
    expect(await verifyPassword(hash, 'correct horsE')).toBe(false)
    expect(await verifyPassword(hash, '')).toBe(false)
    expect(await hashPassword('correct horse')).not.toBe(hash)
  })

  it('verifies with the parameters written in the hash', async () => {
    const hash = await hashPassword('pw', { ln: 10, r: 4, p: 2 })
    expect(hash.startsWith('$scrypt$ln=10,r=4,p=2$')).toBe(true)
    expect(await verifyPassword(hash, 'pw')).toBe(true)
  })
})

describe('PasswordFile', () => {
  it('loads users, skips comments and blank lines, and verifies', async () => {
    const d = dir()
    const path = join(d, 'passwd')
    writeFileSync(path, `# edgebus users\n\nalice:${await hashPassword('a-pw')}\r\n  # indented comment\nbob:${await hashPassword('b-pw', { ln: 10, r: 8, p: 1 })}\n`)
    const file = await PasswordFile.load(path)
    expect(file.size).toBe(2)
    expect(file.has('alice') && file.has('bob') && !file.has('carol')).toBe(true)
    expect(file.users()).toEqual(['alice', 'bob'])
    expect(await file.verify('alice', 'a-pw')).toBe(true)
    expect(await file.verify('alice', 'b-pw')).toBe(false)
    expect(await file.verify('bob', 'b-pw')).toBe(true)
  })

  it('checks an unknown user against the dummy hash, as long as a wrong password takes', async () => {
    const file = PasswordFile.parse(`alice:${await hashPassword('a-pw')}\n`)
    const before = dummyCheckCount()
    expect(await file.verify('mallory', 'a-pw')).toBe(false)
    expect(dummyCheckCount()).toBe(before + 1)
    expect(await file.verify('alice', 'wrong')).toBe(false)
    expect(dummyCheckCount()).toBe(before + 1) // a known user is checked against its own hash
  })

  it('does not block the event loop while verifying', async () => {
    const file = PasswordFile.parse(`alice:${await hashPassword('a-pw')}\n`)
    let ticks = 0
    const timer = setInterval(() => ticks++, 1)
    await Promise.all([file.verify('alice', 'a-pw'), file.verify('nobody', 'x')])
    clearInterval(timer)
    expect(ticks).toBeGreaterThan(0)
  })

  it('names the file and the line of a parse error', async () => {
    const good = await hashPassword('x', { ln: 10, r: 8, p: 1 })
    const cases: Array<[string, RegExp]> = [
      ['# ok\nno-colon-here\n', /line 2: expected 'user:\$scrypt\$...'/],
      [`alice:${good}\nalice:${good}\n`, /line 2: user "alice" appears a second time/],
      [`al ice:${good}\n`, /line 1: user name "al ice" is not valid/],
      ['alice:$2y$10$abcdefghijklmnopqrstuv\n', /line 1: the hash is not in the \$scrypt\$/],
      [`alice:${good.replace('ln=10', 'ln=30')}\n`, /line 1: scrypt parameter ln=30 is outside 10..20/],
      ['alice:$scrypt$ln=14,r=8,p=1$!!!$???\n', /line 1: the salt or hash is not base64/],
      [`$token:${good}\n`, /line 1: user name "\$token" is not valid/],
    ]
    for (const [text, message] of cases) {
      const err = await failure(Promise.resolve().then(() => PasswordFile.parse(text, '/etc/edgebus/passwd')))
      expect(err.code).toBe('EAUTH_PASSWD_FILE')
      expect(err.message).toContain('/etc/edgebus/passwd, line')
      expect(err.message).toMatch(message)
      expect(err.message).toContain('edgebus passwd')
    }
    const missing = await failure(PasswordFile.load(join(dir(), 'nope')))
    expect(missing.code).toBe('EAUTH_PASSWD_FILE')
    expect(missing.message).toMatch(/cannot read the password file .*nope.*edgebus passwd/)
  })
})

describe('editing the password file', () => {
  it('creates the file with mode 0600 and sets, replaces and removes users, keeping comments', async () => {
    const d = dir()
    const path = join(d, 'passwd')
    await setPassword(path, 'alice', 'one')
    expect(statSync(path).mode & 0o777).toBe(0o600)
    const withComments = `# edgebus users: keep me\n${readFileSync(path, 'utf8')}\n# trailing comment\n`
    writeFileSync(path, withComments, { mode: 0o644 })
    await setPassword(path, 'bob', 'two')
    await setPassword(path, 'alice', 'three')
    const text = readFileSync(path, 'utf8')
    const lines = text.split('\n')
    expect(lines[0]).toBe('# edgebus users: keep me')
    expect(lines[1]?.startsWith('alice:$scrypt$')).toBe(true) // replaced in place
    expect(lines[2]).toBe('')
    expect(lines[3]).toBe('# trailing comment')
    expect(lines[4]?.startsWith('bob:$scrypt$')).toBe(true) // appended
    expect(text.endsWith('\n')).toBe(true)
    expect(statSync(path).mode & 0o777).toBe(0o600) // tightened on rewrite
    const file = await PasswordFile.load(path)
    expect(await file.verify('alice', 'three')).toBe(true)
    expect(await file.verify('alice', 'one')).toBe(false)
    expect(await file.verify('bob', 'two')).toBe(true)

    expect(await removeUser(path, 'alice')).toBe(true)
    expect(await removeUser(path, 'alice')).toBe(false)
    const after = readFileSync(path, 'utf8')
    expect(after).toContain('# edgebus users: keep me\n')
    expect(after).toContain('# trailing comment\n')
    expect(after).not.toContain('alice:')
    expect((await PasswordFile.load(path)).users()).toEqual(['bob'])
    expect(readdirSync(d)).toEqual(['passwd']) // no temp files left behind
  })

  it('writes atomically: a failed write leaves the old file whole and no temp file', async () => {
    const d = dir()
    const path = join(d, 'passwd')
    await setPassword(path, 'alice', 'one')
    const before = readFileSync(path, 'utf8')
    // the rename fails after the temp file was written and synced
    const rename = vi.spyOn(promises, 'rename').mockRejectedValueOnce(Object.assign(new Error('simulated rename failure'), { code: 'EIO' }))
    const err = await failure(setPassword(path, 'alice', 'two'))
    expect(rename).toHaveBeenCalledTimes(1)
    rename.mockRestore()
    expect(err.code).toBe('EAUTH_PASSWD_FILE')
    expect(err.message).toContain('simulated rename failure')
    expect(readdirSync(d)).toEqual(['passwd'])
    expect(readFileSync(path, 'utf8')).toBe(before)
    const noDir = await failure(setPassword(join(d, 'missing-dir', 'passwd'), 'x', 'y'))
    expect(noDir.message).toMatch(/cannot write the password file .*directory exists/)
  })

  it('refuses a user name that cannot be in the file, and an edit of a corrupt file', async () => {
    const path = join(dir(), 'passwd')
    for (const name of ['a:b', 'a b', '', '$token', 'a/b', 'a+', 'a#']) {
      expect((await failure(setPassword(path, name, 'pw'))).code).toBe('EAUTH_PASSWD_FILE')
    }
    writeFileSync(path, 'garbage\n')
    const err = await failure(setPassword(path, 'alice', 'pw'))
    expect(err.message).toContain('line 1')
    expect(readFileSync(path, 'utf8')).toBe('garbage\n')
  })
})
