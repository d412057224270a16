/**
 * SubjectTrie: MQTT filters (canonical syntax) to values, matched against concrete topics.
 * One node per level; '+' and '#' children are kept apart from literal children so a match walks
 * at most the literal, '+' and '#' branches at each level. The router caches match results per
 * topic, so this walk runs only on cache misses.
 */
class TrieNode<T> {
  readonly children = new Map<string, TrieNode<T>>()
  plus: TrieNode<T> | null = null
  /** Values whose filter ends exactly here. */
  exact: T[] = []
  /** Values whose filter is this node's path followed by '#'. */
  hash: T[] = []

  isEmpty(): boolean {
    return this.children.size === 0 && this.plus === null && this.exact.length === 0 && this.hash.length === 0
  }
}

const DOLLAR = 36 // '$'

export class SubjectTrie<T> {
  #root = new TrieNode<T>()
  #size = 0

  get size(): number {
    return this.#size
  }

  /** Adds a value under a filter; the same value twice under one filter is kept once. */
  insert(filter: string, value: T): void {
    const levels = filter.split('/')
    let node = this.#root
    for (let i = 0; i < levels.length; i++) {
      const level = levels[i] as string
      if (level === '#') {
        if (!node.hash.includes(value)) { node.hash.push(value); this.#size++ }
        return
      }
      let next: TrieNode<T> | null | undefined
      if (level === '+') {
        next = node.plus ??= new TrieNode<T>()
      } else {
        next = node.children.get(level)
        if (next === undefined) {
          next = new TrieNode<T>()
          node.children.set(level, next)
        }
      }
      node = next
    }
    if (!node.exact.includes(value)) { node.exact.push(value); this.#size++ }
  }

  /** Removes a value from a filter; prunes empty branches. Returns whether it was there. */
  remove(filter: string, value: T): boolean {
    const levels = filter.split('/')
    const path: Array<[TrieNode<T>, string]> = []
    let node: TrieNode<T> | null | undefined = this.#root
    let removed = false
    for (let i = 0; i < levels.length && node; i++) {
      const level = levels[i] as string
      if (level === '#') {
        removed = removeFrom(node.hash, value)
        node = null
        break
      }
      path.push([node, level])
      node = level === '+' ? node.plus : node.children.get(level)
    }
    if (node) removed = removeFrom(node.exact, value)
    if (!removed) return false
    this.#size--
    // prune from the deepest node up
    for (let i = path.length - 1; i >= 0; i--) {
      const [parent, level] = path[i] as [TrieNode<T>, string]
      const child = level === '+' ? parent.plus : parent.children.get(level)
      if (!child || !child.isEmpty()) break
      if (level === '+') parent.plus = null
      else parent.children.delete(level)
    }
    return true
  }

  /** Appends to `out` every value whose filter matches `topic` (a value under two matching filters appears twice). */
  match(topic: string, out: T[]): T[] {
    // [MQTT-4.7.2-1] filters starting with a wildcard do not match topics starting with '$'
    const dollar = topic.charCodeAt(0) === DOLLAR
    this.#walk(this.#root, topic, 0, out, dollar)
    return out
  }

  #walk(node: TrieNode<T>, topic: string, start: number, out: T[], noWildcards: boolean): void {
    if (!noWildcards) pushAll(out, node.hash) // '#' matches this level and everything after it
    const slash = topic.indexOf('/', start)
    const level = slash === -1 ? topic.slice(start) : topic.slice(start, slash)
    const child = node.children.get(level)
    if (child !== undefined) {
      if (slash === -1) collectEnd(child, out)
      else this.#walk(child, topic, slash + 1, out, false)
    }
    const plus = node.plus
    if (plus !== null && !noWildcards) {
      if (slash === -1) collectEnd(plus, out)
      else this.#walk(plus, topic, slash + 1, out, false)
    }
  }

  /** Every (filter, value) pair, for introspection and tests. */
  *entries(): Generator<[string, T]> {
    function* visit(node: TrieNode<T>, prefix: string[]): Generator<[string, T]> {
      for (const v of node.exact) yield [prefix.join('/'), v]
      for (const v of node.hash) yield [[...prefix, '#'].join('/'), v]
      for (const [level, child] of node.children) yield* visit(child, [...prefix, level])
      if (node.plus) yield* visit(node.plus, [...prefix, '+'])
    }
    yield* visit(this.#root, [])
  }
}

/** The topic ends at this node: its exact values, and its '#' values ('a/#' matches 'a' [MQTT-4.7.1-2]). */
function collectEnd<T>(node: TrieNode<T>, out: T[]): void {
  pushAll(out, node.exact)
  pushAll(out, node.hash)
}

function pushAll<T>(out: T[], values: T[]): void {
  for (let i = 0; i < values.length; i++) out.push(values[i] as T)
}

function removeFrom<T>(list: T[], value: T): boolean {
  const i = list.indexOf(value)
  if (i === -1) return false
  list.splice(i, 1)
  return true
}
