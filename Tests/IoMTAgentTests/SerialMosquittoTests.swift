import Foundation
import IoMTSerialSimulators
import IoMTTestSupport
import Testing

/// Issue 4 through the whole agent: simulated serial devices on pseudo-terminals, the real
/// `iomt-agent run` as a child process, a real mosquitto; what reaches the broker is compared
/// with what the simulators sent, across an unplug and replug.
///
/// Disabled until `Agent.makeSources()` also runs `makeSerialSources(config:clock:logger:)`
/// (IoMTAgent/Agent.swift belongs to another branch). It was run and passed with that one-line
/// change applied locally: `config.simulators.map { ... } + makeSerialSources(config: config, clock: clock, logger: logger)`.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct SerialMosquittoTests {
    @Test
    func serialDevicesReachTheBrokerAcrossUnplugAndReplug() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        try FileManager.default.createDirectory(atPath: dir.file("dev"), withIntermediateDirectories: true)
        let contec = try PtyDevice()
        try contec.link(at: dir.file("dev/oximeter-1"))
        let nonin = try PtyDevice()
        try nonin.link(at: dir.file("dev/oximeter-2"))
        let p1 = PtyPlayer(ContecV7Simulator(spo2: 96, pulse: 66), on: contec)
        let p2 = PtyPlayer(NoninDF2Simulator(hr: 58, spo2: 99, faults: Faults(startupNoise: [0x01, 0x80, 0xFF], corruptEvery: 4)), on: nonin)

        let setup = AgentSetup(gateway: "serial-e2e", stateDir: dir.file("state"), brokerURL: broker.url)
        let yaml = setup.yaml() + """
            serial:
              - {id: ox-1, profile: contec-cms50-v7, patient: P-1, port: \(dir.file("dev/oximeter-1"))}
              - {id: ox-2, profile: nonin-df2, patient: P-2, port: \(dir.file("dev/oximeter-2")), reconnect_min_ms: 50}

            """
        try dir.write("agent.yaml", yaml)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }

        #expect(await waitUntil(sub) { m in Set(readings(m).map(\.device)) == ["ox-1", "ox-2"] && readings(m).count >= 6 },
                "readings did not flow: \(agent.output.value)")
        // Unplug the Nonin, then plug a different one in behind the same name.
        p2.stop()
        nonin.unplug()
        try await Task.sleep(for: .seconds(1))
        let nonin2 = try PtyDevice()
        let p3 = PtyPlayer(NoninDF2Simulator(hr: 61, spo2: 97), on: nonin2)
        try nonin2.link(at: dir.file("dev/oximeter-2"))
        #expect(await waitUntil(sub) { m in readings(m).contains { r in r.device == "ox-2" && r.payload.contains("\"value\":61") } },
                "the replugged device was not picked up: \(agent.output.value)")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))
        p1.stop(); p3.stop()
        contec.unplug(); nonin2.unplug()

        let seen = readings(sub.messages)
        for r in seen {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            let obs = try #require(o["observations"] as? [[String: Any]])
            let spo2 = obs.first { $0["mdc_code"] as? Int == 150456 }?["value"] as? Double
            let pr = obs.first { $0["mdc_code"] as? Int == 149530 }?["value"] as? Double
            switch r.device {
            case "ox-1": #expect(spo2 == 96 && pr == 66)
            default: #expect((spo2 == 99 && pr == 58) || (spo2 == 97 && pr == 61), "only values a simulator sent")
            }
        }
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "ox-1") > 0)
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "ox-2") > 0)
        #expect(agent.output.value.contains("serial device disconnected"))
    }
}
