import Foundation
import IoMTSerialSimulators
import IoMTTestSupport
import Testing

/// Issue 8: no patient id, reading value or secret in a log line at info level or above. The
/// agent runs with every kind of source (a simulator, a serial device on a pty, a Bluetooth
/// wearable through a Bumble controller) and a password-protected broker; the CLI pairs a
/// secure device with a passkey; then the whole log is scanned for what must not be there.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct LogPrivacyTests {
    @Test func theLogCarriesNoPatientIdNoReadingValueAndNoSecret() async throws {
        let secret = "pw-\(UInt64.random(in: 1_000_000...9_999_999))-secret"
        let patients = ["PAT-SIM-4711", "PAT-SER-4712", "PAT-BLE-4713", "PAT-PAIR-4714"]
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["interval_ms": 100]),
            .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02",
                  options: ["io_capability": "display-only", "passkey": 135790, "interval_ms": 200]),
            .init(kind: .garbage, name: "g1", address: "F0:F1:F2:F3:F4:05"),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start(BrokerOptions(users: ["gw": secret], allowAnonymous: false))
        defer { broker.killNow() }
        try dir.write("password", secret + "\n")
        chmod(dir.file("password"), 0o600)
        try FileManager.default.createDirectory(atPath: dir.file("dev"), withIntermediateDirectories: true)
        let pty = try PtyDevice()
        try pty.link(at: dir.file("dev/ox-1"))
        // Distinctive values, so a leak is recognisable: SpO2 93, pulse 117.
        let player = PtyPlayer(ContecV7Simulator(spo2: 93, pulse: 117), on: pty)
        defer { player.stop(); pty.unplug() }

        var setup = AgentSetup(gateway: "privacy", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.extraBroker = ["username: gw", "password_file: \(dir.file("password"))"]
        setup.simulators = [Sim(id: "sim-1", patient: patients[0], rate: 20)]
        let socket = dir.file("ctl.sock")
        try dir.write("agent.yaml", setup.yaml().replacingOccurrences(of: "level: info", with: "level: info") + """
            serial:
              - {id: ox-1, profile: contec-cms50-v7, patient: \(patients[1]), port: \(dir.file("dev/ox-1"))}
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              reconnect_min_ms: 200
              devices:
                - {id: hr-1, address: "F0:F1:F2:F3:F4:01", profile: heart-rate, patient: \(patients[2])}
                - {id: g-1, address: "F0:F1:F2:F3:F4:05", profile: heart-rate, patient: \(patients[2])}
            control:
              socket: \(socket)

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#",
                                                     username: "gw", password: secret)
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(20)) { $0.contains("control socket listening") })
        let wrong = try await ChildProcess.run([agentBinary, "pair", "F0:F1:F2:F3:F4:02", "--patient", patients[3], "--passkey", "111111",
                                                "--config", dir.file("agent.yaml")], timeout: .seconds(60))
        #expect(wrong.status != 0)
        let pair = try await ChildProcess.run([agentBinary, "pair", "F0:F1:F2:F3:F4:02", "--patient", patients[3], "--passkey", "135790",
                                               "--config", dir.file("agent.yaml")], timeout: .seconds(60))
        #expect(pair.status == 0, "\(pair.output)")
        // Every source delivered (so every source had the chance to log).
        #expect(await waitUntil(sub) { m in
            Set(readings(m).map(\.device)).isSuperset(of: ["sim-1", "ox-1", "hr-1", "g-1", "ble-f0f1f2f3f402"])
        }, "not every source delivered: \(Set(readings(sub.messages).map(\.device)))\n\(agent.output.value.suffix(3000))")
        // Let the status refresh and the bad packets of the garbage device be logged.
        try await Task.sleep(for: .seconds(2))
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        let log = agent.output.value
        #expect(log.contains("info") && log.count > 1000, "the log is suspiciously short:\n\(log)")
        #expect(log.contains("ox-1") && log.contains("g-1"), "the log names devices, so it was scanned where patients could leak")
        for p in patients { #expect(!log.contains(p), "patient id \(p) in the log") }
        #expect(!log.contains(secret), "the broker password in the log")
        #expect(!log.contains("135790"), "the passkey in the log")
        // Reading content: no rendered observation, no value of the serial device.
        for marker in ["mdc_code", "\"value\"", "observations", "spo2=93", "117 /min", "\"samples\""] {
            #expect(!log.contains(marker), "reading content (\(marker)) in the log")
        }
        // The CLI's own output may show the patient to the nurse who typed it, but never the secret.
        #expect(!pair.output.contains(secret) && !wrong.output.contains(secret))
        // The readings did carry those patients (the scan above is not vacuous).
        #expect(readings(sub.messages).contains { $0.payload.contains(patients[1]) })
    }
}
