import { mkdtempSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { beforeAll, describe, expect, it } from 'vitest'
import { AccessControl } from '../../src/auth/acl.ts'
import { parseAuthConfig } from '../../src/auth/acl-config.ts'
import { Authenticator, type Credentials } from '../../src/auth/authenticator.ts'
import { hashPassword, setPassword } from '../../src/auth/password-file.ts'
import { signToken } from '../../src/auth/token.ts'
import { EdgebusError } from '../../src/core/errors.ts'

const SECRET = 's'.repeat(40)
const NOW = Date.UTC(2030, 0, 1)
const exp = NOW / 1000 + 600
const FAST = { ln: 10, r: 8, p: 1 }

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p
  } catch (err) {
    if (err instanceof EdgebusError) return err.code
    throw err
  }
  return 'no error'
}

let dir: string
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'edgebus-auth-'))
  writeFileSync(join(dir, 'passwd'), `# users\nalice:${await hashPassword('alice-pw', FAST)}\n`)
})

const make = (auth: unknown): Promise<Authenticator> => Authenticator.create(parseAuthConfig(auth), { baseDir: dir, now: () => NOW })
const c = (x: Omit<Credentials, 'clientId'>): Credentials => ({ clientId: 'c1', ...x })

describe('Authenticator', () => {
  it('checks user name and password against the file (relative to baseDir)', async () => {
    const auth = await make({ passwordFile: 'passwd' })
    expect(auth.passwordPath).toBe(join(dir, 'passwd'))
    expect(auth.users).toBe(1)
    expect(await auth.authenticate(c({ username: 'alice', password: Buffer.from('alice-pw') }))).toEqual({ user: 'alice', method: 'password', restrict: null, expiresAt: null })
    expect(await code(auth.authenticate(c({ username: 'alice', password: 'nope' })))).toBe('EAUTH_BAD_CREDENTIALS')
    expect(await code(auth.authenticate(c({ username: 'alice' })))).toBe('EAUTH_BAD_CREDENTIALS')
    expect(await code(auth.authenticate(c({ username: 'mallory', password: 'alice-pw' })))).toBe('EAUTH_BAD_CREDENTIALS')
    // users exist: anonymous is off by default
    expect(await code(auth.authenticate(c({})))).toBe('EAUTH_ANONYMOUS')
    expect(await code(auth.authenticate(c({ password: 'alice-pw' })))).toBe('EAUTH_BAD_CREDENTIALS')
  })

  it('says the same for an unknown user and a wrong password', async () => {
    const auth = await make({ passwordFile: 'passwd' })
    const messages: string[] = []
    for (const username of ['alice', 'mallory']) {
      await auth.authenticate(c({ username, password: 'x' })).catch((err: Error) => messages.push(err.message.replace(username, 'U')))
    }
    expect(messages[0]).toBe(messages[1])
    expect(messages[0]).toContain('unknown user "U" or wrong password')
  })

  it('lets anonymous clients in when allowed, and never trusts an unprovable user name', async () => {
    const open = await make(undefined)
    expect((await open.authenticate(c({}))).user).toBe(null)
    // no password file: the name cannot be checked, so it gives no rights
    expect((await open.authenticate(c({ username: 'admin', password: 'x' })))).toMatchObject({ user: null, method: 'anonymous' })
    const closed = await make({ allowAnonymous: false })
    expect(await code(closed.authenticate(c({ username: 'admin', password: 'x' })))).toBe('EAUTH_BAD_CREDENTIALS')
    const both = await make({ passwordFile: 'passwd', allowAnonymous: true })
    expect((await both.authenticate(c({}))).user).toBe(null)
    expect(await code(both.authenticate(c({ username: 'alice', password: 'bad' })))).toBe('EAUTH_BAD_CREDENTIALS') // no fallback to anonymous
  })

  it('accepts tokens as $token + password (MQTT) or as a token field (HTTP, /ws)', async () => {
    const auth = await make({ passwordFile: 'passwd', tokenSecret: SECRET })
    const token = signToken({ sub: 'bob', exp }, SECRET)
    expect(await auth.authenticate(c({ username: '$token', password: Buffer.from(token) }))).toEqual({ user: 'bob', method: 'token', restrict: null, expiresAt: exp * 1000 })
    expect((await auth.authenticate(c({ token }))).user).toBe('bob')
    expect(await code(auth.authenticate(c({ username: '$token', password: token + 'x' })))).toBe('EAUTH_TOKEN_INVALID')
    expect(await code(auth.authenticate(c({ username: '$token' })))).toBe('EAUTH_TOKEN_INVALID')
    expect(await code(auth.authenticate(c({ token: signToken({ sub: 'bob', exp: NOW / 1000 }, SECRET) })))).toBe('EAUTH_TOKEN_EXPIRED')
    const noTokens = await make({ passwordFile: 'passwd' })
    expect(await code(noTokens.authenticate(c({ token })))).toBe('EAUTH_TOKEN_INVALID')
  })

  it("turns a token's acl claim into a restriction, and refuses a token with bad rules", async () => {
    const auth = await make({ tokenSecret: SECRET, acl: { users: { bob: [{ allow: 'pubsub', subject: '#' }] } } })
    const id = await auth.authenticate(c({ token: signToken({ sub: 'bob', exp, acl: [{ allow: 'sub', subject: 'sensors.>' }] }, SECRET) }))
    expect(id.restrict).toEqual([{ allow: true, access: 'sub', filter: 'sensors/#', where: 'token.acl[0]' }])
    const access = new AccessControl(auth.config.acl).forClient(id.user, 'c1', id.restrict)
    expect(access.canReceive('sensors/t')).toBe(true)
    expect(access.canReceive('other/t')).toBe(false)
    expect(access.canPublish('sensors/t')).toBe(false)
    expect(await code(auth.authenticate(c({ token: signToken({ sub: 'bob', exp, acl: [{ allow: 'everything', subject: '#' }] }, SECRET) })))).toBe('EAUTH_TOKEN_INVALID')
  })

  it('takes the user from a verified client certificate, without a password', async () => {
    const auth = await make({ passwordFile: 'passwd' })
    expect(await auth.authenticate(c({ certCommonName: 'sensor-7' }))).toEqual({ user: 'sensor-7', method: 'certificate', restrict: null, expiresAt: null })
    expect((await auth.authenticate(c({ certCommonName: 'sensor-7', username: 'sensor-7', password: 'ignored' }))).user).toBe('sensor-7')
    expect(await code(auth.authenticate(c({ certCommonName: 'sensor-7', username: 'alice', password: 'alice-pw' })))).toBe('EAUTH_BAD_CREDENTIALS')
  })

  it('reloads the password file, keeping the old one when the new one is broken', async () => {
    const d = mkdtempSync(join(tmpdir(), 'edgebus-auth-'))
    const path = join(d, 'passwd')
    await setPassword(path, 'alice', 'one', FAST)
    const auth = await Authenticator.create(parseAuthConfig({ passwordFile: path }))
    await setPassword(path, 'alice', 'two', FAST)
    await setPassword(path, 'carol', 'three', FAST)
    expect((await auth.authenticate(c({ username: 'alice', password: 'one' }))).user).toBe('alice') // until reload
    await auth.reload()
    expect(auth.users).toBe(2)
    expect(await code(auth.authenticate(c({ username: 'alice', password: 'one' })))).toBe('EAUTH_BAD_CREDENTIALS')
    expect((await auth.authenticate(c({ username: 'carol', password: 'three' }))).user).toBe('carol')
    writeFileSync(path, 'broken\n')
    expect(await code(auth.reload())).toBe('EAUTH_PASSWD_FILE')
    expect((await auth.authenticate(c({ username: 'carol', password: 'three' }))).user).toBe('carol')
  })

  it('fails to start on a missing password file, naming it', async () => {
    await expect(make({ passwordFile: 'missing' })).rejects.toThrow(/cannot read the password file .*missing.*edgebus passwd/)
  })
})
