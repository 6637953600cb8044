import CMosquitto
import Synchronization

/// A message handed to ``MQTTClient/submit(_:)``: rendered in full by the caller, published by
/// whichever thread finds a free place in the window (usually the MQTT loop thread right after
/// the acknowledgement that freed it).
public struct OutboundMessage: Sendable {
    /// The caller's own identifier, reported back in ``MQTTEvent/delivered(tags:)`` or
    /// ``MQTTEvent/outboxRefused(tag:reason:)``.
    public var tag: UInt64
    public var topic: String
    public var payload: [UInt8]
    public var qos: MQTTQoS
    /// MQTT 5 User Properties (not sent under 3.1.1), as for ``MQTTClient/publish(topic:payload:qos:retain:userProperties:)``.
    public var userProperties: [(String, String)]

    public init(tag: UInt64, topic: String, payload: [UInt8], qos: MQTTQoS, userProperties: [(String, String)]) {
        self.tag = tag
        self.topic = topic
        self.payload = payload
        self.qos = qos
        self.userProperties = userProperties
    }
}

/// The bounded queue in front of libmosquitto and the window of outbox messages it holds
/// unacknowledged (packet id → tag). Lives in ``Engine/outbox`` (a `Mutex`).
///
/// Why: refilling the window from the thread that reads the PUBACKs (as a plain libmosquitto
/// publisher does from `on_publish`) costs no thread hand-off per message. Publishing from
/// another thread costs a mutex, a wake-up byte on the wake pipe and a context switch of the
/// loop thread each time, and the refill waits for the consumer of the events.
/// The caller keeps the queue filled ahead (a batch per wake-up); the loop thread only takes
/// pre-rendered messages from it and calls `mosquitto_publish_v5` (no other logic there).
struct Outbox {
    var queue: [OutboundMessage] = []
    var head = 0
    /// Outbox messages handed to libmosquitto and not yet acknowledged or refused.
    var inFlight: [Int32: UInt64] = [:]
    /// At most this many in `inFlight` (the forwarder's window).
    var limit = 64
    /// Set by the loop thread between a successful CONNACK and the end of that connection:
    /// only then are queued messages handed to libmosquitto.
    var connected = false
    /// Tags acknowledged but not reported yet. Reported in batches (see `takeDelivered`).
    var delivered: [UInt64] = []

    var queuedCount: Int { queue.count - head }

    mutating func popFirst() -> OutboundMessage? {
        guard head < queue.count else { return nil }
        let m = queue[head]
        head += 1
        if head == queue.count {
            queue.removeAll(keepingCapacity: true)
            head = 0
        }
        return m
    }

    mutating func append(_ ms: [OutboundMessage]) {
        if head > 0 && head * 2 >= queue.count {
            queue.removeFirst(head)
            head = 0
        }
        queue.append(contentsOf: ms)
    }
}

/// What an acknowledgement turned into once matched against the outbox.
struct OutboxMatch {
    var delivered: [UInt64] = []
    var refused: [(UInt64, RefusalReason)] = []
    /// Acknowledgements of messages published outside the outbox: (mid, reason code).
    var others: [(Int32, Int32)] = []
}

extension Engine {
    /// Builds the properties and calls `mosquitto_publish_v5`. Returns (rc, mid).
    func rawPublish(topic: String, payload: [UInt8], qos: MQTTQoS, retain: Bool,
                    userProperties: [(String, String)]) -> (rc: Int32, mid: Int32, detail: String?) {
        var props: OpaquePointer? = nil
        defer { mosquitto_property_free_all(&props) }
        if config.protocolVersion == .v5 {
            for (k, v) in userProperties {
                let rc = mosquitto_property_add_string_pair(&props, Int32(MQTT_PROP_USER_PROPERTY.rawValue), k, v)
                if rc != MOSQ_ERR_SUCCESS.rawValue {
                    return (rc, 0, "user property '\(k)': \(String(cString: mosquitto_strerror(rc)))")
                }
            }
        }
        var mid: Int32 = 0
        let rc = payload.withUnsafeBytes { buf in
            mosquitto_publish_v5(mosq, &mid, topic, Int32(buf.count), buf.baseAddress, qos.rawValue, retain, props)
        }
        return (rc, mid, nil)
    }

    func setOutboxLimit(_ n: Int) {
        let limit = max(1, min(n, 65_000))
        outbox.withLock { $0.limit = limit }
        // libmosquitto's own cap on QoS > 0 messages in flight (MOSQ_OPT_SEND_MAXIMUM, default
        // 20; lowered by a broker's Receive Maximum): beyond it, messages wait in its queue. Set
        // it to the window, plus room for the few publishes made outside the outbox (status),
        // so the window is really in flight. (The raw baseline publisher sets it to its window.)
        _ = mosquitto_int_option(mosq, MOSQ_OPT_SEND_MAXIMUM, Int32(min(limit + 8, 65_535)))
    }

