import IoMTAgent
import IoMTBuffer
import IoMTCore
import IoMTSources
import Synchronization

/// 3. End-to-end latency at a steady 100 readings/s (20 devices x 5/s), full pipeline
/// in-process (Ingestor → SQLiteBuffer → Forwarder → MQTTClient → mosquitto):
/// - submit→durable: our timestamps around `Ingestor.submit` (it returns after the commit);
/// - publish→PUBACK: `Forwarder.observeLatency` (millisecond resolution);
/// - submit→delivered: a raw-publisher subscriber on the same broker stamps each message with
///   CLOCK_REALTIME on arrival, matched by reading id to the submit time.
enum LatencyBench {
    static func run(_ results: Results, quick: Bool) async throws {
        print("3. end-to-end latency at 100 readings/s")
        let seconds = quick ? 5.0 : 30.0
        let dir = try makeTempDir("latency")
        defer { removeTree(dir) }
        let broker = try Broker(dir: dir, name: "latency")
        try broker.start()
        defer { broker.stop() }
        let sub = try ChildProcess([siblingExecutable("raw-publisher"), "sub", "127.0.0.1", "\(broker.port)",
                                    Workload.readingsFilter, "bench-latency-sub", "1", "-1", "3000", "\(Int(seconds * 1000) + 60_000)"],
                                   stdout: dir + "/sub.out", stderr: dir + "/sub.err")
        let subDeadline = monoNanos() + 10_000_000_000
        while !sub.stderrText.contains("subscribed") {
            guard sub.isRunning, monoNanos() < subDeadline else { throw BenchError("subscriber did not start: \(sub.stderrText)") }
            sleepMillis(10)
        }

        let buffer = try await Workload.openBuffer(dir)
        let uplink = try Uplink(buffer: buffer, brokerPort: broker.port, clientID: "bench-agent-latency")
        let pubAck = Samples()
        await uplink.forwarder.observeLatency { ms in pubAck.add(Double(ms)) }
        let doorbell = uplink.forwarder.doorbell
        let ingestor = Ingestor(store: buffer,
                                settings: .init(gatewayID: Workload.gatewayID, topics: Workload.topics,
                                                maxDelay: .zero, maxBatch: 256),   // the default
                                logger: Workload.logger(), initialSequences: [:], onCommitted: { doorbell.ring() })
        let commits = Task { await ingestor.run() }
        try uplink.start()
        // Let it connect before the clock starts.
        let connectDeadline = monoNanos() + 10_000_000_000
        while !(await uplink.forwarder.isConnected) {
            guard monoNanos() < connectDeadline else { throw BenchError("agent did not connect") }
            try await Task.sleep(for: .milliseconds(10))
        }

        let submitted = SubmitTimes()
        let durable = Samples()
        let devices = Workload.devices(20, rate: 5)
        let clock = SystemWallClock()
        let monotonic = ContinuousClock()
        let start = monotonic.now
        let perDevice = Int(seconds * 5)
        await withTaskGroup(of: Void.self) { group in
            for (i, dev) in devices.enumerated() {
                group.addTask {
                    // Staggered so the 100/s are spread evenly, as independent devices would be.
                    let offset = Duration.milliseconds(10 * i)
                    for index in 0..<perDevice {
                        let due = start.advanced(by: offset + .milliseconds(200) * index)
                        try? await Task.sleep(until: due, clock: monotonic)
                        let t0 = realNanos()
                        let outcome = await ingestor.submit(dev.reading(index: index, at: clock.now()))
                        let t1 = realNanos()
                        if case .accepted(let id, _) = outcome {
                            durable.add(Double(t1 - t0) / 1e6)
                            submitted.set(id.description, t0)
                        }
                    }
                }
            }
        }
        let idle = Task { await uplink.forwarder.waitUntilIdle() }
        doorbell.ring()
        await idle.value
        commits.cancel()
        await commits.value
        await uplink.shutdown()
        await buffer.close()
        sub.wait(timeoutMillis: 15_000)
        sub.stop()

        let sent = submitted.all
        var e2e: [Double] = []
        for line in sub.stdoutText.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let t = Int64(parts[0]), let t0 = sent[String(parts[1])] else { continue }
            e2e.append(Double(t - t0) / 1e6)
        }
        let n = sent.count
        results.add("3", "submit→durable p50", unit: "ms", agent: percentile(durable.all, 50), reps: 1,
                    note: "\(n) readings over \(Int(seconds)) s")
        results.add("3", "submit→durable p99", unit: "ms", agent: percentile(durable.all, 99), reps: 1)
        results.add("3", "publish→PUBACK p50 (observeLatency)", unit: "ms", agent: percentile(pubAck.all, 50), reps: 1,
                    note: "ms resolution")
        results.add("3", "publish→PUBACK p99 (observeLatency)", unit: "ms", agent: percentile(pubAck.all, 99), reps: 1)
        results.add("3", "submit→delivered to subscriber p50", unit: "ms", agent: percentile(e2e, 50), reps: 1,
                    note: "\(e2e.count) of \(n) matched")
        results.add("3", "submit→delivered to subscriber p99", unit: "ms", agent: percentile(e2e, 99), reps: 1)
    }
}

final class SubmitTimes: Sendable {
    private let map = Mutex<[String: Int64]>([:])
    func set(_ id: String, _ t: Int64) { map.withLock { $0[id] = t } }
    var all: [String: Int64] { map.withLock { $0 } }
}
