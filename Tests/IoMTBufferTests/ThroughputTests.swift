import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

/// Measures the group commit: batches of 256 readings, one transaction (one WAL fsync) each,
/// then lease + ack in batches of 256. Prints the rates; asserts that everything round-trips.
@Suite struct ThroughputTests {
    @Test func batchesOf256() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        let batches = 40, size = 256
        let prepared = (0..<batches).map { b in
            f.readings("dev-a", UInt64(b * size + 1)...UInt64((b + 1) * size), payloadSize: 300)
        }
        let clock = ContinuousClock()
        let appendTime = try await clock.measure {
            for (b, batch) in prepared.enumerated() {
                _ = try await buffer.append(batch, sequences: ["dev-a": UInt64((b + 1) * size)])
            }
        }
        var drained: [UInt64] = []
        let drainTime = try await clock.measure {
            while true {
                let leased = try await buffer.lease(limit: size)
                if leased.isEmpty { break }
                drained += seqs(leased)
                try await buffer.ack(leased.map(\.token))
            }
        }
        let n = Double(batches * size)
        func rate(_ d: Duration) -> Int {
            Int(n / (Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18))
        }
        print("throughput: append \(rate(appendTime)) msg/s (\(batches) commits of \(size) in \(appendTime)), lease+ack \(rate(drainTime)) msg/s in \(drainTime)")
        #expect(drained == Array(1...UInt64(batches * size)))
        #expect(try await buffer.stats().messageCount == 0)
    }
}
