import CSQLite
import IoMTAgent
import IoMTBuffer
import IoMTCore
import IoMTSources
import Synchronization

private let transient = unsafeBitCast(-1, to: sqlite3_destructor_type.self)

/// 1. Durable ingest: readings per second made durable by the real Ingestor → SQLiteBuffer
/// (group commit) under `submitters` concurrent simulated devices submitting as fast as they
/// can, against raw SQLite batched inserts of the same rows (same schema, WAL, synchronous=FULL).
enum IngestBench {
    struct Outcome {
        var perSecond: Double
        var meanLatencyMicros: Double
    }

    static func agentRun(submitters: Int, seconds: Double, maxDelayMillis: Int, maxBatch: Int, sealed: Bool = false) async throws -> Outcome {
        let dir = try makeTempDir("ingest")
        defer { removeTree(dir) }
        let buffer = try await Workload.openBuffer(dir, sealed: sealed)
        let ingestor = Ingestor(store: buffer,
                                settings: .init(gatewayID: Workload.gatewayID, topics: Workload.topics,
                                                maxDelay: .milliseconds(maxDelayMillis), maxBatch: maxBatch),
                                logger: Workload.logger(), initialSequences: [:], onCommitted: {})
        let commits = Task { await ingestor.run() }
        let devices = Workload.devices(submitters)
        let clock = SystemWallClock()
        let start = monoNanos()
        let deadline = start + Int64(seconds * 1e9)
        let (accepted, latencySum) = await withTaskGroup(of: (Int, Int64).self) { group in
            for dev in devices {
                group.addTask {
                    var n = 0
                    var lat: Int64 = 0
                    var index = 0
                    while monoNanos() < deadline {
                        let t0 = monoNanos()
                        if case .accepted = await ingestor.submit(dev.reading(index: index, at: clock.now())) { n += 1 }
                        lat += monoNanos() - t0
                        index += 1
                    }
                    return (n, lat)
                }
            }
            var total = 0
            var lat: Int64 = 0
            for await (n, l) in group { total += n; lat += l }
            return (total, lat)
        }
        let elapsed = elapsedSeconds(since: start)
        commits.cancel()
        await commits.value
        await buffer.close()
        return Outcome(perSecond: Double(accepted) / elapsed,
                       meanLatencyMicros: accepted > 0 ? Double(latencySum) / Double(accepted) / 1000 : .nan)
    }

