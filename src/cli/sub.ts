import { EdgebusError } from '../core/errors.ts'
import { detectSyntax, mqttToNats, toMqttFilter } from '../subjects/mqtt-map.ts'
import { ExitCode, intOption, parseCommandLine } from './args.ts'
import { connect, connectionHelp, connectionOptions, endClient } from './client.ts'

export const subHelp = `Usage: edgebus sub FILTER [FILTER...] [options]

Prints every message on the matching subjects, one line each: SUBJECT PAYLOAD.
FILTER is an MQTT filter (sensors/+/temp, sensors/#) or a NATS-style one (sensors.*.temp, sensors.>);
subjects are printed in the syntax of the first FILTER.

Options:
  --qos 0|1|2          maximum quality of service (default 0)
  --count N            exit after N messages
  --json               print one JSON object per message: {"subject","payload","qos","retain"}
${connectionHelp}
  -h, --help           show this help

Exit codes: 0 done (after --count, or on SIGINT), 1 could not connect or the subscription was refused, 2 usage error.
`

export async function sub(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    ...connectionOptions,
    qos: { type: 'string' },
    count: { type: 'string' },
    json: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'sub')
  if (values.help) { process.stdout.write(subHelp); return ExitCode.OK }
  if (positionals.length === 0) throw new EdgebusError('EUSAGE', 'sub needs a FILTER (see edgebus sub --help)')
  const filters = positionals.map(toMqttFilter)
  const nats = detectSyntax(positionals[0] as string).syntax === 'nats'
  const qos = intOption(values.qos, 'qos', 0, 2, 0) as 0 | 1 | 2
  const count = intOption(values.count, 'count', 1, Number.MAX_SAFE_INTEGER, 0)

  const client = await connect(values)
  const granted = await new Promise<Array<{ qos: number }>>((resolve, reject) => {
    client.subscribe(filters.map((f) => ({ topic: f, qos })).reduce((o, s) => ({ ...o, [s.topic]: { qos: s.qos } }), {}), (err, g) => {
      if (err) reject(new EdgebusError('ECONNECT', `subscribe failed: ${err.message}`))
      else resolve(g ?? [])
    })
  })
  const refused = granted.find((g) => g.qos >= 0x80)
  if (refused) {
    await endClient(client)
    throw new EdgebusError('ECONNECT', `the server refused a subscription (reason code 0x${refused.qos.toString(16)})`)
  }

  return new Promise<number>((resolve) => {
    let received = 0
    const finish = (): void => { endClient(client).then(() => resolve(ExitCode.OK)) }
    client.on('message', (topic, payload, packet) => {
      const subject = nats ? mqttToNats(topic) : topic
      const line = values.json
        ? JSON.stringify({ subject, payload: payload.toString('utf8'), qos: packet.qos, retain: packet.retain })
        : `${subject} ${payload.toString('utf8')}`
      process.stdout.write(line + '\n')
      received++
      if (count > 0 && received >= count) finish()
    })
    client.on('close', () => resolve(received > 0 || count === 0 ? ExitCode.OK : ExitCode.FAILURE))
    process.once('SIGINT', finish)
    process.once('SIGTERM', finish)
  })
}
