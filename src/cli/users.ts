import { readFileSync } from 'node:fs'
import { EdgebusError } from '../core/errors.ts'
import { ExitCode, parseCommandLine } from './args.ts'
import { readNewPassword } from './passwd.ts'
import { apiCall, DEFAULT_HTTP_URL, printTable } from './stream.ts'

const serverHelp = `Options:
  --server URL           the server's HTTP address (default ${DEFAULT_HTTP_URL}, or EDGEBUS_HTTP_URL)
  -h, --help             show this help
The server wants an access token in EDGEBUS_TOKEN whose user may publish to $admin/auth.
Exit codes: 0 done, 1 the server refused or cannot be reached, 2 usage or validation error.`

export const userHelp = `Usage: edgebus user COMMAND [NAME] [options]

Users at run time, kept by the server beside its data (<dataDir>/auth); no restart. Users of the
config's password file are changed with edgebus passwd instead.

Commands:
  ls                     every user: where its password is (file, api) and its run-time rules
  add NAME               a new user; the password is asked twice (or read from standard input)
  passwd NAME            a new password for a user added at run time
  rm NAME                remove it: its connections that logged in with its password are closed

add options:
  --acl RULES            its rules, JSON: '[{"allow": "pubsub", "subject": "devices/%u/#"}]'
  --acl-file FILE        the same, from a file

${serverHelp}
`

export const aclHelp = `Usage: edgebus acl COMMAND [USER] [RULES] [options]

A user's ACL rules at run time: they replace the config's rules of that user (its "default" rules
still follow), on live connections at once. Any user: of a password file, a token or a certificate.

Commands:
  ls                     every user with run-time rules
  get USER               its rules (JSON)
  set USER RULES         RULES: JSON like '[{"deny": "sub", "subject": "devices/+/secret"}, {"allow": "pubsub", "subject": "devices/%u/#"}]'
  rm USER                drop its run-time rules (the config's apply again)

Options:
  --file FILE            read RULES from a file
${serverHelp}
`

function base(values: Record<string, unknown>): string {
  return ((values.server as string | undefined) ?? process.env.EDGEBUS_HTTP_URL ?? DEFAULT_HTTP_URL).replace(/\/$/, '')
}

/** Rules given as JSON text (an argument or a file); EUSAGE when it is not JSON. */
function rulesFrom(text: string | undefined, file: string | undefined, what: string): unknown {
  let json = text
  if (file !== undefined) {
    try {
      json = readFileSync(file, 'utf8')
    } catch (err) {
      throw new EdgebusError('EUSAGE', `${what} ${file}: ${(err as Error).message}`)
    }
  }
  if (json === undefined) return undefined
  try {
    return JSON.parse(json)
  } catch (err) {
    throw new EdgebusError('EUSAGE', `${what} is not JSON: ${(err as Error).message}; write it like '[{"allow": "pubsub", "subject": "devices/%u/#"}]'`)
  }
}

export async function user(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    acl: { type: 'string' },
    'acl-file': { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'user')
  if (values.help || positionals.length === 0) { process.stdout.write(userHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, name, extra] = positionals
  if (extra !== undefined) throw new EdgebusError('EUSAGE', `unexpected argument ${JSON.stringify(extra)} (see edgebus user --help)`)
  const url = base(values)
  const needName = (): string => {
    if (name === undefined) throw new EdgebusError('EUSAGE', `user ${command} needs a NAME (see edgebus user --help)`)
    return name
  }
  switch (command) {
    case 'ls': {
      const { users } = await apiCall(url, 'GET', '/api/auth/users') as { users: Array<{ name: string; password: string | null; rules: unknown[] | null }> }
      if (values.json) { process.stdout.write(JSON.stringify(users) + '\n'); break }
      printTable([['USER', 'PASSWORD', 'RUN-TIME RULES'], ...users.map((u) => [u.name, u.password ?? '-', u.rules === null ? '-' : String(u.rules.length)])])
      break
    }
    case 'add': {
      const n = needName()
      const acl = rulesFrom(values.acl as string | undefined, values['acl-file'] as string | undefined, '--acl')
      const password = await readNewPassword()
      if (password === null) return ExitCode.FAILURE
      await apiCall(url, 'POST', '/api/auth/users', { name: n, password, ...(acl === undefined ? {} : { acl }) })
      process.stdout.write(`added user ${n}\n`)
      break
    }
    case 'passwd': {
      const n = needName()
      const password = await readNewPassword()
      if (password === null) return ExitCode.FAILURE
      await apiCall(url, 'PUT', `/api/auth/users/${encodeURIComponent(n)}`, { password })
      process.stdout.write(`set the password of ${n}\n`)
      break
    }
    case 'rm':
      await apiCall(url, 'DELETE', `/api/auth/users/${encodeURIComponent(needName())}`)
      process.stdout.write(`removed user ${name as string}\n`)
      break
    default:
      throw new EdgebusError('EUSAGE', `unknown user command ${JSON.stringify(command)} (see edgebus user --help)`)
  }
  return ExitCode.OK
}

export async function acl(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    file: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  }, 'acl')
  if (values.help || positionals.length === 0) { process.stdout.write(aclHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, name, rulesText, extra] = positionals
  if (extra !== undefined) throw new EdgebusError('EUSAGE', `unexpected argument ${JSON.stringify(extra)}: quote the RULES (see edgebus acl --help)`)
  const url = base(values)
  const path = (): string => {
    if (name === undefined) throw new EdgebusError('EUSAGE', `acl ${command} needs a USER (see edgebus acl --help)`)
    return `/api/auth/acl/${encodeURIComponent(name)}`
  }
  switch (command) {
    case 'ls': {
      const { acl: all } = await apiCall(url, 'GET', '/api/auth/acl') as { acl: Record<string, unknown[]> }
      printTable([['USER', 'RULES'], ...Object.entries(all).map(([u, r]) => [u, JSON.stringify(r)])])
      break
    }
    case 'get':
      process.stdout.write(JSON.stringify(((await apiCall(url, 'GET', path())) as { rules: unknown }).rules, null, 2) + '\n')
      break
    case 'set': {
      const p = path()
      const rules = rulesFrom(rulesText, values.file as string | undefined, 'RULES')
      if (rules === undefined) throw new EdgebusError('EUSAGE', 'acl set needs RULES (or --file FILE)')
      await apiCall(url, 'PUT', p, rules)
      process.stdout.write(`set the rules of ${name as string}\n`)
      break
    }
    case 'rm':
      await apiCall(url, 'DELETE', path())
      process.stdout.write(`removed the run-time rules of ${name as string}\n`)
      break
    default:
      throw new EdgebusError('EUSAGE', `unknown acl command ${JSON.stringify(command)} (see edgebus acl --help)`)
  }
  return ExitCode.OK
}
