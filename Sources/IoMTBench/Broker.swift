#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A real mosquitto on a free loopback port, with its own config and (optional) persistence
/// directory. Stopped by PID (`stop()`/`crash()`), and by `ChildProcess.killAll()` on any path.
final class Broker {
    let dir: String
    let port: Int
    let configPath: String
    private(set) var process: ChildProcess?
    private var starts = 0

    /// `extra` is appended to the generated configuration (persistence, bridge...).
    init(dir: String, name: String, port: Int? = nil, extra: String = "") throws(BenchError) {
        self.dir = dir
        if let port { self.port = port } else { self.port = try freePort() }
        self.configPath = "\(dir)/\(name).conf"
        // Started as root, mosquitto drops to the `mosquitto` user, which cannot write the
        // bench's private temp dir (its persistence file would silently not be saved).
        let user = geteuid() == 0 ? "user root" : ""
        try writeFile(configPath, """
            \(user)
            listener \(self.port) 127.0.0.1
            allow_anonymous true
            log_dest stderr
            log_type error
            log_type warning
            max_inflight_messages 0
            max_queued_messages 0
            \(extra)

            """)
    }

    func start() throws(BenchError) {
        starts += 1
        let p = try ChildProcess(["mosquitto", "-c", configPath],
                                 stdout: "\(configPath).\(starts).out", stderr: "\(configPath).\(starts).err")
        process = p
        let deadline = monoNanos() + 10_000_000_000
        while !portAccepts(port) {
            if !p.isRunning { throw BenchError("mosquitto exited at start: \(p.stderrText)") }
            if monoNanos() > deadline { p.crash(); throw BenchError("mosquitto did not listen on \(port)") }
            sleepMillis(10)
        }
    }

    /// Graceful stop (SIGTERM: mosquitto writes its persistence file if enabled).
    func stop() {
        process?.stop()
        process = nil
    }

    /// `kill -9`.
    func crash() {
        process?.crash()
        process = nil
    }

    var url: String { "mqtt://127.0.0.1:\(port)" }
}
