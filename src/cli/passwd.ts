import { StringDecoder } from 'node:string_decoder'
import { checkUserName, removeUser, setPassword } from '../auth/password-file.ts'
import { EdgebusError } from '../core/errors.ts'
import { ExitCode, parseCommandLine } from './args.ts'

export const passwdHelp = `Usage: edgebus passwd FILE USER
       edgebus passwd -D FILE USER

Sets a user's password in a password file (scrypt hashes; created with mode 0600 when missing),
or removes the user. Other lines and comments of the file are kept. The server reads the file named
by auth.passwordFile at start and again on SIGHUP.

On a terminal the password is asked twice, without echo; otherwise the first line of stdin is the
password:  printf '%s\\n' "$PW" | edgebus passwd passwd alice

Options:
  -D, --delete           remove USER from FILE
  -h, --help             show this help

Exit codes: 0 done, 1 the file cannot be read or written or the passwords differ, 2 usage error.
`

/** The streams the command talks to; tests pass fakes. */
export interface PasswdIo {
  readonly stdin: NodeJS.ReadableStream & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown }
  readonly stdout: { write(text: string): unknown }
  readonly stderr: { write(text: string): unknown }
}

const processIo: PasswdIo = { stdin: process.stdin, stdout: process.stdout, stderr: process.stderr }

export async function passwd(argv: string[], io: PasswdIo = processIo): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    delete: { type: 'boolean', short: 'D' },
    help: { type: 'boolean', short: 'h' },
  }, 'passwd')
  if (values.help) { io.stdout.write(passwdHelp); return ExitCode.OK }
  const [file, user, extra] = positionals
  if (file === undefined || user === undefined || extra !== undefined) {
    io.stderr.write(passwdHelp)
    return ExitCode.USAGE
  }
  const problem = checkUserName(user)
  if (problem !== null) throw new EdgebusError('EUSAGE', `user name ${JSON.stringify(user)} is not valid: ${problem}`)
  if (values.delete) {
    if (!(await removeUser(file, user))) {
      io.stderr.write(`edgebus: user ${JSON.stringify(user)} is not in ${file}\n`)
      return ExitCode.FAILURE
    }
    io.stdout.write(`removed user ${user} from ${file}\n`)
    return ExitCode.OK
  }
  const password = await readNewPassword(io)
  if (password === null) return ExitCode.FAILURE
  await setPassword(file, user, password)
  io.stdout.write(`set the password of ${user} in ${file}\n`)
  return ExitCode.OK
}

/**
 * A new password: typed twice without echo on a terminal, else the first line of standard input.
 * Null when cancelled or the two differ (said on stderr); EUSAGE when it is empty.
 */
export async function readNewPassword(io: PasswdIo = processIo): Promise<string | null> {
  let password: string
  if (io.stdin.isTTY === true && typeof io.stdin.setRawMode === 'function') {
    const answers = await readHidden(io, ['Password: ', 'Repeat password: '])
    if (answers === null) {
      io.stderr.write('edgebus: cancelled; nothing was changed\n')
      return null
    }
    const [first, second] = answers
    if (first !== second) {
      io.stderr.write('edgebus: the passwords differ; nothing was changed\n')
      return null
    }
    password = first as string
  } else {
    password = await readFirstLine(io.stdin)
  }
  if (password.length === 0) throw new EdgebusError('EUSAGE', 'the password is empty; give a non-empty password')
  return password
}

/** The first line of a piped stdin, without its line ending (the rest is ignored). */
async function readFirstLine(stdin: NodeJS.ReadableStream): Promise<string> {
  const decoder = new StringDecoder('utf8')
  let text = ''
  for await (const chunk of stdin) {
    text += typeof chunk === 'string' ? chunk : decoder.write(chunk)
    if (text.includes('\n')) break
  }
  text += decoder.end()
  const nl = text.indexOf('\n')
  const line = nl === -1 ? text : text.slice(0, nl)
  return line.endsWith('\r') ? line.slice(0, -1) : line
}

/**
 * Reads one line per prompt from a terminal in raw mode, so nothing typed is echoed. Backspace
 * edits, Enter ends a line, Ctrl-C and Ctrl-D abort. Prompts go to stderr, which stays on the
 * terminal when stdout is redirected.
 */
/** null: cancelled. */
function readHidden(io: PasswdIo, prompts: readonly string[]): Promise<string[] | null> {
  const stdin = io.stdin
  const setRaw = stdin.setRawMode as (raw: boolean) => unknown
  const decoder = new StringDecoder('utf8')
  return new Promise((resolvePromise) => {
    const lines: string[] = []
    let current = ''
    const finish = (cancelled: boolean): void => {
      stdin.removeListener('data', onData)
      setRaw.call(stdin, false)
      stdin.pause()
      resolvePromise(cancelled ? null : lines)
    }
    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk)
      for (const ch of text) {
        if (ch === '\r' || ch === '\n') {
          io.stderr.write('\n')
          lines.push(current)
          current = ''
          if (lines.length === prompts.length) return finish(false)
          io.stderr.write(prompts[lines.length] as string)
        } else if (ch === '\u0003' || ch === '\u0004') {
          io.stderr.write('\n')
          return finish(true)
        } else if (ch === '\u007f' || ch === '\b') {
          current = [...current].slice(0, -1).join('')
        } else {
          current += ch
        }
      }
    }
    setRaw.call(stdin, true)
    io.stderr.write(prompts[0] as string)
    stdin.on('data', onData)
    stdin.resume()
  })
}
