/** JSON nesting bounds for what clients send (HTTP bodies, /ws frames). */

/** Deeper JSON than any API body needs; deeper input is refused before it can exhaust the stack. */
export const MAX_JSON_DEPTH = 64

/** Whether JSON text nests arrays/objects deeper than `max` (strings skipped). */
export function jsonTooDeep(text: string, max = MAX_JSON_DEPTH): boolean {
  let depth = 0
  let inString = false
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i)
    if (inString) {
      if (c === 0x5c) i++ // backslash: skip the escaped character
      else if (c === 0x22) inString = false
    } else if (c === 0x22) inString = true
    else if (c === 0x5b || c === 0x7b) { if (++depth > max) return true }
    else if (c === 0x5d || c === 0x7d) depth--
  }
  return false
}
