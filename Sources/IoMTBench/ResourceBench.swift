#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// 4. Resources of the agent process: peak RSS (VmHWM) while draining a 10k and a 1M backlog
/// (`--exit-when-drained`), and CPU (user+sys s per wall s) at 20 devices x 1 reading/s.
enum ResourceBench {
    struct DrainRun {
        var peakKB: Int
        var wallSeconds: Double
        /// Rows still in the buffer when the run ended (0 when it drained).
        var left: Int
    }

    static func drain(backlog: Int, dir: String, broker: Broker, timeLimit: Double) async throws -> DrainRun {
        let state = dir + "/state-\(backlog)"
        guard mkdir(state, 0o755) == 0 else { throw BenchError("mkdir \(state): errno \(errno)") }
        let buffer = try await Workload.openBuffer(state)
        _ = try await Workload.prefill(buffer, count: backlog)
        await buffer.close()
        let agent = try AgentProcess.start(dir: dir, tag: "drain-\(backlog)", stateDir: state, brokerPort: broker.port,
                                           simulators: nil, exitWhenDrained: true)
        let start = monoNanos()
        var peak = 0
        var timedOut = false
        while agent.isRunning {
            if let s = ProcSample.take(agent.pid) { peak = max(peak, s.hwmKB) }
            if elapsedSeconds(since: start) > timeLimit { timedOut = true; break }
            sleepMillis(50)
        }
        let wall = elapsedSeconds(since: start)
        if timedOut { agent.crash() }
        else if agent.poll() != 0 { throw BenchError("agent exited with \(agent.poll() ?? -1): \(agent.stderrText)") }
        let left = countBufferRows(state + "/buffer.db") ?? -1
        if !timedOut && left != 0 { throw BenchError("agent exited with \(left) rows left") }
        removeTree(state)
        return DrainRun(peakKB: peak, wallSeconds: wall, left: left)
    }

    static func run(_ results: Results, quick: Bool) async throws {
        print("4. agent process: peak RSS while draining, CPU at 20 devices x 1/s")
        let dir = try makeTempDir("resources")
        defer { removeTree(dir) }
        let broker = try Broker(dir: dir, name: "resources")
        try broker.start()
        defer { broker.stop() }
        let small = 10_000
        let large = quick ? 100_000 : 1_000_000
        let a = try await drain(backlog: small, dir: dir, broker: broker, timeLimit: 120)
        let b = try await drain(backlog: large, dir: dir, broker: broker, timeLimit: quick ? 60 : 180)
        results.add("4", "peak RSS (VmHWM), drain of 10k backlog", unit: "MB", agent: Double(a.peakKB) / 1024, reps: 1,
                    note: "process wall \(Results.fmt(a.wallSeconds)) s incl. start-up; target < 25 MB")
        results.add("4", "peak RSS (VmHWM), drain of \(large >= 1_000_000 ? "1M" : "\(large / 1000)k") backlog", unit: "MB",
                    agent: Double(b.peakKB) / 1024, baseline: Double(a.peakKB) / 1024, baselineName: "agent, 10k backlog",
                    reps: 1, note: b.left == 0
                        ? "process wall \(Results.fmt(b.wallSeconds)) s incl. start-up (\(Results.fmt(Double(large) / b.wallSeconds)) msg/s); target: flat, < 25 MB"
                        : "DID NOT DRAIN: killed after \(Results.fmt(b.wallSeconds)) s with \(b.left) of \(large) rows left (peak until then); target: flat, < 25 MB")

        // CPU at 20 devices x 1 reading/s.
        let seconds = quick ? 10.0 : 60.0
        let state = dir + "/state-cpu"
        guard mkdir(state, 0o755) == 0 else { throw BenchError("mkdir \(state): errno \(errno)") }
        let agent = try AgentProcess.start(dir: dir, tag: "cpu", stateDir: state, brokerPort: broker.port,
                                           simulators: .init(devices: 20, rate: 1, countPerDevice: nil), exitWhenDrained: false)
        defer { agent.stop() }
        sleepMillis(3000) // start-up (open, quick_check, connect) is not steady state
        guard let s0 = ProcSample.take(agent.pid) else { throw BenchError("agent not running: \(agent.stderrText)") }
        let t0 = monoNanos()
        var peak = 0
        while elapsedSeconds(since: t0) < seconds {
            sleepMillis(200)
            guard let s = ProcSample.take(agent.pid) else { throw BenchError("agent died: \(agent.stderrText)") }
            peak = max(peak, s.hwmKB)
        }
        guard let s1 = ProcSample.take(agent.pid) else { throw BenchError("agent died: \(agent.stderrText)") }
        let wall = elapsedSeconds(since: t0)
        let cpu = Double(s1.cpuTicks - s0.cpuTicks) / ProcSample.ticksPerSecond / wall
        agent.stop()
        results.add("4", "CPU at 20 devices x 1 reading/s (user+sys)", unit: "% of one core", agent: cpu * 100, reps: 1,
                    note: "\(Int(seconds)) s steady state after 3 s warm-up; peak RSS \(Results.fmt(Double(peak) / 1024)) MB; clock tick \(Int(ProcSample.ticksPerSecond)) Hz")
    }
}
