import Foundation
import IoMTTestSupport
import Testing

/// Alerts end to end (issue 9): `iomt-agent run` with simulators against a real mosquitto.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct AlertsEndToEndTests {
    struct Alert {
        var topic: String
        var alertID: String
        var event: String
        var rule: String
        var at: Date
        var conditionSince: Date
        var readingIDs: [String]
        var values: [Double]
        var payload: String
    }

    static func date(_ s: Any?) -> Date? {
        guard let s = s as? String else { return nil }
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return f.date(from: s)
    }

    /// The SpO2 value of an `iomt-reading/1` payload.
    static func spo2(in payload: String) -> Double? {
        guard let o = try? JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any],
              let obs = o["observations"] as? [[String: Any]] else { return nil }
        return obs.first { ($0["mdc_code"] as? Int) == 150456 }?["value"] as? Double
    }

    static func alerts(_ messages: [ReceivedMessage]) -> [Alert] {
        messages.compactMap { m in
            guard m.topic.contains("/alerts/"), let o = json(m), let id = o["alert_id"] as? String, let event = o["event"] as? String,
                  let rule = o["rule"] as? String, let at = date(o["at"]), let since = date(o["condition_since"]) else { return nil }
            return Alert(topic: m.topic, alertID: id, event: event, rule: rule, at: at, conditionSince: since,
                         readingIDs: o["reading_ids"] as? [String] ?? [], values: o["values"] as? [Double] ?? [],
                         payload: m.payloadString)
        }
    }

    /// The outage an agent starts in: a broker with persistence, a subscriber with a persistent
    /// session on `<prefix>/#` (what the broker accepts before the subscriber is back is queued
    /// for it in order), then the broker stopped. `configure` adjusts the agent's setup.
    struct Outage {
        let broker: MosquittoBroker
        let sub: MQTTTestSubscriber
        let setup: AgentSetup
    }

    static func startOutage(gateway: String, dir: TempDir, configure: (inout AgentSetup) -> Void = { _ in }) async throws -> Outage {
        let broker = try await MosquittoBroker.start(BrokerOptions(persistence: true))
        do {
            var setup = AgentSetup(gateway: gateway, stateDir: dir.file("state"), brokerURL: broker.url)
            configure(&setup)
            let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#",
                                                         clientID: gateway, persistentSession: true, qos: 1)
            await broker.stop()
            return Outage(broker: broker, sub: sub, setup: setup)
        } catch {
            broker.killNow()
            throw error
        }
    }

    /// The `alerts:` section with one rule: SpO2 (MDC 150456) below 90 % for `forSeconds`,
    /// clearing at 92 % (after `clearAfterSeconds` when given).
    static func spo2LowRule(forSeconds: Int, clearAfterSeconds: Int? = nil) -> String {
        var lines = ["  enabled: true", "  rules:", "    - name: spo2-low", "      type: threshold",
                     "      code: 150456", "      below: 90", "      clear: 92", "      for_s: \(forSeconds)"]
        if let clearAfterSeconds { lines.append("      clear_after_s: \(clearAfterSeconds)") }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The harness configuration plus an oximeter with an episode, the alerts section and a control socket.
    static func yaml(_ setup: AgentSetup, rate: Double, count: Int?, episode: String, alerts: String, socket: String) -> String {
        var sim = ["simulators:", "  - id: ox-1", "    profile: pulse-oximeter", "    patient: P-ALERT-1", "    rate: \(rate)",
                   "    episode: \(episode)"]
        if let count { sim.append("    count: \(count)") }
        return setup.yaml().replacingOccurrences(of: "simulators: []\n", with: sim.joined(separator: "\n") + "\n")
            + "control:\n  socket: \(socket)\n  group: iomt\n" + "alerts:\n" + alerts
    }

    /// (a), (d), (e): a desaturation raises and clears exactly one alert at the right times with
    /// one alert id and real reading ids; `iomt-agent alerts` lists it while it is active; the
    /// hook runs for both events, and a hook that hangs is killed at its timeout while readings
    /// keep flowing.
    @Test func desaturationRaisesAndClearsOnceWithHookAndCLI() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "alerts-desat", stateDir: dir.file("state"), brokerURL: broker.url)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#", qos: 1)
        defer { sub.stop() }
        let hookLog = dir.file("hook.jsonl")
        // Appends the alert, then hangs (exec: the shell's pid is the sleep the agent must kill).
        let alerts = """
              enabled: true
              qos: 2
              hook:
                command: [/bin/sh, -c, "cat >> \(hookLog); echo >> \(hookLog); exec sleep 30"]
                timeout_ms: 700
              rules:
                - name: spo2-low
                  type: threshold
                  profile: pulse-oximeter
                  code: MDC_PULS_OXIM_SAT_O2
                  below: 90
                  clear: 92
                  for_s: 2
                  clear_after_s: 1

            """
        // 5 readings/s for 16 s: SpO2 84 % from 4 s to 10 s.
        try dir.write("agent.yaml", Self.yaml(setup, rate: 5, count: 80, episode: "{after_s: 4, duration_s: 6, spo2: 84}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { agent.signal(SIGKILL) }

        // (d) While raised, the CLI lists it.
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.event == "raise" } }, "no raise: \(agent.output.value)")
        let listed = try await ChildProcess.run([agentBinary, "alerts", "--json", "--config", dir.file("agent.yaml")], timeout: .seconds(30))
        #expect(listed.status == 0, "\(listed.output)")
        #expect(listed.output.contains(#""rule":"spo2-low""#), "\(listed.output)")
        let raiseID = Self.alerts(sub.messages).first?.alertID ?? "?"
        #expect(listed.output.contains(raiseID))

        #expect(await agent.waitForExit(timeout: .seconds(60)), "agent did not drain: \(agent.output.value)")
        #expect(await waitUntil(sub) { readings($0).count >= 80 && Self.alerts($0).count >= 2 })
        let seen = readings(sub.messages)
        let found = Self.alerts(sub.messages)
        try #require(found.count == 2, "\(found.map(\.payload))")
        let (raise, clear) = (found[0], found[1])
        #expect(raise.event == "raise" && clear.event == "clear")
        #expect(raise.alertID == clear.alertID)
        #expect(raise.topic == "\(setup.prefix)/alerts/P-ALERT-1/spo2-low")
        // Not before the minimum duration; the values are the episode's.
        #expect(raise.at.timeIntervalSince(raise.conditionSince) >= 2.0)
        #expect(!raise.values.isEmpty && raise.values.allSatisfy { $0 == 84 })
        // The triggering readings are real and were delivered, and they carried 84 %.
        let byID = Dictionary(seen.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        #expect(!raise.readingIDs.isEmpty && raise.readingIDs.allSatisfy { byID[$0] != nil })
        #expect(raise.readingIDs.allSatisfy { byID[$0].flatMap { Self.spo2(in: $0.payload) } == 84 })
        // Cleared after recovery (>= 1 s of >= 92 %), with the recovering readings.
        #expect(clear.at > raise.at)
        #expect(!clear.readingIDs.isEmpty && clear.readingIDs.allSatisfy { byID[$0] != nil })
        #expect(clear.values.allSatisfy { $0 >= 92 })
        // Every reading arrived although each hook run hung until killed.
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "ox-1") == 80)
        let log = agent.output.value
        #expect(log.components(separatedBy: "alert hook killed at its timeout").count - 1 == 2, "\(log)")
        let hookLines = (try? String(contentsOfFile: hookLog, encoding: .utf8))?.split(separator: "\n") ?? []
        #expect(hookLines.count == 2)
        #expect(hookLines.first?.contains(#""event":"raise""#) == true && hookLines.last?.contains(#""event":"clear""#) == true)
        // No patient id in the log at info and above.
        #expect(!log.contains("P-ALERT-1"))
        try await expectValid(found.map(\.payload), schema: "alert.schema.json", dir: dir)
        // After the clear, nothing is active; the CLI reads the state the run left.
        let after = try await ChildProcess.run([agentBinary, "alerts", "--json", "--config", dir.file("agent.yaml")], timeout: .seconds(30))
        #expect(after.output.contains(#""alerts":[]"#), "\(after.output)")
    }

    /// (b) The broker is down from the start while a long backlog builds up and alerts are raised;
    /// once it is back, the first message a subscriber sees is an alert, in both orders.
    @Test(arguments: ["fifo", "live-first"])
    func alertRaisedDuringOutageIsSentBeforeTheBacklog(order: String) async throws {
        let dir = try TempDir()
        let outage = try await Self.startOutage(gateway: "alerts-outage-\(order)", dir: dir) { $0.order = order }
        let (broker, sub, setup) = (outage.broker, outage.sub, outage.setup)
        defer { broker.killNow() }
        defer { sub.stop() }
        let alerts = Self.spo2LowRule(forSeconds: 2) + """
                - name: broker-down
                  type: broker-unreachable
                  after_s: 3

            """
        // 300 readings/s; the desaturation starts after 5 s of readings and lasts past the outage.
        try dir.write("agent.yaml", Self.yaml(setup, rate: 300, count: nil, episode: "{after_s: 5, duration_s: 600, spo2: 85}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        // Both alerts raised during the outage (the log says so), then a backlog of thousands.
        #expect(await agent.output.wait(timeout: .seconds(30)) { $0.components(separatedBy: "alert raised").count - 1 >= 2 },
                "alerts not raised: \(agent.output.value)")
        try await Task.sleep(for: .seconds(6))
        try await broker.restart()

        #expect(await waitUntil(sub, timeout: .seconds(60)) { readings($0).count >= 3000 }, "backlog not delivered")
        let relevant = sub.messages.filter { $0.topic.contains("/alerts/") || $0.topic.contains("/readings/") }
        let firstTopics = relevant.prefix(2).map(\.topic).sorted()
        #expect(firstTopics == ["\(setup.prefix)/alerts/P-ALERT-1/spo2-low",
                                "\(setup.prefix)/alerts/_gateway/broker-down"].sorted(),
                "first messages: \(relevant.prefix(3).map(\.topic))")
        let raised = Self.alerts(Array(relevant.prefix(2)))
        #expect(raised.count == 2 && raised.allSatisfy { $0.event == "raise" })
        #expect(readings(sub.messages).count >= 3000)
        // The broker-unreachable alert clears once the link is back.
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.rule == "broker-down" && $0.event == "clear" } })
        try await expectValid(Self.alerts(sub.messages).map(\.payload), schema: "alert.schema.json", dir: dir)
    }

    /// (c) Values flapping around the threshold do not flap the alert: for 20 s SpO2 alternates
    /// every 0.5 s between 89 % and the normal 94-99 %, so no run below 90 % lasts `for_s` (5 s,
    /// far above the 0.5 s runs: a commit stalled by a loaded machine stretches a run in wall
    /// time, and once, with runs of 1 s against 2 s, did reach it).
    @Test func flappingValuesRaiseNothing() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "alerts-flap", stateDir: dir.file("state"), brokerURL: broker.url)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#", qos: 1)
        defer { sub.stop() }
        let alerts = Self.spo2LowRule(forSeconds: 5)
        try dir.write("agent.yaml", Self.yaml(setup, rate: 10, count: 250, episode: "{after_s: 2, duration_s: 20, spo2: 89, alternate_s: 0.5}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(60)))
        #expect(await waitUntil(sub) { readings($0).count >= 250 })
        // The flapping did happen: 89 % readings alternate with normal ones.
        let lows = readings(sub.messages).filter { Self.spo2(in: $0.payload) == 89 }.count
        #expect(lows >= 90, "only \(lows) readings at 89 %")
        #expect(Self.alerts(sub.messages).isEmpty)
        #expect(!agent.output.value.contains("alert raised"))
    }
}

