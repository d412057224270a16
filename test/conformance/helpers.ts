import { join } from 'node:path'
import { expect } from 'vitest'
import { ROOT, run, startEdgebus, type StartedEdgebus } from '../support/edgebus.ts'
import { T, type Raw } from './wire.ts'

export type Obs = Record<string, unknown> & { error?: string; _seconds?: number }
export interface PahoRun { results: Record<string, Obs>; threadErrors: string[]; stderr: string }

/** The built server on ephemeral loopback ports, with $SYS published every second (for the $-topic checks). */
export function startConformanceServer(extraArgs: string[] = []): Promise<StartedEdgebus> {
  return startEdgebus({ args: ['--sys-interval', '1s', ...extraArgs] })
}

/**
 * Runs one of the paho scripts (every scenario in its own thread) with Debian's python3, which has
 * paho-mqtt 1.6.1 (the pyenv python3 on PATH does not), and parses its JSON report.
 */
export async function runPaho(script: 'interop311.py' | 'interop5.py', port: number): Promise<PahoRun> {
  const res = await run('/usr/bin/python3', [join(ROOT, 'test', 'conformance', 'py', script), String(port)], { timeoutMs: 30_000 })
  const line = res.stdout.trim().split('\n').pop() ?? ''
  let parsed: Record<string, unknown>
  try {
    parsed = JSON.parse(line) as Record<string, unknown>
  } catch {
    throw new Error(`${script} exited ${res.code} without a JSON report:\n${res.stdout}\n${res.stderr}`)
  }
  const threadErrors = (parsed._threadErrors as string[] | undefined) ?? []
  delete parsed._threadErrors
  return { results: parsed as Record<string, Obs>, threadErrors, stderr: res.stderr }
}

/** The observations of one scenario; a scenario that raised fails the test with its traceback. */
export function scenario<O = Record<string, any>>(r: PahoRun, name: string): O { // eslint-disable-line @typescript-eslint/no-explicit-any
  const o = r.results[name]
  if (!o) throw new Error(`scenario ${name} missing from the paho report: ${Object.keys(r.results).join(', ')}\n${r.stderr}`)
  if (o.error) throw new Error(`scenario ${name} raised:\n${o.error}`)
  return o as O
}

/**
 * A server that detects a protocol error must close the network connection [MQTT-4.8.0-1] (3.1.1),
 * [MQTT-4.13.1-1] (5.0); an MQTT 5 server SHOULD send a DISCONNECT with a reason code first. Resolves
 * with the reason code of that DISCONNECT, if one came, after checking it is one of `allowed`.
 */
export async function expectClosedForError(c: Raw, allowed: number[] = [], timeoutMs = 3000): Promise<number | null> {
  const closed = await c.waitClosed(timeoutMs)
  expect(closed, `connection still open ${timeoutMs} ms after the offending packet; received: ${c.describe()}`).toBe(true)
  const d = c.all(T.DISCONNECT)
  if (d.length === 0) return null
  const reason = d[0]?.reason ?? 0
  if (allowed.length) expect(allowed, `DISCONNECT reason 0x${reason.toString(16)} is not one the spec gives for this error`).toContain(reason)
  return reason
}

export const hex = (n: number | null | undefined): string => (n === null || n === undefined ? 'none' : `0x${n.toString(16).padStart(2, '0')}`)

/** What each filter of the Paho wildcard matrix receives of its topics (interop scenario wildcard_matrix). */
export const PAHO_MATRIX_RECEIVED = {
  'TopicA/+': ['TopicA/B', 'TopicA/C'],
  '+/C': ['Topic/C', 'TopicA/C'],
  '#': ['/TopicA', 'Topic/C', 'TopicA', 'TopicA/B', 'TopicA/B/C', 'TopicA/C'],
  '/#': ['/TopicA'],
  '/+': ['/TopicA'],
  '+/+': ['/TopicA', 'Topic/C', 'TopicA/B', 'TopicA/C'],
  'TopicA/#': ['TopicA', 'TopicA/B', 'TopicA/B/C', 'TopicA/C'], // '#' also matches the parent level
  '+': ['TopicA'],
  'TopicA/+/C': ['TopicA/B/C'],
  'TopicA/B/C': ['TopicA/B/C'],
}
