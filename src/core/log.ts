import { writeSync } from 'node:fs'

export const LogLevels = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const
export type LogLevel = (typeof LogLevels)[number]

/** pino's numbers for the levels, so log tooling that reads pino reads ours. */
const LEVEL_VALUES: Record<LogLevel, number> = { fatal: 60, error: 50, warn: 40, info: 30, debug: 20, trace: 10, silent: Infinity }

type LogFn = (fieldsOrMessage: object | string, message?: string) => void

export interface Logger {
  fatal: LogFn
  error: LogFn
  warn: LogFn
  info: LogFn
  debug: LogFn
  trace: LogFn
}

const noop: LogFn = () => {}

/** Errors as pino shows them: type, message, stack. */
function replacer(_key: string, value: unknown): unknown {
  return value instanceof Error ? { type: value.name, message: value.message, stack: value.stack } : value
}

/**
 * Structured JSON logs on stdout, one line per event, in pino's shape
 * (`{"level":30,"time":"…","name":"edgebus",…fields,"msg":"…"}`), written synchronously so a
 * crash or exit loses nothing. Never one line per message above debug. Ours rather than pino:
 * this is all edgebus needs of it, and pino's transports and worker threads cost a bundle and
 * RSS a gateway does not need.
 */
export function createLogger(level: LogLevel, destination: NodeJS.WritableStream | number = 1): Logger {
  const threshold = LEVEL_VALUES[level]
  const write = typeof destination === 'number'
    ? (line: string): void => { try { writeSync(destination, line) } catch { /* stdout gone: nothing to tell */ } }
    : (line: string): void => { destination.write(line) }
  const make = (name: LogLevel): LogFn => {
    const value = LEVEL_VALUES[name]
    if (value < threshold) return noop
    const head = `{"level":${value},"time":"`
    return (fieldsOrMessage, message) => {
      const fields = typeof fieldsOrMessage === 'string' ? null : fieldsOrMessage
      const msg = typeof fieldsOrMessage === 'string' ? fieldsOrMessage : message
      let body = ''
      if (fields !== null) {
        try {
          const json = JSON.stringify(fields, replacer) as string | undefined
          if (json !== undefined && json.length > 2) body = ',' + json.slice(1, -1)
        } catch {
          body = ',"fields":"(not serialisable)"'
        }
      }
      write(`${head}${new Date().toISOString()}","name":"edgebus"${body}${msg === undefined ? '' : `,"msg":${JSON.stringify(msg)}`}}\n`)
    }
  }
  return { fatal: make('fatal'), error: make('error'), warn: make('warn'), info: make('info'), debug: make('debug'), trace: make('trace') }
}
