import IoMTBuffer
import IoMTCore
import IoMTTestSupport
import Logging
import Testing
@testable import IoMTAgent

@Suite struct IngestorTests {
    func reading(_ device: String, at ms: Int64) -> DeviceReading {
        let t = Timestamp(millisecondsSinceEpoch: ms)
        return DeviceReading(device: DeviceRef(id: device, profile: "thermometer", transport: .simulated),
                             patientID: "P", measuredAt: t, receivedAt: t, timeQuality: .simulated,
                             observations: [Observation(code: .bodyTemperature, value: .numeric(36.6), unit: .celsius)])
    }

    func makeIngestor(_ buffer: SQLiteBuffer, sequences: [String: UInt64] = [:], maxBatch: Int = 256) -> Ingestor {
        Ingestor(store: buffer,
                 settings: .init(gatewayID: "gw", topics: Topics(prefix: "iomt/gw"), maxDelay: .milliseconds(10), maxBatch: maxBatch),
                 logger: Logger(label: "test"), initialSequences: sequences, onCommitted: {})
    }

    @Test func concurrentSubmitsAreDurableWithContiguousSequencesAndUniqueIds() async throws {
        let dir = try TempDir()
        let buffer = try await SQLiteBuffer(path: dir.file("b.db"), maxBytes: 64 << 20, onFull: .reject,
                                            gatewayID: "gw", gapTopic: "iomt/gw/status/gaps")
        let ingestor = makeIngestor(buffer, sequences: ["dev-b": 41])
        let runner = Task { await ingestor.run() }
        let outcomes = await withTaskGroup(of: (String, IngestOutcome).self) { group in
            for i in 0..<600 {
                let device = i % 2 == 0 ? "dev-a" : "dev-b"
                group.addTask { (device, await ingestor.submit(reading(device, at: 1_764_093_159_000 + Int64(i)))) }
            }
            return await group.reduce(into: []) { $0.append($1) }
        }
        runner.cancel()
        await runner.value

        var seqs: [String: [UInt64]] = [:]
        var ids = Set<ReadingID>()
        for (device, outcome) in outcomes {
            guard case .accepted(let id, let seq) = outcome else { Issue.record("not accepted: \(outcome)"); continue }
            seqs[device, default: []].append(seq)
            ids.insert(id)
        }
        #expect(seqs["dev-a"]?.sorted() == Array(1...300))
        #expect(seqs["dev-b"]?.sorted() == Array(42...341), "continues from the persisted high-water mark")
        #expect(ids.count == 600)
        // Accepted means committed: all 600 are in the file, and the sequences were persisted.
        #expect(try await buffer.stats().messageCount == 600)
        #expect(try await buffer.loadSequences() == ["dev-a": 300, "dev-b": 341])
        let stored = try await buffer.lease(limit: 1000)
        #expect(stored.allSatisfy { $0.message.topic.hasPrefix("iomt/gw/readings/dev-") })
        await buffer.close()
    }

    @Test func rejectedReadingsUseUpTheirSequenceAndAreReportedLost() async throws {
        let dir = try TempDir()
        let buffer = try await SQLiteBuffer(path: dir.file("b.db"), maxBytes: 2000, onFull: .reject,
                                            gatewayID: "gw", gapTopic: "iomt/gw/status/gaps")
        let ingestor = makeIngestor(buffer, maxBatch: 1)
        let runner = Task { await ingestor.run() }
        var outcomes: [IngestOutcome] = []
        for i in 0..<10 { outcomes.append(await ingestor.submit(reading("dev-a", at: Int64(i)))) }
        runner.cancel()
        await runner.value
        let accepted = outcomes.filter { if case .accepted = $0 { true } else { false } }.count
        #expect(accepted > 0 && accepted < 10)
        #expect(outcomes.last == .lost(sequence: 10, reason: .bufferFullRejected))
        let stats = try await buffer.stats()
        #expect(stats.totalLost == UInt64(10 - accepted))
        #expect(try await buffer.loadSequences()["dev-a"] == 10)
    }
}

@Suite struct WireDetailsTests {
    /// Under live-first a lease lists live rows before backlog rows; a broker-unreachable alert's
    /// `clear` (stored after the reconnection: live) went out ahead of its `raise` (stored during
    /// the outage: backlog), so consumers saw it raised for good. Alerts go first, in the order
    /// they were stored; the rest keeps the lease's order.
    @Test func alertsGoFirstInTheOrderTheyWereStoredBacklogOrLive() {
        func stored(_ row: Int64, _ kind: MessageKind, backlog: Bool) -> StoredMessage {
            let m = OutgoingMessage(id: ReadingID(high: 0x0190_0000_0000_7000 | UInt64(row), low: 0x8000_0000_0000_0000),
                                    kind: kind, topic: "t/\(row)", payload: [], deviceID: nil, sequence: nil,
                                    createdAt: Timestamp(millisecondsSinceEpoch: row))
            return StoredMessage(token: .message(row), message: m, isBacklog: backlog)
        }
        let gap = StoredMessage(token: .gap(1), message: stored(0, .gap, backlog: false).message, isBacklog: false)
        // As `lease(limit:backlogLimit:liveAfter:)` lists them: gaps, live rows, backlog rows.
        let batch = [gap, stored(90, .reading, backlog: false), stored(95, .alert, backlog: false),
                     stored(3, .alert, backlog: true), stored(4, .reading, backlog: true), stored(7, .alert, backlog: true)]
        let sent = Forwarder.sendingOrder(batch)
        #expect(sent.map(\.token) == [.message(3), .message(7), .message(95), .gap(1), .message(90), .message(4)])
        // Without alerts, the lease's order stands.
        let plain = batch.filter { $0.message.kind != .alert }
        #expect(Forwarder.sendingOrder(plain).map(\.token) == plain.map(\.token))
    }

    @Test func backlogMarkIsSplicedIntoJSONObjectsOnly() {
        #expect(String(decoding: Forwarder.markBacklog(Array(#"{"a":1}"#.utf8)), as: UTF8.self) == #"{"backlog":true,"a":1}"#)
        #expect(Forwarder.markBacklog(Array("[1]".utf8)) == Array("[1]".utf8))
        #expect(Forwarder.markBacklog([]) == [])
    }

    @Test func deviceIdsAreSafeTopicLevels() {
        #expect(Topics(prefix: "iomt/gw").readings(deviceID: "a/b+c#d\u{0}") == "iomt/gw/readings/a_b_c_d_")
        #expect(Topics.level("") == "_")
        #expect(Topics(prefix: "p").gaps == "p/status/gaps")
    }
}
