import Crypto
import IoMTAgent
import IoMTBuffer
import IoMTCore
import IoMTSources
import IoMTUplink
import Logging
import Synchronization

/// The workload and the in-process wiring of the REAL components (SQLiteBuffer, Ingestor,
/// Forwarder, MQTTClient), exactly as `Agent.run` wires them, minus the status reporter.
enum Workload {
    static let gatewayID = "bench-hub"
    static let topics = Topics(prefix: "iomt/bench-hub")
    static let readingsFilter = "iomt/bench-hub/readings/#"
    static let maxBytes: Int64 = 8 << 30

    /// `count` simulated devices, profiles in rotation (pulse oximeter with its 75 Hz pleth
    /// batch, blood pressure, thermometer), like a hub serving a few beds.
    static func devices(_ count: Int, rate: Double = 1) -> [SimulatorSource] {
        let profiles = SimulatedProfile.allCases
        return (0..<count).map { i in
            let p = profiles[i % profiles.count]
            return SimulatorSource(id: "sim-\(p.rawValue)-\(i + 1)", profile: p, patientID: "P-\(1000 + i / 3)",
                                   rate: rate, count: nil, seed: UInt64(i + 1))
        }
    }

    /// Fully formed messages, as the ingestor would render them (payload = wire JSON).
    static func messages(_ n: Int, devices: [SimulatorSource], startSequence: UInt64 = 1) -> [OutgoingMessage] {
        var ids = ReadingIDGenerator()
        let clock = SystemWallClock()
        var out: [OutgoingMessage] = []
        out.reserveCapacity(n)
        for k in 0..<n {
            let dev = devices[k % devices.count]
            let index = k / devices.count
            let seq = startSequence + UInt64(index)
            let now = clock.now()
            let body = dev.reading(index: index, at: now)
            let reading = Reading(id: ids.next(at: now), gatewayID: gatewayID, sequence: seq, body: body)
            out.append(OutgoingMessage(id: reading.id, kind: .reading, topic: topics.readings(deviceID: dev.device.id),
                                       payload: WireFormat.json(reading), deviceID: dev.device.id, sequence: seq,
                                       priority: 0, createdAt: now))
        }
        return out
    }

    static func meanPayloadBytes(_ ms: [OutgoingMessage]) -> Int {
        guard !ms.isEmpty else { return 0 }
        return ms.reduce(0) { $0 + $1.payload.count } / ms.count
    }

    static func logger() -> Logger {
        var l = Logger(label: "iomt-bench")
        l.logLevel = .error
        return l
    }

    /// The at-rest key of the sealed variants (issue 8): a fixed 256-bit key, as `AtRestKey` derives it.
    static let sealingKey = SymmetricKey(data: [UInt8](repeating: 0x42, count: 32))

    /// The agent's buffer; `sealed`: payloads sealed at rest with AES-256-GCM, as with `security.key_file`.
    static func openBuffer(_ dir: String, sealed: Bool = false) async throws -> SQLiteBuffer {
        try await SQLiteBuffer(path: dir + "/buffer.db", maxBytes: maxBytes, onFull: .reject,
                               gatewayID: gatewayID, gapTopic: topics.gaps, logger: logger(),
                               sealingKey: sealed ? sealingKey : nil)
    }

    /// Fills a buffer with `n` readings (20 devices), 1000 per transaction. Returns the mean payload size.
    static func prefill(_ buffer: SQLiteBuffer, count n: Int) async throws -> Int {
        let devs = devices(20)
        var done = 0
        var sizeSum = 0
        var seqBase: UInt64 = 1
        while done < n {
            let k = min(1000, n - done)
            let batch = messages(k, devices: devs, startSequence: seqBase)
            sizeSum += batch.reduce(0) { $0 + $1.payload.count }
            _ = try await buffer.append(batch)
            done += k
            seqBase += UInt64((k + devs.count - 1) / devs.count)
        }
        return n > 0 ? sizeSum / n : 0
    }
}

/// Forwarder + MQTTClient wired as in `Agent.run` (event loop translating client events).
final class Uplink: Sendable {
    let client: MQTTClient
    let forwarder: Forwarder
    private let pump: Task<Void, Never>
    private let events: Task<Void, Never>

    init(buffer: SQLiteBuffer, brokerPort: Int, clientID: String, window: Int = 64) throws {
        var config = UplinkConfig(
            brokers: [BrokerAddress(host: "127.0.0.1", port: brokerPort, tls: false)], clientID: clientID,
            keepalive: 30, reconnectMinDelay: .milliseconds(100), reconnectMaxDelay: .seconds(1))
        config.batchAcknowledgements = true   // as Agent wires it
        let client = try MQTTClient(config: config)
        let forwarder = Forwarder(store: buffer, link: client,
                                  settings: .init(window: window, qos: .atLeastOnce, order: .fifo),
                                  logger: Workload.logger())
        self.client = client
        self.forwarder = forwarder
        pump = Task { await forwarder.run() }
        events = Task {
            for await event in client.events {
                switch event {
                case .connected(let broker, _):
                    await forwarder.handle(.connected(broker: broker.description, republishInFlight: false))
                case .connectionFailed: break
                case .disconnected(let error): await forwarder.handle(.disconnected(reason: error?.description))
                case .acknowledged(let mid, _): await forwarder.handle(.acknowledged(mid: mid))
                case .acknowledgedBatch(let mids): await forwarder.handle(.acknowledgedBatch(mids))
                case .refused(let mid, let reason): await forwarder.handle(.refused(mid: mid, reason: reason.description))
                case .delivered(let tags): await forwarder.handle(.delivered(tags))
                case .outboxRefused(let tag, let reason): await forwarder.handle(.refusedTag(tag, reason: reason.description))
                }
            }
        }
    }

    func start() throws { try client.start() }

    func shutdown() async {
        await forwarder.flushAcks()
        await client.stop()
        await events.value
        forwarder.doorbell.close()
        await pump.value
    }
}

/// A thread-safe list of samples.
final class Samples: Sendable {
    private let values = Mutex<[Double]>([])
    func add(_ v: Double) { values.withLock { $0.append(v) } }
    var all: [Double] { values.withLock { $0 } }
}
