/** edgebus' public API. Internals are not exported; tests import them by path. */
export { startServer, type EdgebusServer, type StartOptions } from './server.ts'
export { loadConfig, type LoadOptions, type LoadedConfig } from './config/load.ts'
export type { EdgebusConfig } from './config/schema.ts'
export { EdgebusError, ErrorCodes, type ErrorCode } from './core/errors.ts'
export { mqttToNats, natsToMqtt, toMqttFilter, toMqttTopic } from './subjects/mqtt-map.ts'
export { VERSION } from './version.ts'
