import { readFileSync } from 'node:fs'
import { EdgebusError, ErrorCodes, type ErrorCode } from '../core/errors.ts'
import { ExitCode, parseCommandLine } from './args.ts'

export const DEFAULT_HTTP_URL = 'http://localhost:8080'

export const streamHelp = `Usage: edgebus stream COMMAND [options]

Manages streams through the server's HTTP API.

Commands:
  ls                     list streams with messages, bytes and sequences
  info NAME              a stream's definition and state (JSON)
  add NAME [limits]      create a stream (--subjects is required)
  edit NAME [limits]     change the limits given of a stream created at run time (the others are kept)
  rm NAME                delete a stream created at run time, with its messages
  purge NAME             drop every message of a stream
  view NAME              print a stream's messages: SEQ SUBJECT PAYLOAD per line

Limits (add, edit):
  --subjects LIST        subjects or filters, comma-separated, either syntax: 'sensors.>,meters/+/kwh'
  --max-msgs N           --max-bytes SIZE      --max-age DURATION   --max-msg-size SIZE
  --max-msgs-per-subject N                     --discard old|new    --duplicate-window DURATION
  --fsync always|batch|none
  --file PATH            read the definition from a JSON file instead

View:
  --from-seq N           --from-time TIME (ISO 8601 or ms)     --last N
  --filter FILTER        only matching subjects (either syntax)
  --limit N              at most N messages (default 1000; 0 = all)
  --follow               keep printing new messages as they are stored (Ctrl-C ends)

Options:
  --server URL           the server's HTTP address (default ${DEFAULT_HTTP_URL}, or EDGEBUS_HTTP_URL)
  --json                 print JSON (ls)
  (a server with users: an access token in EDGEBUS_TOKEN)
  -h, --help             show this help

Exit codes: 0 done, 1 the server refused or cannot be reached, 2 usage or validation error.
Errors print the server's code: edgebus: ESTREAM_EXISTS: ...
`

const limitFlags = {
  'max-msgs': 'maxMsgs', 'max-bytes': 'maxBytes', 'max-age': 'maxAge', 'max-msg-size': 'maxMsgSize',
  'max-msgs-per-subject': 'maxMsgsPerSubject', discard: 'discard', 'duplicate-window': 'duplicateWindow', fsync: 'fsync',
} as const
const COUNTS = new Set(['maxMsgs', 'maxMsgsPerSubject'])

export async function stream(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    json: { type: 'boolean' },
    subjects: { type: 'string' },
    file: { type: 'string' },
    'from-seq': { type: 'string' },
    'from-time': { type: 'string' },
    last: { type: 'string' },
    filter: { type: 'string' },
    limit: { type: 'string' },
    follow: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
    ...Object.fromEntries(Object.keys(limitFlags).map((k) => [k, { type: 'string' as const }])),
  }, 'stream')
  if (values.help || positionals.length === 0) { process.stdout.write(streamHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, name] = positionals
  const base = ((values.server as string | undefined) ?? process.env.EDGEBUS_HTTP_URL ?? DEFAULT_HTTP_URL).replace(/\/$/, '')
  const needName = (): string => {
    if (name === undefined) throw new EdgebusError('EUSAGE', `stream ${command} needs a NAME (see edgebus stream --help)`)
    return encodeURIComponent(name)
  }
  const definition = (): Record<string, unknown> => {
    if (values.file) {
      try {
        return { ...(JSON.parse(readFileSync(values.file as string, 'utf8')) as Record<string, unknown>), name }
      } catch (err) {
        throw new EdgebusError('EUSAGE', `--file ${values.file as string}: ${(err as Error).message}`)
      }
    }
    const def: Record<string, unknown> = { name }
    if (values.subjects) def.subjects = (values.subjects as string).split(',').map((s) => s.trim()).filter(Boolean)
    for (const [flag, key] of Object.entries(limitFlags)) {
      const v = (values as Record<string, unknown>)[flag]
      if (typeof v === 'string') def[key] = COUNTS.has(key) && /^\d+$/.test(v) ? Number(v) : v
    }
    return def
  }
  switch (command) {
    case 'ls': {
      const { streams } = await apiCall(base, 'GET', '/api/streams') as { streams: Array<Record<string, unknown>> }
      if (values.json) { process.stdout.write(JSON.stringify(streams) + '\n'); break }
      const rows = streams.map((s) => [s.name, (s.subjects as string[]).join(','), s.messages, s.bytes, s.firstSeq, s.lastSeq].map(String))
      printTable([['NAME', 'SUBJECTS', 'MESSAGES', 'BYTES', 'FIRST', 'LAST'], ...rows])
      break
    }
    case 'info':
      process.stdout.write(JSON.stringify(await apiCall(base, 'GET', `/api/streams/${needName()}`), null, 2) + '\n')
      break
    case 'add': {
      needName()
      const def = definition()
      if (!values.file && def.subjects === undefined) throw new EdgebusError('EUSAGE', 'stream add needs --subjects (or --file)')
      process.stdout.write(JSON.stringify(await apiCall(base, 'POST', '/api/streams', def), null, 2) + '\n')
      break
    }
    case 'edit':
      process.stdout.write(JSON.stringify(await apiCall(base, 'PUT', `/api/streams/${needName()}`, definition()), null, 2) + '\n')
      break
    case 'rm':
      await apiCall(base, 'DELETE', `/api/streams/${needName()}`)
      break
    case 'view': {
      const q = new URLSearchParams()
      for (const [flag, param] of [['from-seq', 'from_seq'], ['from-time', 'from_time'], ['last', 'last'], ['filter', 'filter'], ['limit', 'limit']] as const) {
        const v = (values as Record<string, unknown>)[flag]
        if (typeof v === 'string') q.set(param, v)
      }
      if (values.follow) q.set('follow', '1')
      await view(base, `/api/streams/${needName()}/messages?${q}`, values.json === true, values.follow === true)
      break
    }
    case 'purge':
      process.stdout.write(JSON.stringify(await apiCall(base, 'POST', `/api/streams/${needName()}/purge`), null, 2) + '\n')
      break
    default:
      throw new EdgebusError('EUSAGE', `unknown stream command ${JSON.stringify(command)} (see edgebus stream --help)`)
  }
  return ExitCode.OK
}

