import IoMTBuffer
import IoMTCore
import IoMTUplink
import Logging

/// Events the forwarder reacts to, translated from the MQTT client's events.
public enum LinkEvent: Sendable {
    /// `republishInFlight`: the broker lost our session (QoS 2 exchanges may have been
    /// forgotten), so everything in flight is offered again from the buffer.
    case connected(broker: String, republishInFlight: Bool)
    /// `reason` is nil for our own clean stop.
    case disconnected(reason: String?)
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) with a success reason code: the broker has it.
    case acknowledged(mid: Int32)
    /// Several acknowledgements at once (see `MQTTEvent.acknowledgedBatch`).
    case acknowledgedBatch([Int32])
    /// The broker answered with an error reason code (MQTT 5 §3.4.2.1): not delivered.
    case refused(mid: Int32, reason: String)
}

/// Feeds the MQTT client from the durable buffer through a bounded window of in-flight
/// publishes, and deletes a message from the buffer only once the broker acknowledged it.
///
/// - The window: at most `window` unacknowledged publishes; each acknowledgement frees a slot
///   that is refilled at once (not one at a time, not unbounded).
/// - Acks are deleted in batches (one transaction per pump turn), so draining does not cost
///   one fsync per message. A crash between PUBACK and the delete means that message is sent
///   again after restart, with the same id: a duplicate a consumer recognises, never a loss.
/// - Reconnects: publishes that were in flight stay leased; libmosquitto retransmits them on
///   the new connection (MQTT 5.0 §4.4), so they are not republished from here.
/// - `live-first`: rows written before the latest (re)connection are backlog; they take at
///   most `backlogSlots` of the window, live rows the rest, and are marked as backlog.
public actor Forwarder {
    public enum Order: Sendable, Equatable { case fifo, liveFirst(backlogShare: Double) }

    public struct Settings: Sendable {
        public var window: Int
        public var qos: MQTTQoS
        public var order: Order
        /// How long a message the broker refused waits before it is offered again.
        public var refusedRetryDelay: Duration
        /// Mark backlog messages inside the payload too (`"backlog": true`): only for the
        /// `iomt-reading/1` JSON; a FHIR Bundle would not validate with it.
        public var markBacklogInPayload: Bool
        public init(window: Int, qos: MQTTQoS, order: Order, refusedRetryDelay: Duration = .seconds(30),
                    markBacklogInPayload: Bool = true) {
            self.window = max(1, window)
            self.qos = qos
            self.order = order
            self.refusedRetryDelay = refusedRetryDelay
            self.markBacklogInPayload = markBacklogInPayload
        }
    }

    private struct InFlight {
        var token: BufferToken
        var isBacklog: Bool
        var sentAt: Int64
    }

    private let store: SQLiteBuffer
    private let link: MQTTClient
    private let settings: Settings
    private let logger: Logger
    public nonisolated let doorbell = Doorbell()

    private var connected = false
    private var inflight: [Int32: InFlight] = [:]
    private var backlogInFlight = 0
    /// Live-first: rows with id <= this are backlog. Nil when there is no backlog.
    private var backlogBoundary: Int64?
    private var pendingAcks: [BufferToken] = []
    private var ackFailing = false
    private var delivered: UInt64 = 0
    private var refused: UInt64 = 0
    private var latencyObserver: (@Sendable (Int64) -> Void)?
    private var idleWaiters: [CheckedContinuation<Void, Never>] = []
    private var otherWaiters: [Int32: CheckedContinuation<Bool, Never>] = [:]
    /// Acknowledgements of publishes outside the window that nobody waited for (yet).
    private var unmatched: [Int32: Bool] = [:]

    public init(store: SQLiteBuffer, link: MQTTClient, settings: Settings, logger: Logger) {
        self.store = store
        self.link = link
        self.settings = settings
        self.logger = logger
    }

    /// For the benchmark: called with milliseconds from publish to acknowledgement.
    public func observeLatency(_ observer: @escaping @Sendable (Int64) -> Void) {
        latencyObserver = observer
    }

    public var isConnected: Bool { connected }
    public var inFlightCount: Int { inflight.count }
    public var deliveredCount: UInt64 { delivered }

    public func handle(_ event: LinkEvent) async {
        switch event {
        case .connected(let broker, let republish):
            connected = true
            logger.info("uplink connected", metadata: ["broker": "\(broker)"])
            if republish, !inflight.isEmpty {
                logger.notice("broker has no session for us; republishing in-flight messages",
                              metadata: ["count": "\(inflight.count)"])
                await store.release(inflight.values.map(\.token))
                inflight.removeAll()
                backlogInFlight = 0
            }
            if case .liveFirst = settings.order {
                // Everything already stored (and not in flight) is backlog from now on.
                let maxRow = await store.maxRowID()
                if maxRow > 0 {
                    backlogBoundary = max(backlogBoundary ?? 0, maxRow)
                }
            }
            doorbell.ring()
        case .disconnected(let reason):
            if connected, let reason { logger.warning("uplink disconnected", metadata: ["reason": "\(reason)"]) }
            connected = false
        case .acknowledged(let mid):
            acknowledge(mid)
            doorbell.ring()
        case .acknowledgedBatch(let mids):
            for mid in mids { acknowledge(mid) }
            doorbell.ring()
        case .refused(let mid, let reason):
            guard let entry = inflight.removeValue(forKey: mid) else {
                otherAcknowledged(mid, delivered: false)
                return
            }
            if entry.isBacklog { backlogInFlight -= 1 }
            refused += 1
            logger.error("broker refused a message; it stays buffered and is retried",
                         metadata: ["reason": "\(reason)", "retry_in": "\(settings.refusedRetryDelay)"])
            let token = entry.token
            let delay = settings.refusedRetryDelay
            Task { [store, doorbell] in
                try? await Task.sleep(for: delay)
                await store.release([token])
                doorbell.ring()
            }
        }
    }

    private func acknowledge(_ mid: Int32) {
        guard let entry = inflight.removeValue(forKey: mid) else {
            otherAcknowledged(mid, delivered: true) // e.g. a status publish
            return
        }
        if entry.isBacklog { backlogInFlight -= 1 }
        pendingAcks.append(entry.token)
        delivered += 1
        latencyObserver?(monotonicMilliseconds() - entry.sentAt)
    }

    /// The pump: on every ring, delete acknowledged messages, then refill the window.
    public func run() async {
        for await _ in doorbell.rings {
            await flushAcks()
            let leasedNothing = await fillWindow()
            if leasedNothing, inflight.isEmpty, pendingAcks.isEmpty, connected {
                for waiter in idleWaiters { waiter.resume() }
                idleWaiters.removeAll()
            }
        }
        await flushAcks()
        for waiter in idleWaiters { waiter.resume() }
        idleWaiters.removeAll()
    }

    /// Returns once the buffer is empty and nothing is in flight (checked after each pump turn).
    public func waitUntilIdle() async {
        await withCheckedContinuation {
            idleWaiters.append($0)
            doorbell.ring() // a pump turn checks the condition now, even if nothing else happens
        }
    }

    /// Waits for the acknowledgement of a publish made outside the window (e.g. the final status),
    /// at most `timeout`. True if the broker acknowledged it.
    public func waitForAcknowledgement(of mid: Int32, timeout: Duration) async -> Bool {
        if let early = unmatched.removeValue(forKey: mid) { return early }
        let timer = Task { [weak self] in
            try? await Task.sleep(for: timeout)
            await self?.otherAcknowledged(mid, delivered: false, timedOut: true)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { otherWaiters[mid] = $0 }
    }

    private func otherAcknowledged(_ mid: Int32, delivered: Bool, timedOut: Bool = false) {
        if let waiter = otherWaiters.removeValue(forKey: mid) {
            waiter.resume(returning: delivered)
        } else if !timedOut {
            unmatched[mid] = delivered
            if unmatched.count > 64, let first = unmatched.keys.first { unmatched.removeValue(forKey: first) }
        }
    }

    /// Deletes acknowledged messages (one transaction). On failure they stay buffered and are
    /// retried on the next turn; the worst case is a redelivery, never a loss.
    public func flushAcks() async {
        guard !pendingAcks.isEmpty else { return }
        let batch = pendingAcks
        pendingAcks.removeAll(keepingCapacity: true)
        do {
            try await store.ack(batch)
            if ackFailing {
                ackFailing = false
                logger.notice("acknowledged messages are being deleted again")
            }
        } catch {
            if !ackFailing {
                ackFailing = true
                logger.error("could not delete acknowledged messages; they stay leased and the delete is retried every second",
                             metadata: ["error": "\(error)"])
            }
            pendingAcks.append(contentsOf: batch)
            Task { [doorbell] in
                try? await Task.sleep(for: .seconds(1))
                doorbell.ring()
            }
        }
    }

    /// Returns true when the buffer had nothing more to lease.
    private func fillWindow() async -> Bool {
        while connected {
            // Acks keep arriving while this loop runs; delete them on every turn, or under a
            // steady drain they would pile up undeleted (and leased) for as long as it lasts.
            await flushAcks()
            let free = settings.window - inflight.count
            guard free > 0 else { return false }
            let batch: [StoredMessage]
            do {
                batch = try await nextBatch(free: free)
            } catch {
                logger.error("could not read from the buffer", metadata: ["error": "\(error)"])
                return false
            }
            guard !batch.isEmpty else { return true }
            for (index, stored) in batch.enumerated() {
                guard connected else {
                    await store.release(batch[index...].map(\.token))
                    return false
                }
                await send(stored)
            }
        }
        return false
    }

    private func nextBatch(free: Int) async throws -> [StoredMessage] {
        guard case .liveFirst(let share) = settings.order, let boundary = backlogBoundary else {
            return try await store.lease(limit: free)
        }
        let backlogSlots = max(1, Int((Double(settings.window) * share).rounded(.down)))
        let batch = try await store.lease(limit: free, backlogLimit: backlogSlots, liveAfter: boundary)
        if backlogInFlight == 0, !batch.contains(where: \.isBacklog) {
            // The lease reserves places for backlog rows: none came, none are in flight.
            logger.info("backlog drained")
            backlogBoundary = nil
        }
        return batch
    }

    private func send(_ stored: StoredMessage) async {
        let m = stored.message
        let isBacklog = stored.isBacklog
        var properties: [(String, String)] = [("reading-id", m.id.description), ("kind", Forwarder.kindName(m.kind))]
        var payload = m.payload
        if isBacklog {
            properties.append(("backlog", "true"))
            if settings.markBacklogInPayload { payload = Forwarder.markBacklog(payload) }
        }
        do {
            let mid = try link.publish(topic: m.topic, payload: payload, qos: settings.qos, retain: false,
                                             userProperties: properties)
            inflight[mid] = InFlight(token: stored.token, isBacklog: isBacklog, sentAt: monotonicMilliseconds())
            if isBacklog { backlogInFlight += 1 }
        } catch {
            logger.warning("publish not queued; message stays buffered", metadata: ["error": "\(error)"])
            await store.release([stored.token])
            connected = false
        }
    }

    static func kindName(_ kind: MessageKind) -> String {
        switch kind {
        case .reading: "reading"
        case .gap: "gap"
        case .alert: "alert"
        case .event: "event"
        default: "kind-\(kind.rawValue)"
        }
    }

    /// Adds `"backlog":true` as the first member of a JSON object payload; anything else is
    /// returned unchanged (the `backlog` user property still marks it under MQTT 5).
    static func markBacklog(_ payload: [UInt8]) -> [UInt8] {
        guard payload.first == UInt8(ascii: "{"), payload.count > 2 else { return payload }
        var out = Array(#"{"backlog":true,"#.utf8)
        out.reserveCapacity(payload.count + out.count)
        out.append(contentsOf: payload.dropFirst())
        return out
    }
}
