import { EdgebusError } from '../core/errors.ts'
import { detectSyntax, mqttToNats, toMqttFilter } from '../subjects/mqtt-map.ts'
import { ExitCode, intOption, parseCommandLine } from './args.ts'
import { connect, connectionHelp, connectionOptions, endClient, refusedByServer, userProperties } from './client.ts'

export const subHelp = `Usage: edgebus sub FILTER [FILTER...] [options]

Prints every message on the matching subjects, one line each: SUBJECT PAYLOAD.
FILTER is an MQTT filter (sensors/+/temp, sensors/#) or a NATS-style one (sensors.*.temp, sensors.>);
subjects are printed in the syntax of the first FILTER.

Options:
  --qos 0|1|2          maximum quality of service (default 0)
  --count N            exit after N messages
  --json               print one JSON object per message: {"subject","payload","qos","retain"} (and "userProperties")
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

  const props = userProperties(values)
  const client = await connect(values)
  const granted = await new Promise<Array<{ qos: number }>>((resolve, reject) => {
    const topics = Object.fromEntries(filters.map((f) => [f, { qos }]))
    client.subscribe(topics, props ? { properties: { userProperties: props } } : {}, (err, g) => {
      // a SUBACK with a failure code: MQTT.js errs and carries the packet
      const suback = (err as { packet?: { granted?: unknown } } | null)?.packet?.granted
      if (Array.isArray(suback)) resolve(suback.map((code) => ({ qos: Number(code) })))
      else if (err) reject(new EdgebusError('ECONNECT', `subscribe failed: ${err.message}`))
      else resolve(g ?? [])
    })
  })
  const refused = granted.find((g) => g.qos >= 0x80)
  if (refused) {
    await endClient(client)
    throw refusedByServer('a subscription', refused.qos)
  }

  return new Promise<number>((resolve) => {
    let received = 0
    const finish = (): void => { endClient(client).then(() => resolve(ExitCode.OK)) }
    client.on('message', (topic, payload, packet) => {
      const subject = nats ? mqttToNats(topic) : topic
      const up = packet.properties?.userProperties
      const line = values.json
        ? JSON.stringify({ subject, payload: payload.toString('utf8'), qos: packet.qos, retain: packet.retain, ...(up ? { userProperties: up } : {}) })
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
