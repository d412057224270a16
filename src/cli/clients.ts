import { EdgebusError } from '../core/errors.ts'
import { ExitCode, parseCommandLine } from './args.ts'
import { apiCall, DEFAULT_HTTP_URL, printTable } from './stream.ts'

export const clientHelp = `Usage: edgebus client COMMAND [CLIENT] [options]

Lists, inspects and disconnects the server's client connections through its HTTP API.

Commands:
  ls                     every connection: id, client id, protocol, address, user, subscriptions, queue
  info CLIENT            one connection (JSON): how it logged in, its session, its subscriptions' QoS
  kick CLIENT            disconnect it (MQTT 5 clients hear DISCONNECT 0x98 Administrative action;
                         its will is published; it may connect again)

CLIENT is a client id, or a connection id from ls.

Options:
  --server URL           the server's HTTP address (default ${DEFAULT_HTTP_URL}, or EDGEBUS_HTTP_URL)
  --json                 print JSON (ls)
  -h, --help             show this help
A server with users wants an access token in EDGEBUS_TOKEN whose user may subscribe to $SYS/# (ls, info)
and publish to $admin/clients/<client id> (kick).

Exit codes: 0 done, 1 no such client, the server refused or cannot be reached, 2 usage error.
`

interface ConnectionRow { id: number; clientId: string | null; protocol: string; version: number | null; remote: string; user: string | null; subscriptions: string[]; queuedBytes: number; messagesIn: number; messagesOut: number }

export async function client(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'client')
  if (values.help || positionals.length === 0) { process.stdout.write(clientHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, name, ...rest] = positionals
  if (rest.length > 0) throw new EdgebusError('EUSAGE', `unexpected argument ${JSON.stringify(rest[0])} (see edgebus client --help)`)
  const base = ((values.server as string | undefined) ?? process.env.EDGEBUS_HTTP_URL ?? DEFAULT_HTTP_URL).replace(/\/$/, '')
  const list = async (): Promise<ConnectionRow[]> => ((await apiCall(base, 'GET', '/api/connections')) as { connections: ConnectionRow[] }).connections
  /** The connection a CLIENT argument names: a client id first, else a connection id. */
  const resolve = async (): Promise<ConnectionRow> => {
    if (name === undefined) throw new EdgebusError('EUSAGE', `client ${command} needs a CLIENT: a client id or a connection id (see edgebus client ls)`)
    const all = await list()
    const found = all.find((c) => c.clientId === name) ?? all.find((c) => String(c.id) === name)
    if (found === undefined) throw new EdgebusError('ECONNECTION_NOT_FOUND', `no connection has the client id or id ${JSON.stringify(name)} (see edgebus client ls)`)
    return found
  }
  switch (command) {
    case 'ls': {
      const rows = await list()
      if (values.json) { process.stdout.write(JSON.stringify(rows) + '\n'); break }
      printTable([['ID', 'CLIENT ID', 'PROTOCOL', 'ADDRESS', 'USER', 'SUBSCRIPTIONS', 'QUEUED', 'IN', 'OUT'],
        ...rows.map((c) => [c.id, c.clientId ?? '-', `${c.protocol}${c.version === null ? '' : ` v${c.version}`}`, c.remote, c.user ?? '-', c.subscriptions.join(',') || '-', c.queuedBytes, c.messagesIn, c.messagesOut].map(String))])
      break
    }
    case 'info': {
      const c = await resolve()
      process.stdout.write(JSON.stringify(await apiCall(base, 'GET', `/api/connections/${c.id}`), null, 2) + '\n')
      break
    }
    case 'kick': {
      const c = await resolve()
      await apiCall(base, 'DELETE', `/api/connections/${c.id}`)
      process.stdout.write(`disconnected ${c.clientId ?? `connection ${c.id}`} (${c.remote})\n`)
      break
    }
    default:
      throw new EdgebusError('EUSAGE', `unknown client command ${JSON.stringify(command)} (see edgebus client --help)`)
  }
  return ExitCode.OK
}
