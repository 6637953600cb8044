import IoMTAgent
import IoMTBuffer
import IoMTCore

/// 2. Drain: a pre-filled backlog drained to a local mosquitto by the real Forwarder +
/// MQTTClient (QoS 1, window 64), against raw-publisher (plain libmosquitto, same payload
/// size, QoS, window, protocol) on the same broker.
enum DrainBench {
    struct AgentDrain {
        var perSecond: Double
        var seconds: Double
        var prefillSeconds: Double
        var payloadBytes: Int
    }

    static func agentRun(backlog: Int, broker: Broker, window: Int = 64) async throws -> AgentDrain {
        let dir = try makeTempDir("drain")
        defer { removeTree(dir) }
        let buffer = try await Workload.openBuffer(dir)
        let p0 = monoNanos()
        let payload = try await Workload.prefill(buffer, count: backlog)
        let prefill = elapsedSeconds(since: p0)
        let uplink = try Uplink(buffer: buffer, brokerPort: broker.port, clientID: "bench-agent-drain", window: window)
        let idle = Task { await uplink.forwarder.waitUntilIdle() }
        let start = monoNanos()
        try uplink.start()
        await idle.value
        let secs = elapsedSeconds(since: start)
        let delivered = await uplink.forwarder.deliveredCount
        await uplink.shutdown()
        let left = try await buffer.stats().messageCount
        await buffer.close()
        guard delivered >= UInt64(backlog), left == 0 else {
            throw BenchError("agent drain incomplete: delivered \(delivered) of \(backlog), \(left) left in the buffer")
        }
        return AgentDrain(perSecond: Double(backlog) / secs, seconds: secs, prefillSeconds: prefill, payloadBytes: payload)
    }

    /// Runs raw-publisher; returns messages per second (connect to last PUBACK).
    static func rawRun(count: Int, payloadBytes: Int, broker: Broker, window: Int = 64, workDir: String) throws -> Double {
        let p = try ChildProcess([siblingExecutable("raw-publisher"), "pub", "127.0.0.1", "\(broker.port)", "\(count)",
                                  "\(payloadBytes)", "1", "\(window)", "iomt/bench-hub/readings/raw", "5", "bench-raw-pub"],
                                 stdout: workDir + "/raw.out", stderr: workDir + "/raw.err")
        guard let code = p.wait(timeoutMillis: 1_800_000), code == 0 else {
            p.crash()
            throw BenchError("raw-publisher failed: \(p.stderrText)")
        }
        let out = p.stdoutText
        guard let field = out.split(separator: " ").first(where: { $0.hasPrefix("elapsed_ns=") }),
              let ns = Double(field.dropFirst("elapsed_ns=".count)) else {
            throw BenchError("raw-publisher output: \(out)")
        }
        return Double(count) / (ns / 1e9)
    }

    static func run(_ results: Results, quick: Bool, withMillion: Bool) async throws {
        print("2. drain")
        let dir = try makeTempDir("drainbroker")
        defer { removeTree(dir) }
        let broker = try Broker(dir: dir, name: "drain")
        try broker.start()
        defer { broker.stop() }
        let backlog = quick ? 5_000 : 100_000
        let reps = quick ? 3 : 5
        var agent: [Double] = [], raw: [Double] = [], prefill: [Double] = []
        var payload = 0
        for _ in 0..<reps {
            let a = try await agentRun(backlog: backlog, broker: broker)
            agent.append(a.perSecond); prefill.append(a.prefillSeconds); payload = a.payloadBytes
            raw.append(try rawRun(count: backlog, payloadBytes: payload, broker: broker, workDir: dir))
        }
        results.add("2", "drain \(backlog) backlog, QoS 1, window 64", unit: "msg/s", agent: median(agent),
                    baseline: median(raw), baselineName: "raw-publisher (libmosquitto)", reps: reps,
                    note: "target ≥ 0.8")
        results.note("drain: payload \(payload) B mean (raw-publisher uses that fixed size); agent also sends 2 MQTT 5 user properties (reading-id, kind) per message; prefill of \(backlog) took \(Results.fmt(median(prefill))) s (not measured in the drain)")
        if withMillion {
            let n = 1_000_000
            let a = try await agentRun(backlog: n, broker: broker)
            let r = try rawRun(count: n, payloadBytes: a.payloadBytes, broker: broker, workDir: dir)
            results.add("2", "drain 1M backlog, QoS 1, window 64", unit: "msg/s", agent: a.perSecond, baseline: r,
                        baselineName: "raw-publisher (libmosquitto)", reps: 1,
                        note: "one run each (agent drain \(Results.fmt(a.seconds)) s; prefill \(Results.fmt(a.prefillSeconds)) s)")
        }
    }
}
