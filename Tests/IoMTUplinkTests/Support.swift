import IoMTTestSupport
@testable import IoMTUplink
import Testing

/// Collects a client's events in a `Watched` array.
final class EventRecorder: Sendable {
    let events = Watched<[MQTTEvent]>([])
    let task: Task<Void, Never>

    init(_ client: MQTTClient) {
        let events = self.events
        let stream = client.events
        task = Task { for await e in stream { events.update { $0.append(e) } } }
    }

    @discardableResult
    func wait(_ timeout: Duration = .seconds(15), _ predicate: @escaping @Sendable ([MQTTEvent]) -> Bool) async -> Bool {
        await events.wait(timeout: timeout, until: predicate)
    }

    // Predicates passed to `wait` run under the lock: use the free functions on their argument.
    func connectedCount(_ broker: BrokerAddress? = nil) -> Int { IoMTUplinkTests.connectedCount(events.value, broker) }
    var acknowledgedMids: Set<Int32> { acked(events.value) }
    var failures: [UplinkError] { IoMTUplinkTests.failures(events.value) }
}

func connectedCount(_ evs: [MQTTEvent], _ broker: BrokerAddress? = nil) -> Int {
    evs.filter { if case .connected(let b, _) = $0 { return broker == nil || b == broker }; return false }.count
}

func acked(_ evs: [MQTTEvent]) -> Set<Int32> {
    Set(evs.compactMap { if case .acknowledged(let mid, _) = $0 { return mid }; return nil })
}

func batchedAcks(_ evs: [MQTTEvent]) -> [Int32] {
    evs.flatMap { if case .acknowledgedBatch(let mids) = $0 { return mids }; return [] }
}

func failures(_ evs: [MQTTEvent]) -> [UplinkError] {
    evs.compactMap { if case .connectionFailed(_, let e) = $0 { return e }; return nil }
}

func config(_ urls: [String], clientID: String = "iomt-test-\(UInt32.random(in: 0...UInt32.max))") throws -> UplinkConfig {
    var c = try UplinkConfig(brokerURLs: urls, clientID: clientID)
    c.reconnectMinDelay = .milliseconds(100)
    c.reconnectMaxDelay = .milliseconds(800)
    c.connectTimeout = .seconds(5)
    c.keepalive = 10
    return c
}

/// Runs `body` with a started client and its recorder; always stops the client.
func withClient(_ config: UplinkConfig,
                _ body: (MQTTClient, EventRecorder) async throws -> Void) async throws {
    let client = try MQTTClient(config: config)
    let recorder = EventRecorder(client)
    try client.start()
    do {
        try await body(client, recorder)
    } catch {
        await client.stop()
        throw error
    }
    await client.stop()
    await recorder.task.value
}

/// Runs `body` with a started broker; always stops it (SIGTERM, then SIGKILL).
func withBroker(_ options: BrokerOptions = BrokerOptions(),
                _ body: (MosquittoBroker) async throws -> Void) async throws {
    let broker = try await MosquittoBroker.start(options)
    do {
        try await body(broker)
    } catch {
        await broker.stop()
        throw error
    }
    await broker.stop()
}