/** Streams the replay endpoint (NDJSON, or SSE with --follow) to stdout, one line per message. */
async function view(base: string, path: string, json: boolean, follow: boolean): Promise<void> {
  let res: Response
  try {
    res = await fetch(base + path, { headers: authHeader() })
  } catch (err) {
    throw new EdgebusError('ECONNECT', `cannot reach ${base}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`)
  }
  if (!res.ok) throw await serverRefusal(res)
  const print = (line: string): void => {
    if (json) { process.stdout.write(line + '\n'); return }
    const m = JSON.parse(line) as { seq: number; subject: string; payload?: string; payload_base64?: string }
    process.stdout.write(`${m.seq} ${m.subject} ${m.payload ?? `base64:${m.payload_base64 ?? ''}`}\n`)
  }
  const decoder = new TextDecoder()
  let rest = ''
  for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
    rest += decoder.decode(chunk, { stream: true })
    let i: number
    while ((i = rest.indexOf('\n')) !== -1) {
      const line = rest.slice(0, i)
      rest = rest.slice(i + 1)
      if (!follow) { if (line !== '') print(line); continue }
      if (line.startsWith('data: ')) print(line.slice(6)) // SSE: only the data lines carry messages
    }
  }
}

/** EDGEBUS_TOKEN, an access token for a server with users (docs/security.md), as a Bearer header. */
function authHeader(): Record<string, string> {
  const token = process.env.EDGEBUS_TOKEN
  return token === undefined || token === '' ? {} : { authorization: `Bearer ${token}` }
}

/** One API call; the server's error code and message become ours. */
export async function apiCall(base: string, method: string, path: string, body?: unknown, as: 'json' | 'text' = 'json'): Promise<unknown> {
  let res: Response
  try {
    res = await fetch(base + path, {
      method,
      headers: { ...authHeader(), ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      body: body === undefined ? undefined : JSON.stringify(body),
    })
  } catch (err) {
    throw new EdgebusError('ECONNECT', `cannot reach ${base}: ${((err as Error).cause as Error | undefined)?.message ?? (err as Error).message}`)
  }
  if (res.status === 204) return null
  if (!res.ok) throw await serverRefusal(res)
  return as === 'text' ? res.text() : res.json().catch(() => ({}))
}

/**
 * The error of an answer that says no: the server's own code and message (`ESTREAM_EXISTS: ...`),
 * so scripts can react to it, and a validation error exits 2 as it would here; EREFUSED with the
 * HTTP status when the answer carries no code edgebus knows.
 */
async function serverRefusal(res: Response): Promise<EdgebusError> {
  const e = (await res.json().catch(() => ({})) as { error?: { code?: unknown; message?: unknown } }).error
  const code = typeof e?.code === 'string' && Object.hasOwn(ErrorCodes, e.code) ? e.code as ErrorCode : null
  const message = typeof e?.message === 'string' ? e.message : res.statusText
  if (code !== null) return new EdgebusError(code, message, { status: res.status })
  return new EdgebusError('EREFUSED', `the server answered ${res.status}${typeof e?.code === 'string' ? ` ${e.code}` : ''}: ${message}`, { status: res.status })
}

export function printTable(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)))
  for (const r of rows) process.stdout.write(r.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ').trimEnd() + '\n')
}
