import type { Server as NetServer } from 'node:net'
import type { Server as HttpServer } from 'node:http'
import type { Server as TlsServer } from 'node:tls'
import { join } from 'node:path'
import { EdgebusError } from './core/errors.ts'
import { createLogger, type Logger } from './core/log.ts'
import type { EdgebusConfig } from './config/schema.ts'
import { HttpFront, sendJson } from './http/server.ts'
import { MqttBroker } from './mqtt/broker.ts'
import { createMqttTcpServer } from './mqtt/tcp.ts'
import { Security } from './auth/security.ts'
import type { Server as HttpsServer } from 'node:https'
import { FilePersistence } from './persistence/file-persistence.ts'
import { MqttWebSocketEndpoint } from './ws/mqtt-ws.ts'
import { JsonWebSocketEndpoint } from './ws/json-endpoint.ts'
import { CLIENT_JS, VERSION } from './version.ts'
import { StreamManager } from './stream/stream-manager.ts'
import { mountStreamsApi } from './http/streams-api.ts'
import { mountPublishApi } from './http/publish-api.ts'
import { mountDashboard } from './http/dashboard-api.ts'
import { HttpAuth } from './http/http-auth.ts'
import { mountMetrics } from './http/metrics-api.ts'
import { SysTopics } from './mqtt/sys-topics.ts'
import { NatsListener } from './nats/nats-listener.ts'

export interface EdgebusServer {
  readonly config: EdgebusConfig
  readonly broker: MqttBroker
  readonly streams: StreamManager
  readonly mqttPort: number
  readonly httpPort: number
  /** The NATS client protocol port, or 0 when nats.enabled is false. */
  readonly natsPort: number
  readonly log: Logger
  /** The MQTT over TLS port, or null without TLS. */
  readonly tlsPort: number | null
  readonly security: Security
  /** Reads the TLS files and the password file again (SIGHUP); a file that fails keeps the old one in force. */
  reload(): Promise<void>
  /** Stops accepting, disconnects clients, closes listeners. */
  close(): Promise<void>
}

export interface StartOptions {
  log?: Logger
}