extension AlertsEndToEndTests {
    /// An alert active when the agent stops is cleared by the next run with the same alert id
    /// (state_dir/alerts.json), and the CLI shows it in between without a daemon.
    @Test func restartClearsAnActiveAlertWithTheSameID() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "alerts-restart", stateDir: dir.file("state"), brokerURL: broker.url)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#", qos: 1)
        defer { sub.stop() }
        let alerts = Self.spo2LowRule(forSeconds: 1, clearAfterSeconds: 1)
        // First run: desaturated from the start, stopped while the alert is active.
        try dir.write("agent.yaml", Self.yaml(setup, rate: 5, count: nil, episode: "{after_s: 0, duration_s: 3600, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let first = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { first.signal(SIGKILL) }
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.event == "raise" } }, "no raise: \(first.output.value)")
        first.signal(SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(30)))
        let raised = try #require(Self.alerts(sub.messages).first)
        let offline = try await ChildProcess.run([agentBinary, "alerts", "--config", dir.file("agent.yaml")], timeout: .seconds(30))
        #expect(offline.output.contains("agent not running") && offline.output.contains(raised.alertID), "\(offline.output)")

        // Second run: normal values; the restored alert clears with its id.
        try dir.write("agent.yaml", Self.yaml(setup, rate: 5, count: 20, episode: "{after_s: 3600, duration_s: 1, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let second = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { second.signal(SIGKILL) }
        #expect(await second.waitForExit(timeout: .seconds(60)), "\(second.output.value)")
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.event == "clear" } })
        let found = Self.alerts(sub.messages)
        #expect(found.map(\.event) == ["raise", "clear"])
        #expect(found.last?.alertID == raised.alertID)
        #expect(second.output.value.contains("alerts still active from the last run"))
    }

    /// With `output.format: fhir` a patient alert is a FHIR R4 Flag (valid for the R4 models).
    @Test func fhirOutputPublishesAFlag() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "alerts-fhir", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.format = "fhir"
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/alerts/#", qos: 1)
        defer { sub.stop() }
        let alerts = Self.spo2LowRule(forSeconds: 1)
        try dir.write("agent.yaml", Self.yaml(setup, rate: 5, count: 30, episode: "{after_s: 1, duration_s: 2, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(60)))
        #expect(await waitUntil(sub) { $0.count >= 2 })
        let flags = sub.messages.map(\.payloadString)
        #expect(flags.count == 2)
        #expect(flags.first?.contains(#""resourceType":"Flag""#) == true && flags.first?.contains(#""status":"active""#) == true)
        #expect(flags.last?.contains(#""status":"inactive""#) == true)
        try await expectValidFHIR(flags, dir: dir)
    }
}

