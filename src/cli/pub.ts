import { EdgebusError } from '../core/errors.ts'
import { toMqttTopic } from '../subjects/mqtt-map.ts'
import { ExitCode, intOption, parseCommandLine } from './args.ts'
import { connect, connectionHelp, connectionOptions, endClient, refusedByServer, userProperties } from './client.ts'

export const pubHelp = `Usage: edgebus pub SUBJECT [MESSAGE] [options]

Publishes MESSAGE (or standard input, whole, when no MESSAGE is given) to SUBJECT.
SUBJECT is an MQTT topic (sensors/kitchen/temp) or a NATS-style subject (sensors.kitchen.temp).

Options:
  --qos 0|1|2          quality of service (default 0)
  --retain             ask the server to retain the message
  --count N            publish the message N times (default 1)
  --lines              publish each line of standard input as its own message
${connectionHelp}
  -h, --help           show this help

Exit codes: 0 published, 1 could not connect or the server refused, 2 usage error.
`

export async function pub(argv: string[]): Promise<number> {
  const { values, positionals } = parseCommandLine(argv, {
    ...connectionOptions,
    qos: { type: 'string' },
    retain: { type: 'boolean' },
    count: { type: 'string' },
    lines: { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'pub')
  if (values.help) { process.stdout.write(pubHelp); return ExitCode.OK }
  const [subject, message, ...rest] = positionals
  if (subject === undefined) throw new EdgebusError('EUSAGE', 'pub needs a SUBJECT (see edgebus pub --help)')
  if (rest.length > 0) throw new EdgebusError('EUSAGE', `unexpected argument ${JSON.stringify(rest[0])}: quote a MESSAGE that has spaces`)
  const topic = toMqttTopic(subject)
  const qos = intOption(values.qos, 'qos', 0, 2, 0) as 0 | 1 | 2
  const count = intOption(values.count, 'count', 1, 1_000_000_000, 1)
  const props = userProperties(values)

  let messages: Buffer[]
  if (message !== undefined) {
    messages = [Buffer.from(message)]
  } else {
    const input = await readStdin()
    messages = values.lines ? input.toString('utf8').split('\n').filter((l) => l.length > 0).map((l) => Buffer.from(l)) : [input]
  }

  const client = await connect(values)
  try {
    for (let i = 0; i < count; i++) {
      for (const payload of messages) {
        await new Promise<void>((resolve, reject) => {
          client.publish(topic, payload, { qos, retain: values.retain === true, ...(props ? { properties: { userProperties: props } } : {}) }, (err, packet) => {
            // MQTT 5: a PUBACK reason code of 0x80 or more means the server did not take the message
            const code = (err as { code?: unknown } | undefined)?.code ?? (packet && 'reasonCode' in packet ? packet.reasonCode : undefined)
            if (typeof code === 'number' && code >= 0x80) reject(refusedByServer(`the publish to ${topic}`, code))
            else if (err) reject(new EdgebusError('ECONNECT', `publish to ${topic} failed: ${err.message}`))
            else resolve()
          })
        })
      }
    }
  } finally {
    await endClient(client)
  }
  return ExitCode.OK
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = []
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer)
  return Buffer.concat(chunks)
}
