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
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) with a success reason code for a message published
    /// outside the window (e.g. a status message; see `waitForAcknowledgement(of:timeout:)`).
    case acknowledged(mid: Int32)
    /// Several of those at once (see `MQTTEvent.acknowledgedBatch`).
    case acknowledgedBatch([Int32])
    /// The broker answered a message published outside the window with an error reason code.
    case refused(mid: Int32, reason: String)
    /// Window messages (submitted to the client's outbox) the broker acknowledged (PUBACK for
    /// QoS 1, PUBCOMP for QoS 2, success reason code), by tag (see `MQTTEvent.delivered`).
    case delivered([UInt64])
    /// A window message the broker refused (MQTT 5 §3.4.2.1) or the client would not queue.
    case refusedTag(UInt64, reason: String)
}

/// Feeds the MQTT client from the durable buffer through a bounded window of in-flight
/// publishes, and deletes a message from the buffer only once the broker acknowledged it.
///
/// - The window: at most `window` unacknowledged publishes; each acknowledgement frees a slot
///   that the MQTT thread refills at once from the client's outbox (`MQTTClient.submit`), which
///   this actor keeps filled up to `prefetch` messages ahead, one batch per wake-up. Messages
///   queued in the outbox are leased like those in flight (deleted only after their
///   acknowledgement; after a crash they are simply still in the buffer).
/// - Acks are deleted in batches (one transaction per `ackBatch` acknowledgements while
///   draining, at once when there is nothing more to send), so draining does not cost one
///   transaction per message; the buffer may keep acknowledged rows a while longer, until
///   their whole segment table can go (at most 3072, see IoMTBuffer's `Segment`). A crash
///   between PUBACK and the delete means that message is sent again after restart, with the
///   same id: a duplicate a consumer recognises, never a loss.
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
        /// Messages rendered and queued in the client's outbox beyond the window, so that the
        /// MQTT thread can refill the window without waiting for this actor. Default: `4 * window`, refilled once
        /// half of it has gone (larger leases: about 8 % less CPU per drained message, BENCHMARKS.md).
        public var prefetch: Int
        /// QoS of `.alert` messages (`alerts.qos`); nil: `qos`.
        public var alertQoS: MQTTQoS?
        public init(window: Int, qos: MQTTQoS, order: Order, refusedRetryDelay: Duration = .seconds(30),
                    markBacklogInPayload: Bool = true, prefetch: Int? = nil, alertQoS: MQTTQoS? = nil) {
            self.alertQoS = alertQoS
            self.window = max(1, window)
            self.prefetch = max(0, prefetch ?? 4 * window)
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
    /// Submitted to the outbox and not yet acknowledged (queued there, or in flight), by tag.
    private var inflight: [UInt64: InFlight] = [:]
    private var nextTag: UInt64 = 1
    private var backlogInFlight = 0
    /// Live-first: rows with id <= this are backlog. Nil when there is no backlog.
    private var backlogBoundary: Int64?
    private var pendingAcks: [BufferToken] = []
    /// While draining, acknowledged rows are deleted once this many have gathered (and always
    /// when there is nothing more to send). A crash before the delete only means duplicates.
    private var ackBatch: Int { max(256, 4 * settings.window) }
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
        link.setOutboxWindow(settings.window)
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
                link.discardOutbox()
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
            otherAcknowledged(mid, delivered: true)
        case .acknowledgedBatch(let mids):
            for mid in mids { otherAcknowledged(mid, delivered: true) }
        case .refused(let mid, _):
            otherAcknowledged(mid, delivered: false)
        case .delivered(let tags):
            for tag in tags { acknowledge(tag) }
            doorbell.ring()
        case .refusedTag(let tag, let reason):
            guard let entry = inflight.removeValue(forKey: tag) else { return }
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

    private func acknowledge(_ tag: UInt64) {
        guard let entry = inflight.removeValue(forKey: tag) else { return } // discarded after a session loss
        if entry.isBacklog { backlogInFlight -= 1 }
        pendingAcks.append(entry.token)
        delivered += 1
        latencyObserver?(monotonicMilliseconds() - entry.sentAt)
    }

    /// The pump: on every ring, delete acknowledged messages, then refill the window.
    public func run() async {
        for await _ in doorbell.rings {
            if pendingAcks.count >= ackBatch || !connected { await flushAcks() }
            let leasedNothing = await fillWindow()
            // Nothing more to send (or no link): delete what is acknowledged now, so the
            // buffer is exact when idle and a trickle of live readings is deleted at once.
            if leasedNothing || !connected { await flushAcks() }
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
            // Acks keep arriving while this loop runs; delete them in batches of `ackBatch`
            // (one transaction each: fewer, larger write transactions) during a steady drain,
            // or they would pile up undeleted (and leased) for as long as it lasts.
            if pendingAcks.count >= ackBatch { await flushAcks() }
            let free = settings.window + settings.prefetch - inflight.count
            guard free > 0 else { return false }
            // While the outbox still holds at least half of `prefetch` queued, wait: refilling
            // in larger leases costs fewer buffer transactions and thread hand-offs per message.
            if settings.prefetch >= 2, inflight.count - settings.window >= settings.prefetch / 2 { return false }
            let batch: [StoredMessage]
            do {
                batch = try await nextBatch(free: free)
            } catch {
                logger.error("could not read from the buffer", metadata: ["error": "\(error)"])
                return false
            }
            guard !batch.isEmpty else { return true }
            guard connected else {
                await store.release(batch.map(\.token))
                return false
            }
            guard await send(Forwarder.sendingOrder(batch)) else { return false }
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

    /// Renders a leased batch and queues it in the client's outbox. False if the client
    /// would not take it (the rows are released and the forwarder waits for a reconnect).
    private func send(_ batch: [StoredMessage]) async -> Bool {
        var out: [OutboundMessage] = []
        out.reserveCapacity(batch.count)
        let now = monotonicMilliseconds()
        for stored in batch {
            let m = stored.message
            let isBacklog = stored.isBacklog
            var properties: [(String, String)] = [("reading-id", m.id.description), ("kind", Forwarder.kindName(m.kind))]
            var payload = m.payload
            if isBacklog {
                properties.append(("backlog", "true"))
                if settings.markBacklogInPayload { payload = Forwarder.markBacklog(payload) }
            }
            let tag = nextTag
            nextTag += 1
            let qos = m.kind == .alert ? settings.alertQoS ?? settings.qos : settings.qos
            out.append(OutboundMessage(tag: tag, topic: m.topic, payload: payload, qos: qos, userProperties: properties))
            inflight[tag] = InFlight(token: stored.token, isBacklog: isBacklog, sentAt: now)
            if isBacklog { backlogInFlight += 1 }
        }
        do {
            try link.submit(out)
            return true
        } catch {
            logger.warning("publish not queued; messages stay buffered", metadata: ["error": "\(error)"])
            for m in out {
                if let entry = inflight.removeValue(forKey: m.tag), entry.isBacklog { backlogInFlight -= 1 }
            }
            await store.release(batch.map(\.token))
            connected = false
            return false
        }
    }

    /// The order a leased batch is sent in: alerts first (issue 9), ahead of the gap records
    /// and live rows the lease puts before them, and among themselves in the order they were
    /// stored (row id), backlog or live: under `live-first` the lease lists live rows before
    /// backlog rows, and a `clear` stored after a reconnection went out ahead of the `raise`
    /// stored during the outage, so a consumer saw the alert cleared, then raised for good.
    static func sendingOrder(_ batch: [StoredMessage]) -> [StoredMessage] {
        guard batch.contains(where: { $0.message.kind == .alert }) else { return batch }
        func rowID(_ m: StoredMessage) -> Int64 {
            if case .message(let id) = m.token { return id }
            return Int64.max
        }
        return batch.filter { $0.message.kind == .alert }.sorted { rowID($0) < rowID($1) }
            + batch.filter { $0.message.kind != .alert }
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