/** The only place that knows all the parts: wires listeners, broker and HTTP routes. */
export async function startServer(config: EdgebusConfig, opts: StartOptions = {}): Promise<EdgebusServer> {
  const log = opts.log ?? createLogger(config.log.level)
  const security = await Security.open(config.auth, log)
  // node:tls and node:https load only when TLS is configured (they cost ~1.5 MB of RSS)
  const tlsConfig = config.tls.cert !== '' ? await import('./tls/tls-config.ts') : null
  const tlsOptions = tlsConfig !== null ? await tlsConfig.readTlsOptions(config.tls) : null
  // issue 5: retained messages and persistent sessions in <dataDir>/mqtt, unless persistence.enabled is false
  const persistence = config.persistence.enabled
    ? await FilePersistence.open(join(config.dataDir, 'mqtt'), { log, maxQueuedMessages: config.sessions.maxQueuedMessages, sessionExpiryMs: config.sessions.expiry })
    : null
  const broker = await MqttBroker.create(log, { ...config.limits, maxKeepAlive: Math.ceil(config.mqtt.maxKeepAlive / 1000) }, {
    // aedes' own level check closes the connection: ours (authorizePublish/Subscribe) answers instead
    maxTopicLevels: 65_535,
    // issue 5: sessions.expiry bounds MQTT 5 Session Expiry Intervals (told to the client in CONNACK)
    sessionExpiryIntervalLimit: Math.ceil(config.sessions.expiry / 1000),
    ...(persistence ? { persistence } : {}),
  }).catch(async (err: unknown) => {
    await persistence?.close()
    throw err
  })
  // dead-letter notices of consumers are published by the server, as any MQTT message
  const serverPublish = (topic: string, payload: Buffer) => broker.publish(topic, payload, { qos: 1, retain: false })
  const streams = await StreamManager.open(broker.router, config.dataDir, config.streams, log, serverPublish).catch(async (err: unknown) => {
    await broker.close()
    await persistence?.close()
    throw err
  })
  broker.attachStreams(streams)
  broker.security = security.open ? null : security
  const startedAt = Date.now()

  const http = new HttpFront(log, config.tls.http && tlsOptions !== null ? { module: await import('node:https'), options: tlsOptions } : null)
  const httpAuth = new HttpAuth(broker.security)
  mountStreamsApi(http, streams, httpAuth)
  mountPublishApi(http, broker, httpAuth)
  mountDashboard(http, broker, startedAt, httpAuth)
  mountMetrics(http, broker, streams, broker.security, startedAt)
  const sys = new SysTopics(broker, startedAt, config.sys.interval)
  let closing: Promise<void> | null = null
  http.route('GET', '/readyz', (_req, res) => {
    // ready: listening, streams open, not shutting down (load balancers stop sending on 503)
    const ready = closing === null && listening
    sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : closing !== null ? 'stopping' : 'starting' })
  })
  let listening = false
  const ws = new MqttWebSocketEndpoint(broker)
  http.upgrade('/mqtt', ws)
  const json = new JsonWebSocketEndpoint(broker, streams, log)
  http.upgrade('/ws', json)
  http.route('GET', '/client.js', (_req, res) => {
    if (CLIENT_JS === null) return sendJson(res, 404, { error: { code: 'ENOTFOUND', message: 'the browser client is part of the built bundle (npm run build)' } })
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=300', 'access-control-allow-origin': '*' })
    res.end(CLIENT_JS)
  })
  http.route('GET', '/healthz', (_req, res) => {
    sendJson(res, 200, { status: 'ok', version: VERSION, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000), connections: broker.connections.size, ...(nats !== null ? { natsConnections: nats.connectionCount } : {}), ...broker.stats, ...(persistence ? { persistence: persistence.stats } : {}) })
  })

  const tcp = config.mqtt.enabled ? createMqttTcpServer(broker) : null
  const mqtts = tlsOptions !== null ? await (await import('./mqtt/tls-server.ts')).createMqttTlsServer(broker, tlsOptions) : null
  const nats = config.nats.enabled
    ? new NatsListener(broker, log, { pingInterval: config.nats.pingInterval, host: config.host, tls: tlsOptions !== null ? { module: await import('node:tls'), options: tlsOptions } : null })
    : null
  let mqttPort = 0
  let natsPort = 0
  let httpPort: number
  let tlsPort: number | null = null
  try {
    if (tcp !== null) mqttPort = await listen(tcp, config.host, config.mqtt.port, 'MQTT', 'mqtt.port')
    if (mqtts !== null) tlsPort = await listen(mqtts, config.host, config.tls.mqttPort, 'MQTT over TLS', 'tls.mqttPort')
    httpPort = await listen(http.server, config.host, config.http.port, config.tls.http ? 'HTTPS' : 'HTTP', 'http.port')
    if (nats !== null) natsPort = await listen(nats.server, config.host, config.nats.port, 'NATS', 'nats.port')
  } catch (err) {
    tcp?.close()
    nats?.close()
    mqtts?.close()
    http.server.close()
    await broker.close()
    await streams.close()
    await persistence?.close() // issue 5
    throw err
  }
  listening = true
  log.info({ host: config.host, mqttPort, httpPort, ...(nats !== null ? { natsPort } : {}), ...(tlsPort !== null ? { tlsPort } : {}), version: VERSION }, 'edgebus ready')

  return {
    config,
    broker,
    streams,
    mqttPort,
    httpPort,
    natsPort,
    tlsPort,
    security,
    log,
    async reload() {
      if (tlsConfig !== null) {
        try {
          const fresh = await tlsConfig.readTlsOptions(config.tls)
          mqtts?.setSecureContext(fresh)
          nats?.setTlsOptions(fresh)
          if (config.tls.http) (http.server as HttpsServer).setSecureContext(fresh)
          log.info({ cert: config.tls.cert }, 'TLS certificate reloaded')
        } catch (err) {
          log.error({ code: (err as EdgebusError).code, err: (err as Error).message }, 'TLS files not reloaded: the old certificate stays in use')
        }
      }
      try {
        await security.authenticator.reload()
        if (security.authenticator.passwordPath !== null) log.info({ file: security.authenticator.passwordPath, users: security.authenticator.users }, 'password file reloaded')
      } catch (err) {
        log.error({ code: (err as EdgebusError).code, err: (err as Error).message }, 'password file not reloaded: the old one stays in force')
      }
    },
    close() {
      closing ??= (async () => {
        sys.close()
        tcp?.close()
        mqtts?.close()
        nats?.close()
        http.server.close()
        ws.close()
        json.close()
        await broker.close()
        await streams.close() // every acknowledged message is on disk once this returns
        await persistence?.close() // issue 5: after aedes, which records the sessions' disconnects
        http.server.closeAllConnections()
        log.info('edgebus stopped')
      })()
      return closing
    },
  }
}

function listen(server: NetServer | HttpServer | TlsServer, host: string, port: number, what: string, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException): void => {
      if (err.code === 'EADDRINUSE') {
        reject(new EdgebusError('EADDRINUSE',
          `${what} port ${port} on ${host} is already in use: stop the other program or choose another port (config "${key}", flag --${key.replace('.', '-')}, env EDGEBUS_${key.replace('.', '_').toUpperCase()})`,
          { port, host, key }))
      } else {
        reject(new EdgebusError('ELISTEN', `cannot listen for ${what} on ${host}:${port}: ${err.message}`, { port, host, key }))
      }
    }
    server.once('error', onError)
    server.listen(port, host, () => {
      server.off('error', onError)
      const addr = server.address()
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port)
    })
  })
}
