import { EdgebusError } from '../core/errors.ts'
import { parseDuration } from '../config/units.ts'
import { ExitCode, parseCommandLine } from './args.ts'
import { apiCall, DEFAULT_HTTP_URL, printTable } from './stream.ts'

export const consumerHelp = `Usage: edgebus consumer COMMAND STREAM [NAME] [options]

Manages a stream's durable consumers through the server's HTTP API.

Commands:
  ls STREAM              list consumers with ack floor, pending and lag
  info STREAM NAME       a consumer's definition and state (JSON)
  add STREAM NAME        create a durable consumer
  rm STREAM NAME         delete a consumer and its state
  next STREAM NAME       take messages (prints SEQ SUBJECT PAYLOAD); --ack acknowledges them

add options:
  --filter LIST          subjects or filters, comma-separated, either syntax (default: all)
  --deliver POLICY       all | new | last | lastPerSubject (default all); or --start-seq N / --start-time T
  --ack-wait DURATION    redeliver after this (default 30s)      --max-deliver N (default 5)
  --backoff LIST         delays between redeliveries, e.g. 1s,10s,1m
  --max-ack-pending N    --ack explicit|none    --replay instant|original   --dead-letter SUBJECT

next options:
  --batch N              at most N messages (default 1)
  --wait DURATION        wait this long for the first one: 2s, 500ms (a bare number is milliseconds; default 0, at most 60s)
  --ack                  acknowledge what was printed

Options:
  --server URL           the server's HTTP address (default ${DEFAULT_HTTP_URL}, or EDGEBUS_HTTP_URL)
  -h, --help             show this help

Exit codes: 0 done, 1 the server refused or cannot be reached, 2 usage or validation error.
`

export async function consumer(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    server: { type: 'string' },
    filter: { type: 'string' },
    deliver: { type: 'string' },
    'start-seq': { type: 'string' },
    'start-time': { type: 'string' },
    'ack-wait': { type: 'string' },
    'max-deliver': { type: 'string' },
    backoff: { type: 'string' },
    'max-ack-pending': { type: 'string' },
    ack: { type: 'boolean' },
    'ack-policy': { type: 'string' },
    replay: { type: 'string' },
    'dead-letter': { type: 'string' },
    batch: { type: 'string' },
    wait: { type: 'string' },
    help: { type: 'boolean', short: 'h' },
  }, 'consumer')
  if (values.help || positionals.length === 0) { process.stdout.write(consumerHelp); return values.help ? ExitCode.OK : ExitCode.USAGE }
  const [command, streamName, name] = positionals
  if (streamName === undefined) throw new EdgebusError('EUSAGE', `consumer ${command} needs a STREAM (see edgebus consumer --help)`)
  const base = ((values.server as string | undefined) ?? process.env.EDGEBUS_HTTP_URL ?? DEFAULT_HTTP_URL).replace(/\/$/, '')
  const path = `/api/streams/${encodeURIComponent(streamName)}/consumers`
  const needName = (): string => {
    if (name === undefined) throw new EdgebusError('EUSAGE', `consumer ${command} needs a NAME (see edgebus consumer --help)`)
    return encodeURIComponent(name)
  }
  switch (command) {
    case 'ls': {
      const { consumers } = await apiCall(base, 'GET', path) as { consumers: Array<Record<string, unknown>> }
      printTable([['NAME', 'ACK FLOOR', 'PENDING', 'REDELIVERED', 'LAG', 'DEAD LETTERS'],
        ...consumers.map((c) => [c.name, c.ackFloor, c.pending, c.redelivered, c.lag, c.dlq].map(String))])
      break
    }
    case 'info':
      process.stdout.write(JSON.stringify(await apiCall(base, 'GET', `${path}/${needName()}`), null, 2) + '\n')
      break
    case 'add': {
      needName()
      const def: Record<string, unknown> = { name }
      const num = (v: unknown): unknown => (typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v)
      if (values.filter) def.filter = (values.filter as string).split(',').map((s) => s.trim()).filter(Boolean)
      if (values['start-seq']) def.deliver = { startSeq: num(values['start-seq']) }
      else if (values['start-time']) def.deliver = { startTime: values['start-time'] }
      else if (values.deliver) def.deliver = values.deliver
      if (values['ack-wait']) def.ackWait = values['ack-wait']
      if (values['max-deliver']) def.maxDeliver = num(values['max-deliver'])
      if (values.backoff) def.backoff = (values.backoff as string).split(',').map((s) => s.trim())
      if (values['max-ack-pending']) def.maxAckPending = num(values['max-ack-pending'])
      if (values['ack-policy']) def.ack = values['ack-policy']
      if (values.replay) def.replay = values.replay
      if (values['dead-letter']) def.deadLetter = values['dead-letter']
      process.stdout.write(JSON.stringify(await apiCall(base, 'POST', path, def), null, 2) + '\n')
      break
    }
    case 'rm':
      await apiCall(base, 'DELETE', `${path}/${needName()}`)
      break
    case 'next': {
      const wait = parseDuration((values.wait as string | undefined) ?? '0')
      if (wait === null) throw new EdgebusError('EUSAGE', `--wait ${JSON.stringify(values.wait)} is not valid: use a duration such as 2s or 500ms (a bare number is milliseconds)`)
      const q = new URLSearchParams({ batch: (values.batch as string | undefined) ?? '1', wait: String(wait), client: 'cli' })
      const lines = await apiCall(base, 'POST', `${path}/${needName()}/next?${q}`, undefined, 'text') as string
      const got = lines.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { seq: number; subject: string; payload?: string; payload_base64?: string })
      for (const m of got) process.stdout.write(`${m.seq} ${m.subject} ${m.payload ?? `base64:${m.payload_base64 ?? ''}`}\n`)
      if (values.ack && got.length > 0) await apiCall(base, 'POST', `${path}/${needName()}/ack`, { ack: got.map((m) => m.seq) })
      break
    }
    default:
      throw new EdgebusError('EUSAGE', `unknown consumer command ${JSON.stringify(command)} (see edgebus consumer --help)`)
  }
  return ExitCode.OK
}
