import { isEdgebusError, type ErrorCode } from '../core/errors.ts'
import { VERSION } from '../version.ts'
import { ExitCode } from './args.ts'

const mainHelp = `edgebus ${VERSION}: a lightweight pub/sub server for edge devices (MQTT 3.1.1/5.0, WebSocket).

Usage: edgebus [COMMAND] [options]

Commands:
  serve              start the server (the default command)
  pub SUBJECT [MSG]  publish a message
  sub FILTER...      print messages on matching subjects
  stream COMMAND     manage streams: ls, info, add, edit, rm, purge, view
  consumer COMMAND   manage durable consumers: ls, info, add, rm, next
  client COMMAND     the server's client connections: ls, info, kick
  user COMMAND       users at run time: ls, add, passwd, rm
  acl COMMAND        a user's ACL rules at run time: ls, get, set, rm
  bridge COMMAND     show store-and-forward bridges: ls, info
  passwd FILE USER   set or (-D) remove a user in a password file

Run edgebus COMMAND --help for a command's options. edgebus --version prints the version.
Exit codes: 0 success, 1 runtime failure or the server refused, 2 usage, configuration or validation error.
`

/** Errors that say the input was wrong (here or as the server checked it): exit 2, as a usage error. */
const USAGE_CODES = new Set<ErrorCode>(['EUSAGE', 'EACL_INVALID', 'ETLS_CONFIG', 'ESTREAM_INVALID', 'ESTREAM_OVERLAP'])

// Commands load on demand: the server does not carry the MQTT client library in memory, nor the
// client commands the server.
const commands: Record<string, (argv: string[]) => Promise<number>> = {
  serve: async (argv) => (await import('./serve.ts')).serve(argv),
  pub: async (argv) => (await import('./pub.ts')).pub(argv),
  sub: async (argv) => (await import('./sub.ts')).sub(argv),
  stream: async (argv) => (await import('./stream.ts')).stream(argv),
  consumer: async (argv) => (await import('./consumer.ts')).consumer(argv),
  client: async (argv) => (await import('./clients.ts')).client(argv),
  user: async (argv) => (await import('./users.ts')).user(argv),
  acl: async (argv) => (await import('./users.ts')).acl(argv),
  bridge: async (argv) => (await import('./bridge.ts')).bridge(argv),
  passwd: async (argv) => (await import('./passwd.ts')).passwd(argv),
}

export async function main(argv: string[]): Promise<number> {
  const first = argv[0]
  if (first === '--version' || first === '-V') { process.stdout.write(`${VERSION}\n`); return ExitCode.OK }
  if (first === '--help' || first === '-h' || first === 'help') { process.stdout.write(mainHelp); return ExitCode.OK }
  let name = 'serve'
  let rest = argv
  if (first !== undefined && !first.startsWith('-')) {
    name = first
    rest = argv.slice(1)
  }
  const command = commands[name]
  if (!command) {
    process.stderr.write(`edgebus: EUSAGE: unknown command ${JSON.stringify(name)}\n\n${mainHelp}`)
    return ExitCode.USAGE
  }
  try {
    return await command(rest)
  } catch (err) {
    if (isEdgebusError(err)) {
      process.stderr.write(`edgebus: ${err.code}: ${err.message}\n`)
      // a server's answer: 400 says the input was wrong (exit 2, as if checked here); 404, 409, 503... exit 1
      const status = err.detail.status
      if (typeof status === 'number') return status === 400 ? ExitCode.USAGE : ExitCode.FAILURE
      return USAGE_CODES.has(err.code) || err.code.startsWith('ECONFIG') || err.code.startsWith('ESUBJECT') ? ExitCode.USAGE : ExitCode.FAILURE
    }
    process.stderr.write(`edgebus: unexpected error: ${(err as Error).stack ?? String(err)}\n`)
    return ExitCode.FAILURE
  }
}

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code
  // the serve command resolves after shutdown; pub/sub after their client closed
  if (code !== 0 || process.argv[2] !== undefined) setTimeout(() => process.exit(code), 50).unref()
}, (err: unknown) => {
  process.stderr.write(`edgebus: ${String(err)}\n`)
  process.exit(ExitCode.FAILURE)
})
