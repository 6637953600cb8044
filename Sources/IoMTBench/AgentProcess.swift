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

/// Rows in a buffer database, read by another process (read-only connection; WAL allows it).
func countBufferRows(_ path: String) -> Int? {
    var db: OpaquePointer?
    guard sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, nil) == SQLITE_OK, let db else { return nil }
    defer { sqlite3_close_v2(db) }
    sqlite3_busy_timeout(db, 2000)
    var stmt: OpaquePointer?
    guard sqlite3_prepare_v2(db, "SELECT count(*) FROM messages", -1, &stmt, nil) == SQLITE_OK, let stmt else { return nil }
    defer { sqlite3_finalize(stmt) }
    guard sqlite3_step(stmt) == SQLITE_ROW else { return nil }
    return Int(sqlite3_column_int64(stmt, 0))
}
