import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

/// `ack` deletes runs of consecutive row ids with one range DELETE each: the ranges must hold
/// exactly the acknowledged rows, never a row between two runs.
@Suite struct RangeAckTests {
    @Test func ackOfScatteredTokensDeletesExactlyThoseRows() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        var f = MessageFactory()
        _ = try await buffer.append(f.readings("dev-a", 1...10), sequences: ["dev-a": 10])
        let leased = try await buffer.lease(limit: 10)
        #expect(seqs(leased) == Array(1...10))
        // Runs 1-3, 5, 7-8 (given out of order, one twice); 4, 6, 9, 10 stay.
        let picked = [7, 1, 3, 2, 5, 8, 2].map { leased[$0 - 1].token }
        #expect(try await buffer.ack(picked) == 6)
        let stats = try await buffer.stats()
        #expect(stats.messageCount == 4)
        #expect(stats.bytes == leased.filter { [4, 6, 9, 10].contains($0.message.sequence ?? 0) }
            .reduce(0) { $0 + BufferStore.logicalSize($1.message) })
        await buffer.release(leased.map(\.token))
        #expect(seqs(try await buffer.lease(limit: 10)) == [4, 6, 9, 10])
    }

    @Test func secureDeleteIsFastNotFull() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let buffer = try await openBuffer(dir.path("b.db"))
        #expect(try await buffer._pragmaInt("secure_delete") == 2, "FAST = 2 (Debian's build defaults to 1)")
    }
}
