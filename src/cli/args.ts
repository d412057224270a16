import { parseArgs, type ParseArgsConfig } from 'node:util'
import { EdgebusError } from '../core/errors.ts'

export type OptionSpec = NonNullable<ParseArgsConfig['options']>

/** Strict argument parsing: an unknown flag or a missing value is a usage error (exit 2). */
export function parseCommandLine<T extends OptionSpec>(argv: string[], options: T, command: string) {
  try {
    return parseArgs({ args: argv, options, allowPositionals: true as const, strict: true as const })
  } catch (err) {
    throw new EdgebusError('EUSAGE', `${(err as Error).message.replace(/\. To specify.*$/s, '')} (see edgebus ${command} --help)`)
  }
}

/** Exit codes, documented in the README. */
export const ExitCode = {
  OK: 0,
  /** Runtime failure: cannot connect, port taken, server refused. */
  FAILURE: 1,
  /** Usage or configuration error. */
  USAGE: 2,
} as const

export function intOption(value: string | undefined, name: string, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback
  const n = Number(value)
  if (!Number.isInteger(n) || n < min || n > max) {
    throw new EdgebusError('EUSAGE', `--${name} ${JSON.stringify(value)} is not valid: use a whole number from ${min} to ${max}`)
  }
  return n
}
