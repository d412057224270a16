import { EdgebusError } from '../core/errors.ts'
import { ExitCode, parseCommandLine } from './args.ts'
import { apiCall, DEFAULT_HTTP_URL, printTable } from './stream.ts'

export const bridgeHelp = `Usage: edgebus bridge COMMAND [options]

Shows the store-and-forward bridges of a server (declared in its config file's "bridges" list).

Commands:
  ls                     every bridge: state, remote URL, backlog, oldest unsent, acked, refused, reconnects
  info NAME              one bridge's state and counters (JSON)

Options:
  --server URL           the server's HTTP address (default ${DEFAULT_HTTP_URL}, or EDGEBUS_HTTP_URL)
  --json                 print JSON (ls)
  -h, --help             show this help

Exit codes: 0 done, 1 the server refused or cannot be reached, 2 usage error.
`

interface BridgeRow {
  name: string
  state: string
  url: string | null
  urls: string[]
  downSince: string | null
  backlog: { messages: number; bytes: number; oldestSeconds: number }
  acked: number
  refused: number
  deadLettered: number
  reconnects: number
}

export async function bridge(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'bridge')
  if (values.help || positionals.length === 0) { process.stdout.write(bridgeHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, name] = positionals
  const base = ((values.server as string | undefined) ?? process.env.EDGEBUS_HTTP_URL ?? DEFAULT_HTTP_URL).replace(/\/$/, '')
  switch (command) {
    case 'ls': {
      const { bridges } = await apiCall(base, 'GET', '/api/bridges') as { bridges: BridgeRow[] }
      if (values.json) { process.stdout.write(JSON.stringify(bridges) + '\n'); break }
      const rows = bridges.map((b) => [
        b.name,
        b.state === 'down' && b.downSince !== null ? `down since ${b.downSince}` : b.state,
        b.url ?? b.urls[0] ?? '',
        String(b.backlog.messages),
        String(b.backlog.bytes),
        `${b.backlog.oldestSeconds}s`,
        String(b.acked),
        String(b.refused),
        String(b.deadLettered),
        String(b.reconnects),
      ])
      printTable([['NAME', 'STATE', 'URL', 'BACKLOG', 'BYTES', 'OLDEST', 'ACKED', 'REFUSED', 'DEAD', 'RECONNECTS'], ...rows])
      break
    }
    case 'info':
      if (name === undefined) throw new EdgebusError('EUSAGE', 'bridge info needs a NAME (see edgebus bridge --help)')
      process.stdout.write(JSON.stringify(await apiCall(base, 'GET', `/api/bridges/${encodeURIComponent(name)}`), null, 2) + '\n')
      break
    default:
      throw new EdgebusError('EUSAGE', `unknown bridge command ${JSON.stringify(command)} (see edgebus bridge --help)`)
  }
  return ExitCode.OK
}
