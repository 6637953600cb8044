import Foundation
import IoMTCore
import Testing
@testable import IoMTBuffer

/// Appends 2 KB readings in batches of 10 until the buffer reports an error.
/// Returns the highest committed sequence number and the error.
private func fillUntilError(_ buffer: SQLiteBuffer, _ f: inout MessageFactory, from: UInt64 = 1) async -> (UInt64, BufferError?) {
    var next = from
    for _ in 0..<10_000 {
        let batch = f.readings("dev-a", next...(next + 9), payloadSize: 2_048)
        do {
            _ = try await buffer.append(batch, sequences: ["dev-a": next + 9])
            next += 10
        } catch {
            return (next - 1, error)
        }
    }
    return (next - 1, nil)
}

@Suite(.serialized) struct DiskFullTests {
    /// A real full file system: a 512 KiB tmpfs (needs CAP_SYS_ADMIN; this container has it).
    @Test func realFullFileSystemNamesThePathKeepsServingAndRecovers() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let mnt = dir.path("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let (rc, out) = try sh("mount -t tmpfs -o size=512k tmpfs '\(mnt)'")
        try #require(rc == 0, "mount -t tmpfs not permitted here (\(out)); maxPageCountProvokesSQLiteFull covers SQLITE_FULL")
        defer { _ = try? sh("umount -l '\(mnt)'") }
        let filler = mnt + "/filler"
        try Data(count: 96 * 1024).write(to: URL(fileURLWithPath: filler))

        let path = mnt + "/buffer.db"
        var f = MessageFactory()
        let buffer = try await openBuffer(path)
        let (committed, error) = await fillUntilError(buffer, &f)
        let e = try #require(error)
        guard case .diskFull(let p, _) = e else { Issue.record("expected diskFull, got \(e)"); return }
        #expect(p == path)
        #expect(e.description.hasPrefix("disk full at \(path): free space on that file system or lower buffer.max_bytes"))
        #expect(committed > 0)

        // Still serving: everything committed can be leased, in order.
        let leased = try await buffer.lease(limit: 100_000)
        #expect(seqs(leased) == Array(1...committed))
        // A delete may need WAL space too; a failed ack must not lose anything.
        do {
            try await buffer.ack(Array(leased.prefix(5)).map(\.token))
            print("ack under disk full succeeded")
        } catch {
            print("ack under disk full failed: \(error)")
            #expect(try await buffer.stats().messageCount == Int(committed))
            #expect(seqs(try await buffer.lease(limit: 5)) == [1, 2, 3, 4, 5])   // released, delivered again
        }
        await buffer.release(leased.map(\.token))

        // Free space: the next append simply works.
        try FileManager.default.removeItem(atPath: filler)
        let next = f.readings("dev-a", (committed + 1)...(committed + 10), payloadSize: 2_048)
        let outcome = try await buffer.append(next, sequences: ["dev-a": committed + 10])
        #expect(outcome.storedCount == 10)
        await buffer.close()

        // Nothing committed was lost across the episode.
        let reopened = try await openBuffer(path)
        let all = seqs(try await reopened.lease(limit: 100_000))
        #expect(all.last == committed + 10)
        #expect(Set(all).isSuperset(of: Set((committed - 4)...(committed + 10))))
        #expect(try await reopened.loadSequences()["dev-a"] == committed + 10)
        await reopened.close()
    }

    /// SQLITE_FULL without a real file system: `PRAGMA max_page_count`.
    @Test func maxPageCountProvokesSQLiteFull() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("b.db")
        var f = MessageFactory()
        let buffer = try await openBuffer(path)
        _ = try await buffer.append(f.readings("dev-a", 1...10))
        try await buffer._setMaxPageCount(40)
        let (committed, error) = await fillUntilError(buffer, &f, from: 11)
        let e = try #require(error)
        guard case .diskFull = e else { Issue.record("expected diskFull, got \(e)"); return }
        #expect(e.path == path)
        let stats = try await buffer.stats()
        #expect(stats.messageCount == Int(committed))    // the failed batch left no trace in the accounting
        #expect(seqs(try await buffer.lease(limit: 10_000)) == Array(1...committed))
        #expect(try await buffer.loadSequences()["dev-a"] == committed)

        try await buffer._setMaxPageCount(1_000_000)
        let outcome = try await buffer.append(f.readings("dev-a", (committed + 1)...(committed + 10)))
        #expect(outcome.storedCount == 10)
        #expect(try await buffer.stats().messageCount == Int(committed) + 10)
    }

    /// A read-only file system (remounted read-only tmpfs): opening names the path and says read-only.
    @Test func readOnlyFileSystemIsReadOnlyError() async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let mnt = dir.path("mnt")
        try FileManager.default.createDirectory(atPath: mnt, withIntermediateDirectories: true)
        let (rc, out) = try sh("mount -t tmpfs -o size=1m tmpfs '\(mnt)'")
        try #require(rc == 0, "mount not permitted here: \(out)")
        defer { _ = try? sh("umount -l '\(mnt)'") }
        let path = mnt + "/buffer.db"
        do {
            let b = try await openBuffer(path)
            var f = MessageFactory()
            _ = try await b.append(f.readings("dev-a", 1...3))
            await b.close()
        }
        let (rc2, out2) = try sh("mount -o remount,ro '\(mnt)'")
        try #require(rc2 == 0, "remount failed: \(out2)")
        do {
            _ = try await openBuffer(path)
            Issue.record("opening on a read-only file system must fail")
        } catch let error as BufferError {
            print("read-only open: \(error)")
            guard case .readOnly = error else { Issue.record("expected readOnly, got \(error)"); return }
            #expect(error.path == path)
            #expect(error.description.contains(path))
        }
        #expect(FileManager.default.fileExists(atPath: path))
    }
}
