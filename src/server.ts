import type { Server as NetServer } from 'node:net'
import type { Server as HttpServer } from 'node:http'
import type { Server as TlsServer } from 'node:tls'
import { join } from 'node:path'
import { EdgebusError } from './core/errors.ts'
import { createLogger, type Logger } from './core/log.ts'
import { LogLimiter } from './core/log-limiter.ts'
import { IdleCollector } from './core/idle-gc.ts'
import { capByOpenFiles, watchListener } from './limits/fd-limit.ts'
import type { EdgebusConfig } from './config/schema.ts'
import { HttpFront, sendJson } from './http/server.ts'
import { parseCorsPolicy } from './http/cors.ts'
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
import { mountConnectionsApi } from './http/connections-api.ts'
import { mountAuthApi, reapply } from './http/auth-api.ts'
import { HttpAuth } from './http/http-auth.ts'
import { mountMetrics } from './http/metrics-api.ts'
import { mountClusterApi } from './http/cluster-api.ts'
import { SysTopics } from './mqtt/sys-topics.ts'
import { BridgeManager } from './bridge/bridge-manager.ts'
import { withOutboxes } from './bridge/bridge-config.ts'
import { mountBridgesApi } from './http/bridges-api.ts'
import { RateHistory } from './core/rate-history.ts'
import { SubjectRates } from './router/subject-rates.ts'
import { NatsListener } from './nats/nats-listener.ts'
import type { Cluster } from './cluster/cluster.ts'

export interface EdgebusServer {
  readonly config: EdgebusConfig
  readonly broker: MqttBroker
  readonly streams: StreamManager
  readonly bridges: BridgeManager
  readonly mqttPort: number
  readonly httpPort: number
  /** The NATS client protocol port, or 0 when nats.enabled is false. */
  readonly natsPort: number
  readonly log: Logger
  /** The MQTT over TLS port, or null without TLS. */
  readonly tlsPort: number | null
  readonly security: Security
  /**
   * The dashboard's rate history (GET /api/rates): a part with counters of its own registers them
   * here, e.g. `rates.family('bridge.', () => bridges.map((b) => [b.name + '.in', b.messagesIn]))`.
   */
  readonly rates: RateHistory
  /**
   * Reads the TLS files, the password file and the run-time users again (SIGHUP); with `reread` (the
   * config file read again) its `auth.acl` comes into force too, on live connections. A file that
   * fails keeps the old one in force.
   */
  reload(reread?: EdgebusConfig): Promise<void>
  /** Stops accepting, disconnects clients, closes listeners. */
  close(): Promise<void>
}

export interface StartOptions {
  log?: Logger
}