    /// Raw C API: prepared INSERT of the same rows into a table shaped like the buffer's segment
    /// tables (schema v3: integer primary key, no AUTOINCREMENT, no index), `batch` rows per
    /// transaction, WAL + synchronous=FULL, one thread, no waiting between commits.
    static func rawRun(batch: Int, seconds: Double, pool: [OutgoingMessage]) throws -> Double {
        let dir = try makeTempDir("rawsql")
        defer { removeTree(dir) }
        var db: OpaquePointer?
        guard sqlite3_open_v2(dir + "/raw.db", &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, nil) == SQLITE_OK, let db else {
            throw BenchError("raw sqlite open failed")
        }
        defer { sqlite3_close_v2(db) }
        func exec(_ sql: String) throws {
            guard sqlite3_exec(db, sql, nil, nil, nil) == SQLITE_OK else {
                throw BenchError("raw sqlite: \(sql): \(String(cString: sqlite3_errmsg(db)))")
            }
        }
        try exec("PRAGMA journal_mode=WAL")
        try exec("PRAGMA synchronous=FULL")
        try exec("""
            CREATE TABLE messages(row_id INTEGER PRIMARY KEY, id_high INTEGER NOT NULL, id_low INTEGER NOT NULL,
              kind INTEGER NOT NULL, priority INTEGER NOT NULL, device_id TEXT, sequence INTEGER, created_at INTEGER NOT NULL,
              size INTEGER NOT NULL, topic TEXT NOT NULL, payload BLOB NOT NULL);
            """)
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, "INSERT INTO messages(id_high, id_low, kind, priority, device_id, sequence, created_at, size, topic, payload) VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)", -1, &stmt, nil) == SQLITE_OK, let stmt else {
            throw BenchError("raw sqlite prepare failed")
        }
        defer { sqlite3_finalize(stmt) }
        let start = monoNanos()
        let deadline = start + Int64(seconds * 1e9)
        var n = 0
        var k = 0
        while monoNanos() < deadline {
            try exec("BEGIN")
            for _ in 0..<batch {
                let m = pool[k % pool.count]
                k += 1
                sqlite3_bind_int64(stmt, 1, Int64(bitPattern: m.id.high) &+ Int64(k))
                sqlite3_bind_int64(stmt, 2, Int64(bitPattern: m.id.low))
                sqlite3_bind_int64(stmt, 3, Int64(m.kind.rawValue))
                sqlite3_bind_int64(stmt, 4, Int64(m.priority))
                sqlite3_bind_text(stmt, 5, m.deviceID ?? "", -1, transient)
                sqlite3_bind_int64(stmt, 6, Int64(k))
                sqlite3_bind_int64(stmt, 7, m.createdAt.millisecondsSinceEpoch)
                sqlite3_bind_int64(stmt, 8, Int64(m.payload.count + 100))
                sqlite3_bind_text(stmt, 9, m.topic, -1, transient)
                m.payload.withUnsafeBufferPointer { _ = sqlite3_bind_blob(stmt, 10, $0.baseAddress, Int32($0.count), transient) }
                guard sqlite3_step(stmt) == SQLITE_DONE else { throw BenchError("raw insert: \(String(cString: sqlite3_errmsg(db)))") }
                sqlite3_reset(stmt)
            }
            try exec("COMMIT")
            n += batch
        }
        return Double(n) / elapsedSeconds(since: start)
    }

    static func run(_ results: Results, quick: Bool) async throws {
        print("1. durable ingest")
        let reps = quick ? 3 : 5
        let secs = quick ? 1.0 : 4.0
        let submitters = 20
        let pool = Workload.messages(2000, devices: Workload.devices(submitters))
        var agent: [Double] = [], agentLat: [Double] = [], agentWithDelay: [Double] = []
        var raw20: [Double] = [], raw256: [Double] = []
        var sealed: [Double] = [], sealedLat: [Double] = [], sealedVsPlain: [Double] = []
        for _ in 0..<reps {
            // Interleaved so drift (other tenants of the machine) hits both sides alike.
            let a = try await agentRun(submitters: submitters, seconds: secs, maxDelayMillis: 0, maxBatch: 256)
            agent.append(a.perSecond); agentLat.append(a.meanLatencyMicros)
            // Issue 8: the same run with payloads sealed at rest (AES-256-GCM on the buffer thread).
            let s = try await agentRun(submitters: submitters, seconds: secs, maxDelayMillis: 0, maxBatch: 256, sealed: true)
            sealed.append(s.perSecond); sealedLat.append(s.meanLatencyMicros)
            sealedVsPlain.append(s.perSecond / a.perSecond)
            raw20.append(try rawRun(batch: submitters, seconds: secs, pool: pool))
            raw256.append(try rawRun(batch: 256, seconds: secs, pool: pool))
            agentWithDelay.append(try await agentRun(submitters: submitters, seconds: secs, maxDelayMillis: 10, maxBatch: 256).perSecond)
        }
        results.add("1", "ingest, 20 submitters, defaults (commit_max_delay 0 ms, max_batch 256)", unit: "readings/s",
                    agent: median(agent), baseline: median(raw20), baselineName: "raw SQLite, 20 rows/txn", reps: reps,
                    note: "batch = 20: each submitter awaits its commit, so at most 20 readings are pending")
        results.add("1", "ingest, same, vs raw 256 rows/txn", unit: "readings/s",
                    agent: median(agent), baseline: median(raw256), baselineName: "raw SQLite, 256 rows/txn", reps: reps)
        results.add("1", "ingest, 20 submitters, commit_max_delay 10 ms", unit: "readings/s",
                    agent: median(agentWithDelay), baseline: median(raw20), baselineName: "raw SQLite, 20 rows/txn", reps: reps)
        results.add("1", "submit→durable mean (defaults, saturated)", unit: "µs", agent: median(agentLat), reps: reps)
        results.add("1", "ingest sealed at rest (AES-256-GCM), 20 submitters, defaults", unit: "readings/s",
                    agent: median(sealed), baseline: median(agent), baselineName: "the agent unsealed", reps: reps,
                    note: "paired ratios sealed/unsealed \(sealedVsPlain.map { Results.fmt($0) }), median \(Results.fmt(median(sealedVsPlain)))")
        results.add("1", "ingest sealed at rest vs raw SQLite", unit: "readings/s",
                    agent: median(sealed), baseline: median(raw20), baselineName: "raw SQLite, 20 rows/txn", reps: reps)
        results.add("1", "submit→durable mean, sealed (defaults, saturated)", unit: "µs", agent: median(sealedLat),
                    baseline: median(agentLat), baselineName: "the agent unsealed", reps: reps)
        results.note("ingest: mean payload \(Workload.meanPayloadBytes(pool)) B (rotation of pulse oximeter with 75-sample pleth, blood pressure, thermometer); \(secs) s per repetition")
    }
}
