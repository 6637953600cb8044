import Foundation
import IoMTRegistry
import IoMTTestSupport
import Testing

/// Issues 5 and 7 together: the CLI against a real daemon that owns a (Bumble) controller. A nurse
/// scans, pairs a secure thermometer with its passkey, sees the first reading confirmed, and
/// discharges the patient (the bond is deleted); each step is audited on the broker.
@Suite(.serialized, .timeLimit(.minutes(3)))
struct BluetoothCLITests {
    @Test func scanPairWithPasskeyFirstReadingDevicesAndDischargeFromTheCLI() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01"),
            .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02",
                  options: ["io_capability": "display-only", "passkey": 246810, "serial": "TH-42", "interval_ms": 200]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "ble-cli", stateDir: dir.file("state"), brokerURL: broker.url)
        let socket = dir.file("ctl.sock")
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              reconnect_min_ms: 200
            control:
              socket: \(socket)
              group: iomt

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await agent.output.wait(timeout: .seconds(20)) { $0.contains("control socket listening") })
        func cli(_ args: [String]) async throws -> (status: Int32, output: String) {
            try await ChildProcess.run([agentBinary] + args + ["--config", dir.file("agent.yaml")], timeout: .seconds(90))
        }

        let scan = try await cli(["scan", "--seconds", "2", "--json"])
        #expect(scan.status == 0, "\(scan.output)")
        #expect(scan.output.contains("F0:F1:F2:F3:F4:02") && scan.output.contains("thermometer"), "\(scan.output)")
        #expect(scan.output.contains("heart-rate"), "\(scan.output)")

        // A wrong passkey: refused with the reason, nothing bound.
        let wrong = try await cli(["pair", "F0:F1:F2:F3:F4:02", "--patient", "P-9", "--passkey", "111111"])
        #expect(wrong.status != 0)
        #expect(wrong.output.contains("confirm value failed"), "\(wrong.output)")

        let pair = try await cli(["pair", "F0:F1:F2:F3:F4:02", "--patient", "P-9", "--passkey", "246810", "--json"])
        #expect(pair.status == 0, "\(pair.output)\n\(agent.output.value.suffix(3000))")
        let paired = try JSONValue.parse(pair.output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: "\n").last.map(String.init) ?? "")
        #expect(paired["id"]?.stringValue == "ble-f0f1f2f3f402")
        #expect(paired["patient_id"]?.stringValue == "P-9" || paired["patient"]?.stringValue == "P-9", "\(pair.output)")
        #expect(paired["serial_number"]?.stringValue == "TH-42", "\(pair.output)")
        #expect(paired["first_reading_at"]?.stringValue != nil, "the first reading was not confirmed: \(pair.output)")
        let bondFile = dir.file("state/bluetooth/bonds/F0F1F2F3F402.bond")
        #expect(FileManager.default.fileExists(atPath: bondFile))

        // Temperature readings for the patient reach the broker.
        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "ble-f0f1f2f3f402" }.count >= 3 },
                "no readings after pairing: \(agent.output.value.suffix(3000))")
        let r = try #require(readings(sub.messages).first { $0.device == "ble-f0f1f2f3f402" })
        #expect(r.payload.contains("\"patient_id\":\"P-9\""))
        #expect(r.payload.contains("150364"))

        let devices = try await cli(["devices", "--json"])
        #expect(devices.output.contains("ble-f0f1f2f3f402") && devices.output.contains("P-9"), "\(devices.output)")

        let discharge = try await cli(["discharge", "ble-f0f1f2f3f402"])
        #expect(discharge.status == 0, "\(discharge.output)")
        #expect(!FileManager.default.fileExists(atPath: bondFile), "the bond survived the discharge")
        #expect(await waitUntil(sub) { m in
            let a = m.filter { $0.topic == "\(setup.prefix)/audit" }.map(\.payloadString)
            return a.contains { $0.contains("\"pair\"") && $0.contains("ble-f0f1f2f3f402") && $0.contains("\"outcome\":\"ok\"") }
                && a.contains { $0.contains("\"discharge\"") && $0.contains("ble-f0f1f2f3f402") }
                && a.contains { $0.contains("\"pair\"") && $0.contains("failed") }
        }, "audit trail incomplete: \(sub.messages.filter { $0.topic.hasSuffix("/audit") }.map(\.payloadString))")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))
    }
}
