#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif
import Synchronization

/// A child process started with `posix_spawn`, stdout/stderr redirected to files.
/// Every child is registered so that `ChildProcess.killAll()` can stop (by PID) whatever a
/// failing benchmark left running.
final class ChildProcess: Sendable {
    let pid: pid_t
    let name: String
    let stdoutPath: String
    let stderrPath: String
    private let exit = Mutex<Int32?>(nil)
    private let usage = Mutex<Double>(0)

    private static let live = Mutex<[pid_t: String]>([:])

    init(_ argv: [String], stdout: String, stderr: String) throws(BenchError) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        var cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) }
        cargs.append(nil)
        defer { for p in cargs { free(p) } }
        var pid: pid_t = 0
        let rc = posix_spawnp(&pid, argv[0], &actions, nil, cargs, environ)
        guard rc == 0 else { throw BenchError("cannot start \(argv[0]): \(String(cString: strerror(rc)))") }
        self.pid = pid
        self.name = argv[0]
        self.stdoutPath = stdout
        self.stderrPath = stderr
        ChildProcess.live.withLock { $0[pid] = argv[0] }
    }

    /// Non-blocking: the exit status if it has exited (reaps it).
    func poll() -> Int32? {
        if let e = exit.withLock({ $0 }) { return e }
        var status: Int32 = 0
        var ru = rusage()
        let r = wait4(pid, &status, WNOHANG, &ru)
        guard r == pid else { return nil }
        let code: Int32 = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
        exit.withLock { $0 = code }
        usage.withLock { $0 = cpuSeconds(ru) }
        ChildProcess.live.withLock { $0[pid] = nil }
        return code
    }

    var isRunning: Bool { poll() == nil }

    /// User + system CPU seconds of the child, known once it has exited and been reaped.
    var cpuSecondsUsed: Double { usage.withLock { $0 } }

    /// Waits up to `timeoutMillis` for the exit; nil on timeout.
    @discardableResult
    func wait(timeoutMillis: Int) -> Int32? {
        let deadline = monoNanos() + Int64(timeoutMillis) * 1_000_000
        while true {
            if let code = poll() { return code }
            if monoNanos() > deadline { return nil }
            sleepMillis(5)
        }
    }

    func signal(_ sig: Int32) {
        if isRunning { kill(pid, sig) }
    }

    /// SIGTERM, then SIGKILL after `graceMillis`; always reaps.
    func stop(graceMillis: Int = 5000) {
        signal(SIGTERM)
        if wait(timeoutMillis: graceMillis) == nil {
            signal(SIGKILL)
            wait(timeoutMillis: 5000)
        }
    }

    /// `kill -9` and reap.
    func crash() {
        signal(SIGKILL)
        wait(timeoutMillis: 5000)
    }

    var stdoutText: String { readFile(stdoutPath) ?? "" }
    var stderrText: String { readFile(stderrPath) ?? "" }

    /// Kills (by PID) every child still registered. Called on every exit path of the bench.
    static func killAll() {
        let pids = live.withLock { $0 }
        for (pid, _) in pids {
            kill(pid, SIGKILL)
            var status: Int32 = 0
            waitpid(pid, &status, 0)
        }
        live.withLock { $0.removeAll() }
    }
}

/// Samples a process's memory and CPU from /proc.
struct ProcSample {
    var rssKB: Int = 0
    var hwmKB: Int = 0
    /// utime + stime in clock ticks.
    var cpuTicks: Int = 0

    static func take(_ pid: pid_t) -> ProcSample? {
        guard let status = readFile("/proc/\(pid)/status"), let stat = readFile("/proc/\(pid)/stat") else { return nil }
        var s = ProcSample()
        for line in status.split(separator: "\n") {
            if line.hasPrefix("VmRSS:") { s.rssKB = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0 }
            if line.hasPrefix("VmHWM:") { s.hwmKB = Int(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") ?? 0 }
        }
        // Fields after the ")" of comm: state is field 3; utime 14, stime 15.
        guard let close = stat.lastIndex(of: ")") else { return nil }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        if fields.count > 12 { s.cpuTicks = (Int(fields[11]) ?? 0) + (Int(fields[12]) ?? 0) }
        return s
    }

    static var ticksPerSecond: Double { Double(sysconf(Int32(_SC_CLK_TCK))) }
}

func cpuSeconds(_ ru: rusage) -> Double {
    Double(ru.ru_utime.tv_sec) + Double(ru.ru_utime.tv_usec) / 1e6 + Double(ru.ru_stime.tv_sec) + Double(ru.ru_stime.tv_usec) / 1e6
}

/// This process's user + system CPU seconds.
func ownCPUSeconds() -> Double {
    var ru = rusage()
    getrusage(RUSAGE_SELF.rawValue, &ru)
    return cpuSeconds(ru)
}
