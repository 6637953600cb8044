import CSQLite
#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// The agent as a separate process: `iomt-agent run --config <generated yaml>` (the sibling
/// executable of `iomt-bench`), sampled through /proc/<pid>/status and /proc/<pid>/stat.
struct AgentProcess {
    struct Simulators {
        var devices: Int
        var rate: Double
        var countPerDevice: Int?
    }

    static func config(stateDir: String, brokerPort: Int, simulators: Simulators?) -> String {
        var y = """
            gateway:
              id: bench-hub
            state_dir: \(stateDir)
            log:
              level: warning
            broker:
              url: mqtt://127.0.0.1:\(brokerPort)
              qos: 1
              keepalive_s: 10
              reconnect_min_ms: 100
              reconnect_max_ms: 1000
              status_interval_s: 5
            buffer:
              max_bytes: 8GiB
              on_full: reject
              order: fifo

            """
        if let s = simulators, s.devices > 0 {
            y += "simulators:\n"
            let profiles = ["pulse-oximeter", "blood-pressure", "thermometer"]
            for i in 0..<s.devices {
                let p = profiles[i % profiles.count]
                y += "  - profile: \(p)\n    patient: P-\(1000 + i / 3)\n    rate: \(s.rate)\n    id: sim-\(p)-\(i + 1)\n    seed: \(i + 1)\n"
                if let c = s.countPerDevice { y += "    count: \(c)\n" }
            }
        } else {
            y += "simulators: []\n"
        }
        return y
    }

    static func start(dir: String, tag: String, stateDir: String, brokerPort: Int, simulators: Simulators?,
                      exitWhenDrained: Bool) throws(BenchError) -> ChildProcess {
        let path = "\(dir)/agent-\(tag).yaml"
        try writeFile(path, config(stateDir: stateDir, brokerPort: brokerPort, simulators: simulators))
        var argv = [siblingExecutable("iomt-agent"), "run", "--config", path]
        if exitWhenDrained { argv.append("--exit-when-drained") }
        return try ChildProcess(argv, stdout: "\(dir)/agent-\(tag).out", stderr: "\(dir)/agent-\(tag).err")
    }
}

/// Rows in a buffer database, read by another process (read-only connection; WAL allows it):
/// the sum over its message tables (schema v3 keeps rows in segment tables `messages_<n>`, a
/// v2 file in `messages`). Acknowledged rows waiting for their segment to be dropped count too:
/// this is what is on disk, what a crash now would send again.
func countBufferRows(_ path: String) -> Int? {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK, let db else { return nil }
    defer { sqlite3_close_v2(db) }
    sqlite3_busy_timeout(db, 2000)
    // One read transaction, so the list and the counts see the same state.
    guard sqlite3_exec(db, "BEGIN", nil, nil, nil) == SQLITE_OK else { return nil }
    defer { sqlite3_exec(db, "COMMIT", nil, nil, nil) }
    func rows(_ sql: String, _ each: (OpaquePointer) -> Void) -> Bool {
        var stmt: OpaquePointer?
        guard sqlite3_prepare_v2(db, sql, -1, &stmt, nil) == SQLITE_OK, let stmt else { return false }
        defer { sqlite3_finalize(stmt) }
        var rc = sqlite3_step(stmt)
        while rc == SQLITE_ROW { each(stmt); rc = sqlite3_step(stmt) }
        return rc == SQLITE_DONE
    }
    var tables: [String] = []
    guard rows("SELECT name FROM sqlite_schema WHERE type = 'table' AND (name = 'messages' OR name GLOB 'messages_[0-9]*')", {
        if let p = sqlite3_column_text($0, 0) { tables.append(String(cString: p)) }
    }) else { return nil }
    var total = 0
    for t in tables {
        guard rows("SELECT count(*) FROM \(t)", { total += Int(sqlite3_column_int64($0, 0)) }) else { return nil }
    }
    return total
}
