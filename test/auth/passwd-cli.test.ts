import { mkdtempSync, readFileSync, statSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { PassThrough } from 'node:stream'
import { describe, expect, it } from 'vitest'
import { PasswordFile } from '../../src/auth/password-file.ts'
import { passwd, type PasswdIo } from '../../src/cli/passwd.ts'
import { EdgebusError } from '../../src/core/errors.ts'

/** Fake terminal or pipe: `input` is written after the command starts reading. */
function io(input: string[], tty: boolean): PasswdIo & { out: () => string; err: () => string; raw: boolean[] } {
  const stdin = new PassThrough() as PassThrough & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown }
  const raw: boolean[] = []
  if (tty) {
    stdin.isTTY = true
    stdin.setRawMode = (on: boolean) => raw.push(on)
  }
  // typed a chunk at a time, as a terminal delivers keystrokes
  setImmediate(() => {
    for (const chunk of input) stdin.write(chunk)
    if (!tty) stdin.end()
  })
  let out = ''
  let err = ''
  return {
    stdin, raw,
    stdout: { write: (t: string) => { out += t } },
    stderr: { write: (t: string) => { err += t } },
    out: () => out, err: () => err,
  }
}

const file = (): string => join(mkdtempSync(join(tmpdir(), 'edgebus-cli-passwd-')), 'passwd')

describe('edgebus passwd', () => {
  it('reads the password from the first line of a pipe', async () => {
    const path = file()
    const t = io(['s3cret pass\r\nignored\n'], false)
    expect(await passwd([path, 'alice'], t)).toBe(0)
    expect(t.out()).toContain(`set the password of alice in ${path}`)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(await (await PasswordFile.load(path)).verify('alice', 's3cret pass')).toBe(true)
  })

  it('asks twice on a terminal without echo, with backspace', async () => {
    const path = file()
    const t = io(['pw', 'x\u007f', '1\r', 'pw1', '\r'], true)
    expect(await passwd([path, 'bob'], t)).toBe(0)
    expect(t.err()).toBe('Password: \nRepeat password: \n') // the prompts, never the password
    expect(t.raw).toEqual([true, false])
    expect(await (await PasswordFile.load(path)).verify('bob', 'pw1')).toBe(true)
  })

  it('changes nothing when the two passwords differ or input is cancelled', async () => {
    const path = file()
    const differ = io(['one\rtwo\r'], true)
    expect(await passwd([path, 'bob'], differ)).toBe(1)
    expect(differ.err()).toContain('the passwords differ')
    const cancel = io(['one\u0003'], true)
    expect(await passwd([path, 'bob'], cancel)).toBe(1)
    expect(cancel.raw).toEqual([true, false]) // the terminal is restored
    expect(() => statSync(path)).toThrow()
  })

  it('removes a user with -D, keeping the rest', async () => {
    const path = file()
    expect(await passwd([path, 'alice'], io(['a\n'], false))).toBe(0)
    expect(await passwd([path, 'bob'], io(['b\n'], false))).toBe(0)
    const t = io([], false)
    expect(await passwd(['-D', path, 'alice'], t)).toBe(0)
    expect(t.out()).toContain('removed user alice')
    expect(readFileSync(path, 'utf8')).not.toContain('alice:')
    expect((await PasswordFile.load(path)).users()).toEqual(['bob'])
    const again = io([], false)
    expect(await passwd([path, '--delete', 'alice'], again)).toBe(1)
    expect(again.err()).toContain('not in')
  })

  it('prints help and refuses bad usage', async () => {
    const help = io([], false)
    expect(await passwd(['--help'], help)).toBe(0)
    expect(help.out()).toContain('Usage: edgebus passwd FILE USER')
    const missing = io([], false)
    expect(await passwd([file()], missing)).toBe(2)
    expect(missing.err()).toContain('Usage: edgebus passwd')
    await expect(passwd(['--frobnicate', 'f', 'u'], io([], false))).rejects.toMatchObject({ code: 'EUSAGE' })
    await expect(passwd([file(), 'a:b'], io(['x\n'], false))).rejects.toMatchObject({ code: 'EUSAGE' })
    await expect(passwd([file(), 'alice'], io(['\n'], false))).rejects.toBeInstanceOf(EdgebusError) // empty password
  })
})
