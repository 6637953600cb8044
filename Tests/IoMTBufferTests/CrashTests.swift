import Foundation
import IoMTCore
import IoMTTestSupport
import Testing
@testable import IoMTBuffer

private let childDBVariable = "IOMT_BUFFER_CRASH_CHILD_DB"
/// Set (to anything) when the child seals with `testKey` (issue 8).
private let childSealedVariable = "IOMT_BUFFER_CRASH_CHILD_SEALED"
private let batchSize: UInt64 = 25

/// Crash durability with a real `kill -9`: the test binary re-executes itself running only
/// `childAppendLoop`, which appends batches forever and prints `COMMITTED <last sequence>` after
/// each `append` returned. The parent kills it at a random moment, reopens the database and
/// checks that every reported batch is there, whole, with its sequence high-water mark.
@Suite struct CrashTests {
    /// Only runs inside the child process (the environment variable names its database).
    @Test(.enabled(if: ProcessInfo.processInfo.environment[childDBVariable] != nil))
    func childAppendLoop() async throws {
        let path = try #require(ProcessInfo.processInfo.environment[childDBVariable])
        let sealed = ProcessInfo.processInfo.environment[childSealedVariable] != nil
        let buffer = try await openBuffer(path, key: sealed ? testKey : nil)
        var f = MessageFactory()
        var last = try await buffer.loadSequences()["dev-crash"] ?? 0
        while true {
            let batch = f.readings("dev-crash", (last + 1)...(last + batchSize), payloadSize: 300)
            _ = try await buffer.append(batch, sequences: ["dev-crash": last + batchSize])
            last += batchSize
            let line = Array("COMMITTED \(last)\n".utf8)
            _ = line.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }   // unbuffered
        }
    }

    /// Also with payloads sealed at rest: sealing happens inside the same transaction, so a
    /// kill leaves only whole batches, and every one of them still opens with the key.
    @Test(arguments: [false, true])
    func killDashNineLosesNoCommittedBatch(sealed: Bool) async throws {
        let dir = try TempDir(); defer { dir.remove() }
        let path = dir.path("crash.db")
        var reported: UInt64 = 0
        for round in 0..<3 {
            let r = try await runChildAndKill(db: path, sealed: sealed, commitsBeforeKill: 30 + round * 10)
            #expect(r.killedBySignal9, "child was not killed by SIGKILL: \(r.output.suffix(2_000))")
            #expect(r.lastCommitted > reported)
            reported = r.lastCommitted

            // Reopen (what the restarted agent does) and check.
            let buffer = try await openBuffer(path, key: sealed ? testKey : nil)
            #expect(buffer.recoveredFromCorruption == nil)
            let stored = seqs(try await buffer.lease(limit: 1_000_000))
            #expect(await buffer.unreadableAtRestCount() == 0)
            if sealed {
                let (rc, out) = try sh("sqlite3 '\(path)' 'SELECT sealed, count(*) FROM \(try bufferMessagesTable(path)) GROUP BY sealed;'")
                #expect(rc == 0 && out.trimmingCharacters(in: .whitespacesAndNewlines) == "1|\(stored.count)", "\(out)")
            }
            let high = stored.last ?? 0
            #expect(stored == (0..<stored.count).map { UInt64($0 + 1) })   // 1...high, no holes
            #expect(high >= reported)                       // every reported batch is durable
            #expect(high % batchSize == 0)                  // batches are atomic
            #expect(try await buffer.loadSequences()["dev-crash"] == high)
            print("round \(round): child reported \(reported), found \(high) after kill -9")
            await buffer.close()
        }
    }
}

private struct ChildResult: Sendable {
    var lastCommitted: UInt64
    var killedBySignal9: Bool
    var output: String
}

private func runChildAndKill(db: String, sealed: Bool, commitsBeforeKill: Int) async throws -> ChildResult {
    try await withCheckedThrowingContinuation { continuation in
        // A plain thread: the blocking pipe reads must not occupy the cooperative pool.
        let thread = Thread {
            do { continuation.resume(returning: try runChildBlocking(db: db, sealed: sealed, commitsBeforeKill: commitsBeforeKill)) }
            catch { continuation.resume(throwing: error) }
        }
        thread.start()
    }
}

private struct ChildFailed: Error, CustomStringConvertible {
    var description: String
}

private func runChildBlocking(db: String, sealed: Bool, commitsBeforeKill: Int) throws -> ChildResult {
    let exe = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    let p = Process()
    p.executableURL = URL(fileURLWithPath: exe)
    p.arguments = ["--testing-library", "swift-testing", "--filter", "childAppendLoop"]
    var env = ProcessInfo.processInfo.environment
    env[childDBVariable] = db
    env[childSealedVariable] = sealed ? "1" : nil
    p.environment = env
    let pipe = Pipe()
    p.standardOutput = pipe
    p.standardError = FileHandle.nullDevice
    try p.run()
    var text = ""
    var commits = 0
    var last: UInt64 = 0
    var killed = false
    let deadline = Date().addingTimeInterval(120)
    while true {
        let data = pipe.fileHandleForReading.availableData
        if data.isEmpty { break }   // EOF: the child is gone
        text += String(decoding: data, as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: false)
        let partial = lines.removeLast()
        for line in lines where line.hasPrefix("COMMITTED ") {
            if let n = UInt64(line.dropFirst("COMMITTED ".count)) { last = n; commits += 1 }
        }
        text = lines.suffix(20).joined(separator: "\n") + "\n" + partial
        if !killed && (commits >= commitsBeforeKill || Date() > deadline) {
            usleep(UInt32.random(in: 0...20_000))           // land anywhere inside the next transaction
            kill(p.processIdentifier, SIGKILL)
            killed = true
        }
    }
    p.waitUntilExit()
    guard commits > 0 else { throw ChildFailed(description: "child reported no commit; output:\n\(text)") }
    // Lines printed between the SIGKILL and exit are still reports of committed batches.
    return ChildResult(lastCommitted: last,
                       killedBySignal9: p.terminationReason == .uncaughtSignal && p.terminationStatus == SIGKILL,
                       output: text)
}
