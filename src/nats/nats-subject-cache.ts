import { mqttToNats } from '../subjects/mqtt-map.ts'

/**
 * MQTT topic -> NATS subject, computed once per topic for every NATS subscriber of every
 * connection (the mapping splits and rejoins the topic: too dear per delivery). Bounded.
 */
const cache = new Map<string, string>()
const MAX_CACHED = 16_384

export function natsSubjectOf(topic: string): string {
  let s = cache.get(topic)
  if (s === undefined) {
    s = mqttToNats(topic)
    if (cache.size >= MAX_CACHED) cache.clear()
    cache.set(topic, s)
  }
  return s
}
