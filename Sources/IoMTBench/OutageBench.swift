#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// 5. Outage + crash, against the incumbent set-up (local mosquitto with persistence, bridged to
/// the "remote" one). The remote is down while N readings are produced; the producer side is
/// killed with SIGKILL during the outage and restarted; the remote comes back; a subscriber with
/// a persistent session (created before the outage) counts distinct readings arriving at the remote.
enum OutageBench {
    struct Outcome {
        var delivered: Int
        var drainSeconds: Double
    }

    /// Creates the counting subscriber's persistent session on the remote (then the remote stops).
    static func primeRemote(_ remote: Broker, dir: String, filter: String, clientID: String) throws(BenchError) {
        try remote.start()
        let prime = try ChildProcess([siblingExecutable("raw-publisher"), "sub", "127.0.0.1", "\(remote.port)", filter,
                                      clientID, "0", "0", "0", "10000"],
                                     stdout: dir + "/prime.out", stderr: dir + "/prime.err")
        guard prime.wait(timeoutMillis: 15_000) == 0 else { prime.crash(); throw BenchError("cannot prime the remote: \(prime.stderrText)") }
        remote.stop() // SIGTERM: the session is written to the persistence file
    }

    /// Brings the remote back and counts distinct ids arriving, until `expect` or `idleMillis` of silence.
    static func count(remote: Broker, dir: String, filter: String, clientID: String, expect: Int,
                      idleMillis: Int, maxMillis: Int) throws(BenchError) -> Outcome {
        try remote.start()
        let back = realNanos()
        let sub = try ChildProcess([siblingExecutable("raw-publisher"), "sub", "127.0.0.1", "\(remote.port)", filter,
                                    clientID, "0", "\(expect)", "\(idleMillis)", "\(maxMillis)"],
                                   stdout: dir + "/\(clientID).out", stderr: dir + "/\(clientID).err")
        sub.wait(timeoutMillis: maxMillis + 10_000)
        sub.crash()
        var seen = Set<Substring>()
        var last = back
        for line in sub.stdoutText.split(separator: "\n") {
            let parts = line.split(separator: " ", maxSplits: 1)
            guard parts.count == 2, let t = Int64(parts[0]) else { continue }
            if seen.insert(parts[1]).inserted { last = max(last, t) }
        }
        return Outcome(delivered: seen.count, drainSeconds: seen.isEmpty ? .nan : Double(last - back) / 1e9)
    }

    static func agentScenario(n: Int, dir: String) async throws -> (Outcome, Int) {
        let remote = try Broker(dir: dir, name: "remote-agent", extra: "persistence true\npersistence_location \(dir)/remote-agent-db/\n")
        defer { remote.crash() }
        guard mkdirP(dir + "/remote-agent-db") else { throw BenchError("mkdir failed") }
        try primeRemote(remote, dir: dir, filter: Workload.readingsFilter, clientID: "counter-agent")
        let state = dir + "/agent-state"
        guard mkdirP(state) else { throw BenchError("mkdir failed") }
        // 20 devices x 50 readings/s, n in total, produced while the remote is down.
        let devices = 20
        let producer = try AgentProcess.start(dir: dir, tag: "outage-1", stateDir: state, brokerPort: remote.port,
                                              simulators: .init(devices: devices, rate: 50, countPerDevice: n / devices),
                                              exitWhenDrained: false)
        let deadline = monoNanos() + 600_000_000_000
        while (countBufferRows(state + "/buffer.db") ?? 0) < n {
            guard producer.isRunning, monoNanos() < deadline else { producer.crash(); throw BenchError("agent did not buffer \(n): \(producer.stderrText)") }
            sleepMillis(100)
        }
        producer.crash() // kill -9 during the outage
        let durable = countBufferRows(state + "/buffer.db") ?? -1
        let restarted = try AgentProcess.start(dir: dir, tag: "outage-2", stateDir: state, brokerPort: remote.port,
                                               simulators: nil, exitWhenDrained: true)
        defer { restarted.stop() }
        sleepMillis(1000)
        let outcome = try count(remote: remote, dir: dir, filter: Workload.readingsFilter, clientID: "counter-agent",
                                expect: n, idleMillis: 5000, maxMillis: 300_000)
        restarted.wait(timeoutMillis: 30_000)
        return (outcome, durable)
    }