extension AlertsEndToEndTests {
    /// buffer-high end to end: the buffer fills during an outage (drop-oldest evicts readings, so
    /// gap records wait too); when the broker is back the alert is published before the gap
    /// records and the backlog, and it clears once the buffer drained.
    @Test func bufferHighIsRaisedDuringAnOutageAndSentBeforeGapRecords() async throws {
        let dir = try TempDir()
        let outage = try await Self.startOutage(gateway: "alerts-buffer", dir: dir) { $0.maxBytes = "64KiB"; $0.onFull = "drop-oldest" }
        let (broker, sub, setup) = (outage.broker, outage.sub, outage.setup)
        defer { broker.killNow() }
        defer { sub.stop() }
        let alerts = """
              enabled: true
              rules:
                - name: buffer-high
                  type: buffer-high
                  percent: 50
                  clear: 20

            """
        try dir.write("agent.yaml", Self.yaml(setup, rate: 100, count: nil, episode: "{after_s: 3600, duration_s: 1, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(30)) { $0.contains("alert raised") }, "\(agent.output.value)")
        try await Task.sleep(for: .seconds(2))   // evictions: gap records pile up too
        try await broker.restart()
        #expect(await waitUntil(sub, timeout: .seconds(60)) { !gaps($0).isEmpty && readings($0).count >= 20 })
        let relevant = sub.messages.filter { !$0.topic.hasSuffix("/status") }
        #expect(relevant.first?.topic == "\(setup.prefix)/alerts/_gateway/buffer-high", "first: \(relevant.prefix(3).map(\.topic))")
        #expect(Self.alerts(Array(relevant.prefix(1))).first?.event == "raise")
        #expect(await waitUntil(sub, timeout: .seconds(30)) { Self.alerts($0).contains { $0.event == "clear" } }, "not cleared after the drain")
        try await expectValid(Self.alerts(sub.messages).map(\.payload), schema: "alert.schema.json", dir: dir)
    }
}

extension AlertsEndToEndTests {
    /// With `on_full: reject` a full buffer refuses an alert message too: it waits in memory and
    /// is stored (and published) once the drain made room, instead of being dropped.
    @Test func alertRefusedByAFullBufferIsStoredOnceThereIsRoom() async throws {
        let dir = try TempDir()
        let outage = try await Self.startOutage(gateway: "alerts-full", dir: dir) { $0.maxBytes = "64KiB"; $0.onFull = "reject" }
        let (broker, sub, setup) = (outage.broker, outage.sub, outage.setup)
        defer { broker.killNow() }
        defer { sub.stop() }
        let alerts = Self.spo2LowRule(forSeconds: 1)
        // The buffer (64 KiB) is full within a second; the desaturation starts at 4 s of readings.
        try dir.write("agent.yaml", Self.yaml(setup, rate: 100, count: nil, episode: "{after_s: 4, duration_s: 3600, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(30)) { $0.contains("alert messages not stored (buffer full)") },
                "\(agent.output.value)")
        try await broker.restart()
        #expect(await waitUntil(sub, timeout: .seconds(60)) { Self.alerts($0).contains { $0.rule == "spo2-low" && $0.event == "raise" } },
                "the refused alert never arrived: \(agent.output.value.suffix(2000))")
        #expect(agent.output.value.contains("alert messages that were waiting are stored"))
    }
}

extension AlertsEndToEndTests {
    /// sensor-off end to end: the simulator's finger-out reading (every 40th) raises the technical
    /// alert, the next valid reading clears it; with the same id, and without a patient value.
    @Test func fingerOutRaisesAndClearsTheSensorOffAlert() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "alerts-sensor", stateDir: dir.file("state"), brokerURL: broker.url)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/alerts/#", qos: 1)
        defer { sub.stop() }
        let alerts = """
              enabled: true
              rules:
                - name: finger-out
                  type: sensor-off
                  severity: low

            """
        try dir.write("agent.yaml", Self.yaml(setup, rate: 20, count: 60, episode: "{after_s: 3600, duration_s: 1, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(60)))
        #expect(await waitUntil(sub) { Self.alerts($0).count >= 2 })
        let found = Self.alerts(sub.messages)
        #expect(found.map(\.event) == ["raise", "clear"])
        #expect(found.first?.alertID == found.last?.alertID)
        #expect(found.first?.topic == "\(setup.prefix)/alerts/P-ALERT-1/finger-out")
        #expect(found.first?.payload.contains(#""kind":"technical""#) == true)
        #expect(found.first?.readingIDs.count == 1 && found.last?.readingIDs.count == 1)
    }
}
