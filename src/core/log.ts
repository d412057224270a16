import { pino, type Logger } from 'pino'

export type { Logger }

export const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LogLevels)[number]

/** Structured JSON logs on stdout (pino); one line per event, never one per message above debug. */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream | number = 1): Logger {
  const dest = typeof destination === 'number' ? pino.destination({ fd: destination, sync: true }) : destination
  return pino({ level, base: { name: 'edgebus' }, timestamp: pino.stdTimeFunctions.isoTime }, dest as never)
}