    /// Queues messages; publishes at once as many as the window has room for (while connected).
    func submit(_ messages: [OutboundMessage]) throws(UplinkError) {
        let running = state.withLock { $0.started && !$0.stopRequested }
        guard running else { throw .notRunning }
        if messages.contains(where: { $0.qos == .atMostOnce }) {
            throw .publishRejected(detail: "the outbox takes QoS 1 or 2 only (QoS 0 is never acknowledged)")
        }
        let (failed, published) = outbox.withLock { o -> ([(UInt64, RefusalReason)], Bool) in
            o.append(messages)
            let before = o.inFlight.count
            let failed = pumpLocked(&o)
            return (failed, o.inFlight.count != before)
        }
        // The loop thread waits on its wake pipe, not on libmosquitto's socket pair.
        if published { wake() }
        for (tag, reason) in failed { emit(.outboxRefused(tag: tag, reason: reason)) }
    }

    /// Drops every queued message and forgets the packet ids of those in flight (their
    /// acknowledgements are then reported as plain ``MQTTEvent/acknowledged(mid:reasonCode:)``).
    /// Returns the tags dropped.
    func discardOutbox() -> [UInt64] {
        outbox.withLock { o in
            var tags = Array(o.inFlight.values)
            while let m = o.popFirst() { tags.append(m.tag) }
            o.inFlight.removeAll()
            return tags
        }
    }

    /// Publishes queued messages while the window has room. Called with the outbox locked, so a
    /// packet id is recorded before the loop thread can look for its acknowledgement (which it
    /// matches under the same lock). Returns messages libmosquitto would not take.
    func pumpLocked(_ o: inout Outbox) -> [(UInt64, RefusalReason)] {
        var failed: [(UInt64, RefusalReason)] = []
        guard o.connected else { return failed }
        while o.inFlight.count < o.limit, let m = o.popFirst() {
            let r = rawPublish(topic: m.topic, payload: m.payload, qos: m.qos, retain: false, userProperties: m.userProperties)
            if (r.rc == MOSQ_ERR_SUCCESS.rawValue || r.rc == MOSQ_ERR_NO_CONN.rawValue) && r.mid != 0 {
                o.inFlight[r.mid] = m.tag   // NO_CONN for QoS > 0: queued in libmosquitto (see `publish`)
            } else {
                // 0x83 Implementation specific error: libmosquitto refused it (e.g. payload too large).
                failed.append((m.tag, RefusalReason.implementationSpecificError))
            }
        }
        return failed
    }

    /// Loop thread: matches the acknowledgements of one loop turn against the outbox, then
    /// refills the window from the queue, under one lock.
    func matchAndRefill(_ acks: [(mid: Int32, reason: Int32)]) -> (OutboxMatch, [(UInt64, RefusalReason)]) {
        outbox.withLock { o in
            var match = OutboxMatch()
            for (mid, reason) in acks {
                if let tag = o.inFlight.removeValue(forKey: mid) {
                    if reason >= 0x80 { match.refused.append((tag, RefusalReason(code: reason))) } else { o.delivered.append(tag) }
                } else {
                    match.others.append((mid, reason))
                }
            }
            let failed = pumpLocked(&o)
            match.delivered = takeDelivered(&o, force: false)
            return (match, failed)
        }
    }

    /// Acknowledged tags are handed to the consumer once half a window has gathered, or when
    /// it must hear now: the queue is empty (it refills it on each report), nothing
    /// is in flight (no later acknowledgement would carry the report), or not connected. So a
    /// draining consumer wakes once per half window, not once per loop turn, and a trickle
    /// (queue empty) is reported at once. Every loop turn checks, so nothing waits for long.
    func takeDelivered(_ o: inout Outbox, force: Bool) -> [UInt64] {
        guard !o.delivered.isEmpty else { return [] }
        let half = max(1, o.limit / 2)
        guard force || o.delivered.count >= half || o.queuedCount == 0 || o.inFlight.isEmpty || !o.connected else { return [] }
        var out: [UInt64] = []
        out.reserveCapacity(o.delivered.count)
        swap(&out, &o.delivered)
        return out
    }

    /// Loop thread: the connection state the outbox publishes under.
    func setOutboxConnected(_ on: Bool) -> (failed: [(UInt64, RefusalReason)], delivered: [UInt64]) {
        outbox.withLock { o in
            o.connected = on
            let failed = on ? pumpLocked(&o) : []
            return (failed, takeDelivered(&o, force: !on))
        }
    }
}
