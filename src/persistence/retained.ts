import { SubjectTrie } from '../subjects/trie.ts'
import type { StoredPacket } from './records.ts'

export interface RetainedEntry {
  readonly topic: string
  readonly packet: StoredPacket
  /** Size of the record that stores it (for the live-data estimate that drives compaction). */
  bytes: number
}

class TopicNode {
  children: Map<string, TopicNode> | null = null
  entry: RetainedEntry | null = null
  constructor(readonly parent: TopicNode | null, readonly level: string) {}
}

/**
 * Retained messages by topic, kept as a tree of topic levels so a lookup only walks the part of
 * the tree a filter can reach: a literal level of the filter follows one child, '+' every child,
 * '#' the whole subtree. Whether a topic matches is decided by SubjectTrie — the router's matcher —
 * so retained messages follow exactly the routing rules, '$' topics included [MQTT-4.7.2-1].
 */
export class RetainedIndex {
  #root = new TopicNode(null, '')
  #size = 0

  get size(): number {
    return this.#size
  }

  get(topic: string): RetainedEntry | undefined {
    return this.#find(topic)?.entry ?? undefined
  }

  /** Stores an entry; returns the one it replaced. */
  set(entry: RetainedEntry): RetainedEntry | undefined {
    const levels = entry.topic.split('/')
    let node = this.#root
    for (const level of levels) {
      const children = node.children ??= new Map()
      let next = children.get(level)
      if (next === undefined) {
        next = new TopicNode(node, level)
        children.set(level, next)
      }
      node = next
    }
    const prev = node.entry ?? undefined
    if (prev === undefined) this.#size++
    node.entry = entry
    return prev
  }

  /** Removes a topic's entry (pruning emptied levels); returns it. */
  delete(topic: string): RetainedEntry | undefined {
    let node = this.#find(topic)
    const prev = node?.entry ?? undefined
    if (!node || prev === undefined) return undefined
    node.entry = null
    this.#size--
    while (node.parent !== null && node.entry === null && (node.children === null || node.children.size === 0)) {
      node.parent.children?.delete(node.level)
      node = node.parent
    }
    return prev
  }

  #find(topic: string): TopicNode | null {
    let node: TopicNode | undefined = this.#root
    let start = 0
    while (node) {
      const slash = topic.indexOf('/', start)
      const level = slash === -1 ? topic.slice(start) : topic.slice(start, slash)
      node = node.children?.get(level)
      if (slash === -1) return node ?? null
      start = slash + 1
    }
    return null
  }

  /** Every entry (tree order). */
  *entries(): Generator<RetainedEntry> {
    const stack: TopicNode[] = [this.#root]
    while (stack.length > 0) {
      const node = stack.pop() as TopicNode
      if (node.entry) yield node.entry
      if (node.children) for (const child of node.children.values()) stack.push(child)
    }
  }

  /** The retained messages matching any of the filters, each once. */
  match(filters: readonly string[]): StoredPacket[] {
    const out: StoredPacket[] = []
    if (this.#size === 0) return out
    const trie = new SubjectTrie<number>()
    for (const f of filters) trie.insert(f, 0)
    const seen = filters.length > 1 ? new Set<RetainedEntry>() : null
    const hits: number[] = []
    const emit = (e: RetainedEntry): void => {
      if (seen) {
        if (seen.has(e)) return
        seen.add(e)
      }
      out.push(e.packet)
    }
    for (const filter of filters) {
      const levels = filter.split('/')
      // the filter's levels guide the walk (a literal level follows one child, '+' all of them,
      // '#' the whole subtree); SubjectTrie decides what matches
      const stack: Array<[TopicNode, number]> = [[this.#root, 0]]
      while (stack.length > 0) {
        const [n, depth] = stack.pop() as [TopicNode, number]
        if (n.entry) {
          hits.length = 0
          if (trie.match(n.entry.topic, hits).length > 0) emit(n.entry)
        }
        const children = n.children
        if (children === null || depth >= levels.length) continue
        const level = levels[depth] as string
        if (level === '#') {
          for (const child of children.values()) stack.push([child, depth])
        } else if (level === '+') {
          for (const child of children.values()) stack.push([child, depth + 1])
        } else {
          const child = children.get(level)
          if (child) stack.push([child, depth + 1])
        }
      }
    }
    return out
  }
}
