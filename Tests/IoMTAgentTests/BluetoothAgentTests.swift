import Foundation
import IoMTTestSupport
import Testing

/// Issue 5 through the whole agent: Bumble virtual peripherals, our Bluetooth host inside the real
/// `iomt-agent run` (child process, H4 over TCP to a Bumble controller), a real mosquitto.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BluetoothAgentTests {
    @Test func heartRateNotificationsReachTheBrokerAndAnUnpairedSecureDeviceIsReported() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["serial": "HR-7", "interval_ms": 100]),
            .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02"),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "ble-e2e", stateDir: dir.file("state"), brokerURL: broker.url)
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              snoop: \(dir.file("hci.btsnoop"))
              reconnect_min_ms: 200
              devices:
                - {id: hr-1, address: "F0:F1:F2:F3:F4:01", profile: heart-rate, patient: P-1}
                - {id: t-1, address: "F0:F1:F2:F3:F4:02", profile: thermometer, patient: P-2}

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        var agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }

        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "hr-1" }.count >= 10 },
                "no heart-rate readings: \(agent.output.value)")
        // The status shows the secure thermometer waiting for pairing, not silently absent.
        #expect(await waitUntil(sub) { m in
            m.contains { $0.topic == "\(setup.prefix)/status" && $0.payloadString.contains("needs pairing") }
        }, "status did not report the unpaired device: \(agent.output.value)")
        // kill -9 and restart: the per-device sequence continues, nothing accepted is lost.
        agent.signal(SIGKILL)
        _ = await agent.waitForExit(timeout: .seconds(10))
        let before = readings(sub.messages).filter { $0.device == "hr-1" }.map(\.sequence).max() ?? 0
        agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "hr-1" && $0.sequence > before + 5 }.count >= 5 },
                "no readings after the restart: \(agent.output.value)")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        let seen = readings(sub.messages)
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "hr-1") > 10)
        #expect(!seen.contains { $0.device == "t-1" })
        for r in seen.prefix(20) {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            let device = try #require(o["device"] as? [String: Any])
            #expect(device["transport"] as? String == "ble")
            #expect(device["profile"] as? String == "heart-rate")
            #expect(device["serial_number"] as? String == "HR-7")
            // Device Information travels as the device's identity (issue 6).
            let info = try #require(device["info"] as? [String: String])
            #expect(info["manufacturer"] == "IoMT Test Devices" && info["model"] == "heart-rate")
            #expect(o["patient_id"] as? String == "P-1")
            let obs = try #require(o["observations"] as? [[String: Any]])
            let hr = obs.first { $0["mdc_code"] as? Int == 147842 }?["value"] as? Double
            #expect(hr.map { (60...99).contains($0) } == true)
        }
        try await expectValid(seen.map(\.payload), schema: "reading.schema.json", dir: dir)
        // The btsnoop file was written, owner-only.
        var st = stat()
        #expect(stat(dir.file("hci.btsnoop"), &st) == 0 && st.st_size > 1000 && st.st_mode & 0o777 == 0o600)
        // ...and Wireshark reads it: tshark (installed by scripts/setup.sh) decodes HCI and ATT.
        let shark = try await ChildProcess.run(["tshark", "-r", dir.file("hci.btsnoop"), "-c", "400"], timeout: .seconds(60))
        #expect(shark.status == 0, "\(shark.output.prefix(2000))")
        #expect(shark.output.contains("HCI_CMD") && shark.output.contains("HCI_EVT"), "\(shark.output.prefix(2000))")
        #expect(shark.output.contains("ATT"), "\(shark.output.prefix(2000))")
    }

    /// Issue 9 through a Bumble peripheral: the agent with one Bluetooth device (`device`, a YAML
    /// flow mapping) and one alert rule (`rule`, YAML lines under `rules:`), until an alert arrives
    /// on `<prefix>/alerts/<patient>/<ruleName>` (at most 40 s). Returns its topic and its payload
    /// as JSON; the agent is stopped with SIGTERM. The harness sets `status_interval_s: 1`, so the
    /// device state the host reads on connecting is looked at every second.
    static func firstAlert(_ peripheral: BumbleWorld.Peripheral, gateway: String, device: String, rule: String,
                           ruleName: String) async throws -> (topic: String, prefix: String, doc: [String: Any]) {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [peripheral]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: gateway, stateDir: dir.file("state"), brokerURL: broker.url)
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              reconnect_min_ms: 200
              devices:
                - \(device)
            alerts:
              enabled: true
              rules:
            \(rule)

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/alerts/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await sub.waitUntil(timeout: .seconds(40)) { $0.contains { $0.topic.hasSuffix("/\(ruleName)") } },
                "no \(ruleName) alert: \(agent.output.value.suffix(3000))")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))
        let alert = try #require(sub.messages.first { $0.topic.hasSuffix("/\(ruleName)") })
        let doc = try #require(try JSONSerialization.jsonObject(with: Data(alert.payloadString.utf8)) as? [String: Any])
        return (alert.topic, setup.prefix, doc)
    }

    /// Issue 9: the battery level the host reads from the Battery Service on connection raises the
    /// battery-low alert (no Bluetooth profile carries it inside its readings).
    @Test func aLowBatteryReadOverBluetoothRaisesTheBatteryLowAlert() async throws {
        let alert = try await Self.firstAlert(
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:05", options: ["battery": 9, "interval_ms": 200]),
            gateway: "ble-battery", device: #"{id: hr-5, address: "F0:F1:F2:F3:F4:05", profile: heart-rate, patient: P-5}"#,
            rule: "    - {name: battery-low, type: battery-low, percent: 15}", ruleName: "battery-low")
        #expect(alert.doc["event"] as? String == "raise", "\(alert.doc)")
        #expect((alert.doc["device"] as? [String: Any])?["id"] as? String == "hr-5", "\(alert.doc)")
        #expect(alert.topic == "\(alert.prefix)/alerts/P-5/battery-low", "\(alert.topic)")
    }

    /// Issue 9: a device clock that the gateway cannot set (Current Time Service, read-only, one
    /// hour behind) raises the clock-drift alert. Its readings are corrected by the measured
    /// offset (`device-corrected`), so the offset itself, not the readings, must feed the rule.
    @Test func aDeviceClockAnHourOffThatCannotBeSetRaisesTheClockDriftAlert() async throws {
        let alert = try await Self.firstAlert(
            .init(kind: .sigProfile, name: "th7", address: "F0:F1:F2:F3:F4:17",
                  options: ["service": "1809", "characteristic": "2A1C", "indicate": true, "interval_ms": 200,
                            "payloads": ["06B00E00FEDC070C050B321B04"],
                            "current_time_offset_s": -3600, "current_time_writable": false]),
            gateway: "ble-clock", device: #"{id: th-7, address: "F0:F1:F2:F3:F4:17", profile: thermometer, patient: P-7}"#,
            rule: "    - {name: clock, type: clock-drift, max_offset_s: 60}", ruleName: "clock")
        #expect(alert.topic == "\(alert.prefix)/alerts/P-7/clock", "\(alert.topic)")
        #expect(alert.doc["event"] as? String == "raise", "\(alert.doc)")
        #expect(alert.doc["kind"] as? String == "technical", "\(alert.doc)")
        // device − gateway, in seconds: about an hour behind.
        let offset = try #require((alert.doc["values"] as? [Double])?.first)
        #expect(abs(offset + 3600) < 5, "\(alert.doc)")
    }
}
