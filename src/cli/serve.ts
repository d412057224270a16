import { ConfigFields, flagName, envName, type ConfigKey } from '../config/schema.ts'
import { loadConfig, printableConfig } from '../config/load.ts'
import { startServer } from '../server.ts'
import { parseCommandLine, ExitCode, type OptionSpec } from './args.ts'

const configFlags: OptionSpec = Object.fromEntries(
  (Object.keys(ConfigFields) as ConfigKey[]).map((key) => [flagName(key).slice(2), { type: 'string' as const }]),
)

export function serveHelp(): string {
  const rows = (Object.keys(ConfigFields) as ConfigKey[]).map((key) => {
    const f = ConfigFields[key]
    return `  ${flagName(key).padEnd(30)} ${f.doc} (default ${JSON.stringify(f.default)}; file "${key}", env ${envName(key)})`
  })
  return `Usage: edgebus serve [options]

Starts the server: MQTT over TCP, and HTTP with MQTT over WebSocket on /mqtt and /healthz.
Settings merge in this order, later winning: defaults < config file < EDGEBUS_* environment < flags.

Options:
  --config PATH                  JSON config file (default: ./edgebus.json if it exists)
  --print-config                 print the merged configuration as JSON and exit
  -h, --help                     show this help
${rows.join('\n')}

Sections of the config file only (JSON; no environment variable or flag sets them):
  "streams": [...]               streams with their limits and durable consumers (README "Streams", src/stream/CONSUMERS.md)
  "auth": {...}                  users, tokens and ACLs: passwordFile, allowAnonymous, tokenSecret, acl (docs/security.md)
Relative paths in the config file (dataDir, tls.*, auth.passwordFile) are relative to the file's folder.
`
}

export async function serve(argv: string[]): Promise<number> {
  const { values } = parseCommandLine(argv, {
    ...configFlags,
    config: { type: 'string' },
    'print-config': { type: 'boolean' },
    help: { type: 'boolean', short: 'h' },
  }, 'serve')
  if (values.help) {
    process.stdout.write(serveHelp())
    return ExitCode.OK
  }
  const flags: Partial<Record<ConfigKey, string>> = {}
  for (const key of Object.keys(ConfigFields) as ConfigKey[]) {
    const v = (values as Record<string, unknown>)[flagName(key).slice(2)]
    if (typeof v === 'string') flags[key] = v
  }
  const { config, file } = loadConfig({ configPath: values.config as string | undefined, flags })
  if (values['print-config']) {
    process.stdout.write(JSON.stringify(printableConfig(config), null, 2) + '\n')
    return ExitCode.OK
  }
  // listen for signals before the server says it is ready, so an early SIGTERM still shuts down cleanly
  let signalled: string | null = null
  let onSignal: ((signal: string) => void) | null = null
  const handler = (signal: string): void => { signalled ??= signal; onSignal?.(signal) }
  process.once('SIGINT', handler)
  process.once('SIGTERM', handler)

  const server = await startServer(config)
  if (file) server.log.info({ file }, 'config file read')
  // SIGHUP: renewed TLS certificates, password file and ACL changes take effect without a restart
  const onHup = (): void => {
    let fresh
    try {
      fresh = loadConfig({ configPath: values.config as string | undefined, flags }).config
    } catch (err) {
      server.log.error({ code: (err as { code?: string }).code, err: (err as Error).message }, 'config file not read again: its ACL in force stays')
    }
    void server.reload(fresh)
  }
  process.on('SIGHUP', onHup)
  return new Promise<number>((resolve) => {
    let stopping = false
    const stop = (signal: string): void => {
      if (stopping) return
      stopping = true
      server.log.info({ signal }, 'shutting down')
      // graceful shutdown must finish in 5 s, whatever a client does
      const force = setTimeout(() => {
        server.log.warn('shutdown took longer than 5 s: exiting anyway')
        resolve(ExitCode.OK)
      }, 4500)
      force.unref()
      server.close().then(() => { clearTimeout(force); resolve(ExitCode.OK) }, () => resolve(ExitCode.FAILURE))
    }
    onSignal = stop
    if (signalled !== null) stop(signalled)
  })
}
