import Foundation
import IoMTSerialSimulators
import IoMTTestSupport
import Testing

extension AlertsEndToEndTests {
    /// `disconnected` end to end (until now unit-tested only): a Contec oximeter on a
    /// pseudo-terminal behind a stable name, as udev would make it; unplugging it raises the
    /// technical alert once the source has reported it unplugged for `after_s`, and a device
    /// plugged in again behind the same name clears it, with the same alert id.
    @Test func unpluggedSerialDeviceRaisesAndReplugClearsTheDisconnectedAlert() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        try FileManager.default.createDirectory(atPath: dir.file("dev"), withIntermediateDirectories: true)
        let pty = try PtyDevice()
        try pty.link(at: dir.file("dev/oximeter-1"))
        let player = PtyPlayer(ContecV7Simulator(spo2: 96, pulse: 66), on: pty)

        let setup = AgentSetup(gateway: "alerts-unplug", stateDir: dir.file("state"), brokerURL: broker.url)
        let yaml = setup.yaml() + """
            serial:
              - {id: ox-1, profile: contec-cms50-v7, patient: P-UNPLUG-1, port: \(dir.file("dev/oximeter-1")), reconnect_min_ms: 50}
            alerts:
              enabled: true
              rules:
                - name: unplugged
                  type: disconnected
                  after_s: 1

            """
        try dir.write("agent.yaml", yaml)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#", qos: 1)
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }

        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "ox-1" }.count >= 3 },
                "readings did not flow: \(agent.output.value.suffix(2000))")
        #expect(Self.alerts(sub.messages).isEmpty, "nothing to alert about while the device is plugged in")

        player.stop()
        pty.unplug()
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.rule == "unplugged" && $0.event == "raise" } },
                "no disconnected alert after the unplug: \(agent.output.value.suffix(2000))")

        let pty2 = try PtyDevice()
        let player2 = PtyPlayer(ContecV7Simulator(spo2: 97, pulse: 61), on: pty2)
        defer { player2.stop(); pty2.unplug() }
        try pty2.link(at: dir.file("dev/oximeter-1"))
        #expect(await waitUntil(sub) { Self.alerts($0).contains { $0.rule == "unplugged" && $0.event == "clear" } },
                "replugging did not clear the alert: \(agent.output.value.suffix(2000))")
        #expect(await waitUntil(sub) { readings($0).contains { $0.device == "ox-1" && $0.payload.contains(#""value":61"#) } },
                "the replugged device's readings did not flow: \(agent.output.value.suffix(2000))")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        let found = Self.alerts(sub.messages).filter { $0.rule == "unplugged" }
        #expect(found.map(\.event) == ["raise", "clear"], "raised once, cleared once")
        #expect(found.first?.alertID == found.last?.alertID)
        #expect(found.first?.topic == "\(setup.prefix)/alerts/P-UNPLUG-1/unplugged")
        #expect(found.first?.payload.contains(#""kind":"technical""#) == true)
        // The raise carries how long the device had been unplugged (s), no reading and no patient value.
        #expect(found.first?.readingIDs.isEmpty == true)
        #expect(found.first.map { $0.values.count == 1 && $0.values[0] >= 1 } == true, "\(found.first?.payload ?? "")")
    }

    /// `rate` end to end (until now unit-tested only): SpO2 steps from the simulator's normal
    /// value down to 80 % three seconds into the run; a rule for a fall of more than 5 points
    /// within 3 s raises once, clinical, with the fallen value, and clears once the window holds
    /// only the low values (the level is `threshold`'s business, not this rule's); the return to
    /// normal is a rise and raises nothing.
    @Test func suddenSpO2FallRaisesAndClearsTheRateAlertOnce() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "alerts-rate", stateDir: dir.file("state"), brokerURL: broker.url)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/alerts/#", qos: 1)
        defer { sub.stop() }
        let alerts = """
              enabled: true
              rules:
                - name: spo2-falling
                  type: rate
                  code: 150456
                  delta: -5
                  window_s: 3

            """
        try dir.write("agent.yaml", Self.yaml(setup, rate: 5, count: 60, episode: "{after_s: 3, duration_s: 6, spo2: 80}",
                                              alerts: alerts, socket: dir.file("ctl.sock")))
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml"), "--exit-when-drained"])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.waitForExit(timeout: .seconds(60)), "\(agent.output.value.suffix(2000))")
        #expect(await waitUntil(sub) { Self.alerts($0).count >= 2 }, "\(agent.output.value.suffix(2000))")
        let found = Self.alerts(sub.messages)
        #expect(found.map(\.event) == ["raise", "clear"], "one raise at the fall, one clear, nothing at the rise")
        #expect(found.first?.alertID == found.last?.alertID)
        #expect(found.first?.topic == "\(setup.prefix)/alerts/P-ALERT-1/spo2-falling")
        #expect(found.first?.payload.contains(#""kind":"clinical""#) == true)
        #expect(found.first?.values.last == 80, "the raise carries the fallen value: \(found.first?.payload ?? "")")
        #expect(found.first.map { !$0.readingIDs.isEmpty } == true)
        if let raise = found.first, let clear = found.last {
            #expect(clear.at.timeIntervalSince(raise.at) >= 2.5, "cleared once the 3 s window held only the low values")
        }
    }
}