/** The only place that knows all the parts: wires listeners, broker and HTTP routes. */
export async function startServer(config: EdgebusConfig, opts: StartOptions = {}): Promise<EdgebusServer> {
  const log = opts.log ?? createLogger(config.log.level)
  // issue 20: users and rules added at run time are kept in <dataDir>/auth
  const security = await Security.open(config.auth, log, join(config.dataDir, 'auth'))
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
    await closeStores({ persistence })
    throw err
  })
  // issue 15: connections capped below `ulimit -n`, warned at start
  capByOpenFiles(config.limits.maxConnections, broker.gate, log)
  // issue 17: one of several nodes over NATS; the NATS client loads only when cluster.urls is set.
  // Joined before the streams open and clients connect, so every subscription is interest in the cluster
  const cluster = config.cluster.urls !== ''
    ? await (await import('./cluster/cluster.ts')).Cluster.start(broker, config, log).catch(async (err: unknown) => {
      await closeStores({ broker, persistence })
      throw err
    })
    : null
  // dead-letter notices of consumers are published by the server, as any MQTT message
  const serverPublish = (topic: string, payload: Buffer) => broker.publish(topic, payload, { qos: 1, retain: false })
  // issue 14: each bridge's outbox is a stream (made for it, or a declared one with its consumer added)
  const streams = await StreamManager.open(broker.router, config.dataDir, withOutboxes(config.streams, config.bridges), log, serverPublish).catch(async (err: unknown) => {
    await closeStores({ broker, cluster, persistence })
    throw err
  })
  broker.attachStreams(streams)
  // issue 14: after the streams (outboxes), before the listeners; what comes in from a remote takes the one publish path
  const bridges = await BridgeManager.start(config.bridges, streams, (topic, payload, qos, userProperties) => broker.publish(topic, payload, { qos, retain: false, properties: { userProperties } }), log)
    .catch(async (err: unknown) => {
      await closeStores({ broker, cluster, streams, persistence })
      throw err
    })
  broker.security = security.open ? null : security
  const startedAt = Date.now()

  const http = new HttpFront(log, config.tls.http && tlsOptions !== null ? { module: await import('node:https'), options: tlsOptions } : null, parseCorsPolicy(config.http.cors))
  const httpAuth = new HttpAuth(broker.security)
  mountStreamsApi(http, streams, httpAuth)
  mountBridgesApi(http, bridges, httpAuth)
  mountPublishApi(http, broker, httpAuth)
  // issue 20: the last hour per second, on the server (a dashboard opened late shows it at once)
  const rates = new RateHistory()
  rates.series('messages.in', () => broker.stats.messagesIn)
  rates.series('messages.out', () => broker.stats.messagesOut)
  rates.family('stream.', () => streams.list().map((s) => [s.name, s.lastSeq] as const))
  rates.family('bridge.', () => bridges.list().flatMap((b) => [[`${b.name}.acked`, b.acked], [`${b.name}.received`, b.received]] as const))
  const subjects = new SubjectRates(broker.router)
  mountDashboard(http, broker, startedAt, httpAuth, rates, subjects)
  mountConnectionsApi(http, broker, httpAuth)
  mountMetrics(http, broker, streams, broker.security, startedAt, bridges, cluster)
  mountClusterApi(http, cluster, httpAuth)
  const sys = new SysTopics(broker, startedAt, config.sys.interval, bridges)
  let closing: Promise<void> | null = null
  // issue 15: a store that cannot write (a full disk) refuses messages until it can again; the probes say so
  const degraded = (): Array<{ store: string; code: string; message: string }> => {
    const out = streams.failures()
    const p = persistence?.failure
    if (p) out.unshift({ store: 'mqtt state', code: p.code, message: p.message })
    return out
  }
  http.route('GET', '/readyz', (_req, res) => {
    // ready: listening, streams open, stores writable, not shutting down (load balancers stop sending on 503)
    const ready = closing === null && listening
    const failing = ready ? degraded() : []
    if (failing.length > 0) return sendJson(res, 503, { status: 'degraded', reason: failing.map((f) => `${f.store}: ${f.code}`).join('; '), degraded: failing })
    sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : closing !== null ? 'stopping' : 'starting' })
  })
  let listening = false
  const ws = new MqttWebSocketEndpoint(broker)
  http.upgrade('/mqtt', ws)
  const json = new JsonWebSocketEndpoint(broker, streams, log)
  http.upgrade('/ws', json)
  mountAuthApi(http, broker, security, httpAuth, [json]) // /ws sessions follow run-time ACL changes too
  http.route('GET', '/client.js', (_req, res) => {
    if (CLIENT_JS === null) return sendJson(res, 404, { error: { code: 'ENOTFOUND', message: 'the browser client is part of the built bundle (npm run build)' } })
    res.writeHead(200, { 'content-type': 'text/javascript; charset=utf-8', 'cache-control': 'public, max-age=300', 'access-control-allow-origin': '*' })
    res.end(CLIENT_JS)
  }, null)
  http.route('GET', '/healthz', (_req, res) => {
    const failing = degraded()
    sendJson(res, failing.length > 0 ? 503 : 200, {
      status: failing.length > 0 ? 'degraded' : 'ok', ...(failing.length > 0 ? { degraded: failing } : {}),
      version: VERSION, uptimeSeconds: Math.round((Date.now() - startedAt) / 1000), connections: broker.connections.size, ...(nats !== null ? { natsConnections: nats.connectionCount } : {}), ...broker.stats, ...(persistence ? { persistence: persistence.stats } : {}),
    })
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
    await closeStores({ bridges, broker, cluster, streams, persistence })
    throw err
  }
  const limiter = new LogLimiter(log)
  // issue 15: a burst's dead Buffers are given back once the server is quiet
  const idleGc = new IdleCollector()
  for (const [server, what] of [[tcp, 'MQTT'], [mqtts, 'MQTT over TLS'], [http.server, 'HTTP'], [nats?.server ?? null, 'NATS']] as const) if (server !== null) watchListener(server, what, limiter)
  listening = true
  rates.start()
  subjects.start()
  log.info({ host: config.host, mqttPort, httpPort, ...(nats !== null ? { natsPort } : {}), ...(tlsPort !== null ? { tlsPort } : {}), version: VERSION }, 'edgebus ready')

  return {
    config,
    broker,
    streams,
    bridges,
    mqttPort,
    httpPort,
    natsPort,
    tlsPort,
    security,
    rates,
    log,
    async reload(reread?: EdgebusConfig) {
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
      if (reread !== undefined && broker.security !== null) {
        // issue 20: the config file's ACL (the rest of the file needs a restart)
        security.acl.setConfigRules(reread.auth.acl)
        log.info({ users: reread.auth.acl === null ? 0 : Object.keys(reread.auth.acl.users).length }, 'ACL of the config file reloaded')
      } else if (reread !== undefined && reread.auth.acl !== null) {
        log.warn({ key: 'auth' }, 'the config file now has an ACL but the server started without security: restart to enforce it')
      }
      try {
        // issue 20: run-time users and rules, edited by hand or restored: in force on live connections too
        await security.reloadRuntime()
        if (security.runtime !== null) log.info({ dir: security.runtime.dir }, 'run-time users and ACLs reloaded')
      } catch (err) {
        log.error({ code: (err as EdgebusError).code, err: (err as Error).message }, 'run-time users and ACLs not reloaded: the old ones stay in force')
      }
      // what changed applies to live connections now
      httpAuth.forgetCredentials()
      if (broker.security !== null) reapply(broker, security, null, false, [json])
    },
    close() {
      closing ??= (async () => {
        sys.close()
        rates.stop()
        subjects.stop()
        tcp?.close()
        mqtts?.close()
        nats?.close()
        http.server.close()
        ws.close()
        json.close()
        await closeStores({ bridges, broker, cluster, streams, persistence })
        broker.refusals.flush()
        http.server.closeAllConnections()
        limiter.flush()
        idleGc.stop()
        log.info('edgebus stopped')
      })()
      return closing
    },
  }
}

/**
 * Closes the parts that hold clients and data, those opened so far, in the one order that keeps
 * what was acknowledged: at close and wherever start-up fails.
 */
async function closeStores(p: { bridges?: BridgeManager; broker?: MqttBroker; cluster?: Cluster | null; streams?: StreamManager; persistence?: FilePersistence | null }): Promise<void> {
  await p.bridges?.close() // before the streams: their outboxes are streams
  await p.broker?.close()
  await p.cluster?.close() // after the clients: a goodbye, so the others publish no wills of ours
  await p.streams?.close() // every acknowledged message is on disk once this returns
  await p.persistence?.close() // issue 5: after aedes, which records the sessions' disconnects
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
