// Readers for the deploy/ files, for their tests: a systemd unit's keys and a Dockerfile's
// instructions, as the tools read them (enough of their syntax to check what matters).
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { ROOT } from '../support/edgebus.ts'

export const readDeploy = (name: string): string => readFileSync(join(ROOT, 'deploy', name), 'utf8')

/** A unit file's settings: section -> key -> values (a key may repeat). */
export function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>()
  let current: Map<string, string[]> | null = null
  for (const raw of text.replace(/\\\n/g, ' ').split('\n')) {
    const line = raw.trim()
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue
    const section = /^\[(.+)\]$/.exec(line)
    if (section) {
      current = new Map()
      sections.set(section[1] as string, current)
      continue
    }
    const eq = line.indexOf('=')
    if (current === null || eq < 1) throw new Error(`not a unit file line: ${line}`)
    const key = line.slice(0, eq).trim()
    current.set(key, [...(current.get(key) ?? []), line.slice(eq + 1).trim()])
  }
  return sections
}

/** An Exec*= command line split into words as systemd does (double and single quotes, no shell). */
export function splitCommand(line: string): string[] {
  const words: string[] = []
  const re = /"((?:[^"\\]|\\.)*)"|'([^']*)'|(\S+)/g
  for (let m = re.exec(line); m !== null; m = re.exec(line)) words.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : (m[2] ?? m[3]) as string)
  return words
}

export interface Instruction { keyword: string; args: string; line: number }

/** A Dockerfile's instructions, with comments and line continuations removed; parser directives apart. */
export function parseDockerfile(text: string): { directives: Map<string, string>; instructions: Instruction[] } {
  const directives = new Map<string, string>()
  const instructions: Instruction[] = []
  const lines = text.split('\n')
  let inHeader = true
  for (let i = 0; i < lines.length; i++) {
    const start = i
    let line = lines[i] as string
    const directive = /^#\s*([a-z]+)\s*=\s*(\S+)\s*$/i.exec(line)
    if (inHeader && directive) { directives.set((directive[1] as string).toLowerCase(), directive[2] as string); continue }
    if (/^\s*(#|$)/.test(line)) { inHeader = false; continue }
    inHeader = false
    while (line.endsWith('\\') && i + 1 < lines.length) {
      i++
      const next = lines[i] as string
      if (/^\s*#/.test(next)) continue // comments inside a continued instruction are dropped
      line = line.slice(0, -1) + ' ' + next.trim()
    }
    const m = /^\s*([A-Za-z]+)\s+(.*)$/.exec(line)
    if (!m) throw new Error(`Dockerfile line ${start + 1}: not an instruction: ${line}`)
    instructions.push({ keyword: (m[1] as string).toUpperCase(), args: (m[2] as string).trim(), line: start + 1 })
  }
  return { directives, instructions }
}