    static func incumbentScenario(n: Int, payloadBytes: Int, dir: String, maxMillis: Int, autosave: String, tag: String) throws(BenchError) -> Outcome {
        let filter = "iomt/#"
        let remote = try Broker(dir: dir, name: "remote-\(tag)", extra: "persistence true\npersistence_location \(dir)/remote-\(tag)-db/\n")
        defer { remote.crash() }
        guard mkdirP(dir + "/remote-\(tag)-db"), mkdirP(dir + "/local-\(tag)-db") else { throw BenchError("mkdir failed") }
        try primeRemote(remote, dir: dir, filter: filter, clientID: "counter-\(tag)")
        let local = try Broker(dir: dir, name: "local-\(tag)", extra: """
            persistence true
            persistence_location \(dir)/local-\(tag)-db/
            \(autosave)
            queue_qos0_messages false
            connection remote
            address 127.0.0.1:\(remote.port)
            topic # out 1
            cleansession false
            clientid bench-bridge-\(tag)
            bridge_protocol_version mqttv311
            try_private false
            restart_timeout 1
            """)
        defer { local.crash() }
        try local.start()
        // The producer: QoS 1 to the local broker, each message acknowledged by it.
        let pub = try ChildProcess([siblingExecutable("raw-publisher"), "pub", "127.0.0.1", "\(local.port)", "\(n)",
                                    "\(payloadBytes)", "1", "64", "iomt/bench-hub/readings/raw", "5", "bench-producer-\(tag)"],
                                   stdout: dir + "/producer-\(tag).out", stderr: dir + "/producer-\(tag).err")
        let p0 = monoNanos()
        guard pub.wait(timeoutMillis: 600_000) == 0 else { pub.crash(); throw BenchError("producer failed: \(pub.stderrText)") }
        print("    incumbent (\(tag)): \(n) published with QoS 1 to the local broker in \(Results.fmt(elapsedSeconds(since: p0))) s")
        local.crash() // kill -9 during the outage
        try local.start()
        sleepMillis(1000)
        return try count(remote: remote, dir: dir, filter: filter, clientID: "counter-\(tag)", expect: n,
                         idleMillis: 5000, maxMillis: maxMillis)
    }

    static func run(_ results: Results, quick: Bool) async throws {
        print("5. outage + kill -9 of the producer side, against a persistent bridging mosquitto")
        let n = quick ? 1_000 : 10_000
        let maxWait = quick ? 15_000 : 30_000
        let dir = try makeTempDir("outage")
        defer { removeTree(dir) }
        let (agent, durable) = try await agentScenario(n: n, dir: dir)
        let payload = Workload.meanPayloadBytes(Workload.messages(300, devices: Workload.devices(20)))
        let inc60 = try incumbentScenario(n: n, payloadBytes: payload, dir: dir, maxMillis: maxWait, autosave: "autosave_interval 60", tag: "inc60")
        // Saving after every change rewrites the whole file each time (quadratic in the queue):
        // every 100 changes is the most aggressive setting that finishes at this N.
        let inc1 = try incumbentScenario(n: n, payloadBytes: payload, dir: dir, maxMillis: maxWait,
                                         autosave: "autosave_interval 100\nautosave_on_changes true", tag: "inc100")
        results.add("5", "outage+kill -9: readings lost of \(n)", unit: "readings", agent: Double(n - agent.delivered),
                    baseline: Double(n - inc60.delivered), baselineName: "mosquitto bridge, persistence, autosave_interval 60",
                    reps: 1, note: "agent had \(durable) durable rows at the kill")
        results.add("5", "outage+kill -9: readings lost of \(n)", unit: "readings", agent: Double(n - agent.delivered),
                    baseline: Double(n - inc1.delivered), baselineName: "mosquitto bridge, autosave every 100 changes",
                    reps: 1)
        results.add("5", "drain time after the remote is back", unit: "s", agent: agent.drainSeconds,
                    baseline: inc60.drainSeconds, baselineName: "mosquitto bridge, autosave_interval 60", reps: 1,
                    note: "remote start → last reading at the remote; n/a = nothing arrived")
        results.add("5", "drain time after the remote is back", unit: "s", agent: agent.drainSeconds,
                    baseline: inc1.drainSeconds, baselineName: "mosquitto bridge, autosave every 100 changes", reps: 1)
    }
}

func mkdirP(_ path: String) -> Bool {
    #if canImport(Glibc)
    return Glibc.mkdir(path, 0o755) == 0 || errno == EEXIST
    #else
    return mkdir(path, 0o755) == 0 || errno == EEXIST
    #endif
}
