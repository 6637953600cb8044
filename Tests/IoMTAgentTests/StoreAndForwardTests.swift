import Foundation
import IoMTTestSupport
import Testing

/// The agent as a separate process against a real mosquitto on loopback: outages, `kill -9`,
/// restarts. Each test owns its broker, subscriber, state directory and agent processes.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct StoreAndForwardTests {
    /// A subscriber with a persistent session on a broker with persistence, so that what the
    /// broker accepted while the subscriber was away (broker restarts) still reaches it.
    func persistentSubscriber(_ broker: MosquittoBroker, _ prefix: String, _ name: String) async throws -> MQTTTestSubscriber {
        try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(prefix)/#",
                                           clientID: "test-sub-\(name)", persistentSession: true, qos: 1)
    }

    @Test(arguments: [1, 2])
    func brokerOutageDuringSteadyStreamLosesNothing(qos: Int) async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "outage-qos\(qos)", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.qos = qos
        setup.simulators = [Sim(id: "ox-1", rate: 50, count: 400), Sim(id: "bp-1", profile: "blood-pressure", rate: 20, count: 160)]
        let sub = try await persistentSubscriber(broker, setup.prefix, "outage-\(qos)")
        defer { sub.stop() }
        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }

        #expect(await waitUntil(sub) { readings($0).count >= 60 }, "readings did not start flowing: \(agent.output.value)")
        await broker.stop()
        try await Task.sleep(for: .seconds(2))   // readings keep coming and are buffered
        try await broker.restart()

        #expect(await agent.waitForExit(timeout: .seconds(60)), "agent did not drain and exit")
        #expect(await waitUntil(sub) { msgs in
            let r = readings(msgs)
            return Set(r.filter { $0.device == "ox-1" }.map(\.sequence)).count == 400
                && Set(r.filter { $0.device == "bp-1" }.map(\.sequence)).count == 160
        }, "not everything arrived")
        let seen = readings(sub.messages)
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "ox-1") == 400)
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "bp-1") == 160)
        #expect(gaps(sub.messages).isEmpty)
        #expect(seen.allSatisfy { !$0.backlog }, "fifo never marks backlog")
        // fifo: per device, first arrivals are in sequence order.
        var firstSeen: [Int] = []
        var known = Set<Int>()
        for r in seen where r.device == "ox-1" && known.insert(r.sequence).inserted { firstSeen.append(r.sequence) }
        #expect(firstSeen == firstSeen.sorted(), "fifo order broken")
        #expect(agent.output.value.contains("uplink connected"))
        // Nothing of the patient's identity in the log.
        #expect(!agent.output.value.contains("P-TEST-1"))
        try await expectValid(seen.prefix(200).map(\.payload), schema: "reading.schema.json", dir: dir)
        let statuses = sub.messages.filter { $0.topic == "\(setup.prefix)/status" }.map(\.payloadString)
        try await expectValid(statuses, schema: "status.schema.json", dir: dir)
        #expect(statuses.last?.contains(#""state":"offline""#) == true, "clean stop leaves offline status")
    }

    /// With QoS 2 this also pins the packet-id pitfall: a restarted process must not have its
    /// new messages taken for retransmissions of the crashed process's QoS 2 packets.
    @Test(arguments: [1, 2])
    func killNineDuringOutageAndAgainDuringDrainLosesNothing(qos: Int) async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "crash-qos\(qos)", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.qos = qos
        setup.window = 4   // a slow drain, so the second kill lands in the middle of it
        setup.simulators = [Sim(id: "ox-1", rate: 200)]
        let sub = try await persistentSubscriber(broker, setup.prefix, "crash-\(qos)")
        defer { sub.stop() }

        // 1. Stream, then an outage, then kill -9 during the outage.
        let first = try setup.start(in: dir)
        defer { first.signal(SIGKILL) }
        #expect(await waitUntil(sub) { readings($0).count >= 100 })
        await broker.stop()
        try await Task.sleep(for: .seconds(1.5))
        await first.kill9()
        let deliveredBeforeOutage = Set(readings(sub.messages).map(\.sequence)).count

        // 2. Restart during the outage (more readings are buffered), bring the broker back and
        //    kill -9 again as soon as the drain is under way.
        let second = try setup.start(in: dir)
        defer { second.signal(SIGKILL) }
        try await Task.sleep(for: .seconds(1))
        try await broker.restart()
        #expect(await waitUntil(sub) { Set(readings($0).map(\.sequence)).count > deliveredBeforeOutage + 20 })
        await second.kill9()
        let maxBeforeLastRun = readings(sub.messages).map(\.sequence).max() ?? 0

        // 3. A last run adds 20 readings and drains everything: any sequence number committed by
        //    the killed runs and never delivered would leave a hole below these.
        setup.simulators = [Sim(id: "ox-1", rate: 100, count: 20)]
        let last = try setup.start(in: dir, exitWhenDrained: true)
        defer { last.signal(SIGKILL) }
        #expect(await last.waitForExit(timeout: .seconds(60)), "last run did not drain: \(last.output.value)")
        let finalMax = (try? highWaterSequence(stateDir: setup.stateDir, device: "ox-1")) ?? -1
        #expect(finalMax > maxBeforeLastRun)
        #expect(await waitUntil(sub) { msgs in Set(readings(msgs).map(\.sequence)).count >= finalMax },
                "expected \(finalMax) distinct readings")
        let maxSeen = expectNoLossAndRecognisableDuplicates(readings(sub.messages), device: "ox-1")
        #expect(maxSeen == finalMax, "every committed reading (1...\(finalMax)) arrived")
        #expect(gaps(sub.messages).isEmpty)
    }

    @Test(arguments: ["reject", "drop-oldest"])
    func bufferFullIsCountedAndAnnouncedInGapRecords(policy: String) async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "full-\(policy)", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.maxBytes = "64KiB"  // about 45 pulse-oximeter readings with their pleth batches
        setup.onFull = policy
        let total = 150
        setup.simulators = [Sim(id: "ox-1", rate: 300, count: total)]
        let sub = try await persistentSubscriber(broker, setup.prefix, "full-\(policy)")
        defer { sub.stop() }
        await broker.stop()

        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }
        try await Task.sleep(for: .seconds(2))  // all 150 produced while the broker is down
        try await broker.restart()
        #expect(await agent.waitForExit(timeout: .seconds(60)), "agent did not drain: \(agent.output.value)")

        #expect(await waitUntil(sub) { msgs in
            let delivered = Set(readings(msgs).map(\.sequence)).count
            let lost = gaps(msgs).reduce(0) { $0 + $1.count }
            return delivered + lost >= total
        }, "readings + gap counts never reached \(total)")
        let seen = readings(sub.messages)
        let gapRecords = gaps(sub.messages)
        let delivered = Set(seen.map(\.sequence))
        var announced = Set<Int>()
        for g in gapRecords {
            #expect(g.device == "ox-1")
            #expect(g.count == g.last - g.first + 1)
            #expect(g.reason == (policy == "reject" ? "buffer-full-rejected" : "buffer-full-evicted"))
            announced.formUnion(g.first...g.last)
        }
        // Every sequence number is either delivered or announced lost, never both, never neither.
        #expect(delivered.isDisjoint(with: announced))
        #expect(delivered.union(announced) == Set(1...total))
        #expect(!announced.isEmpty, "the buffer never filled")
        if policy == "reject" {
            #expect(delivered.max()! < announced.min()!, "reject keeps the oldest")
        } else {
            #expect(announced.max()! < delivered.max()!, "drop-oldest keeps the newest")
        }
        try await expectValid(gapRecords.isEmpty ? [] : sub.messages.filter { $0.topic.hasSuffix("/status/gaps") }.map(\.payloadString),
                        schema: "gap.schema.json", dir: dir)
        let status = sub.messages.last { $0.topic == "\(setup.prefix)/status" && $0.payloadString.contains(#""online""#) }
        #expect(status?.payloadString.contains(#""readings_lost":\#(announced.count)"#) == true,
                "status reports the loss: \(status?.payloadString ?? "none")")
    }

    @Test func liveFirstSendsFreshReadingsAheadOfTheBacklog() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "live", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.order = "live-first"
        setup.window = 4
        setup.simulators = [Sim(id: "th-1", profile: "thermometer", rate: 200, count: 1200)]
        let sub = try await persistentSubscriber(broker, setup.prefix, "live")
        defer { sub.stop() }
        await broker.stop()
        let agent = try setup.start(in: dir, exitWhenDrained: true)
        defer { agent.signal(SIGKILL) }
        try await Task.sleep(for: .seconds(2))  // ~400 readings of backlog
        try await broker.restart()
        #expect(await agent.waitForExit(timeout: .seconds(60)), "agent did not drain: \(agent.output.value)")
        #expect(await waitUntil(sub) { Set(readings($0).map(\.sequence)).count >= 1200 })
        let seen = readings(sub.messages)
        expectNoLossAndRecognisableDuplicates(seen, device: "th-1")
        let backlog = seen.filter(\.backlog)
        #expect(backlog.count >= 100, "the outage backlog is marked as such")
        // Live readings overtook the backlog: some unmarked reading arrived before the last
        // backlog reading, and it had a higher sequence number than every backlog reading.
        let lastBacklogIndex = seen.lastIndex(where: \.backlog) ?? 0
        let maxBacklogSeq = backlog.map(\.sequence).max() ?? 0
        #expect(seen[..<lastBacklogIndex].contains { !$0.backlog && $0.sequence > maxBacklogSeq })
        try await expectValid(backlog.prefix(50).map(\.payload), schema: "reading.schema.json", dir: dir)
    }
}

/// The per-device sequence high-water mark the agent persisted, read with the sqlite3 CLI.
func highWaterSequence(stateDir: String, device: String) throws -> Int {
    let r = try ChildProcess.runBlocking(["sqlite3", "\(stateDir)/buffer.db",
                                  "SELECT last_sequence FROM device_state WHERE device_id = '\(device)';"])
    guard r.status == 0, let v = Int(r.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw TestSupportError("sqlite3: \(r.output)")
    }
    return v
}
