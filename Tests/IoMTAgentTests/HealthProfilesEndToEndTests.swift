import Foundation
import IoMTTestSupport
import Testing

/// The real agent with `bluetooth:` on the world's first host port and `devices` (YAML flow
/// entries), against a fresh mosquitto, until `done` holds on what the broker received (or the
/// wait gives up); then a graceful stop. `output` lines go under `output:`.
struct BluetoothAgentRun {
    let messages: [ReceivedMessage]
    let log: String
    let satisfied: Bool
    let dir: TempDir

    static func run(_ world: BumbleWorld, gateway: String, devices: [String], output: [String] = [],
                    until done: @escaping @Sendable ([ReceivedMessage]) -> Bool) async throws -> BluetoothAgentRun {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: gateway, stateDir: dir.file("state"), brokerURL: broker.url)
        let outputLines = output.map { "  \($0)\n" }.joined()
        try dir.write("agent.yaml", setup.yaml().replacingOccurrences(of: "  format: json\n", with: "  format: json\n" + outputLines)
                      + "bluetooth:\n  adapter: tcp:127.0.0.1:\(world.hostPorts[0])\n  devices:\n"
                      + devices.map { "    - \($0)\n" }.joined())
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        let satisfied = await waitUntil(sub, done)
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))
        return BluetoothAgentRun(messages: sub.messages, log: agent.output.value, satisfied: satisfied, dir: dir)
    }
}

/// Issue 6 end to end: Bumble peripherals replaying the reference's golden bytes for blood
/// pressure (indications), pulse oximetry (notifications) and a weight scale (indications),
/// through our Bluetooth host and the real agent to a real mosquitto: what reaches the broker
/// equals what the peripheral sent, with the right MDC codes, UCUM units and LOINC codes.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct HealthProfilesEndToEndTests {
    @Test func bloodPressurePulseOximeterAndWeightScaleReachTheBrokerAsSent() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            // reference §4.1: 138/88 mmHg, MAP 120, pulse 60, user 1, status bits (no time: year 0).
            .init(kind: .sigProfile, name: "bp1", address: "F0:F1:F2:F3:F4:11",
                  options: ["service": "1810", "characteristic": "2A35", "indicate": true, "interval_ms": 150,
                            "payloads": ["1E8A00580078000000041114293B3C00012700"]]),
            // reference §5.4: SpO2 100 %, pulse 90 /min.
            .init(kind: .sigProfile, name: "ox1", address: "F0:F1:F2:F3:F4:12",
                  options: ["service": "1822", "characteristic": "2A5F", "interval_ms": 100, "payloads": ["00E8F384F3"]]),
            // reference §4.1: 18.9/11.0 kPa, MAP 15.9, pulse 60: stays kPa unless output.units asks.
            .init(kind: .sigProfile, name: "bp2", address: "F0:F1:F2:F3:F4:14",
                  options: ["service": "1810", "characteristic": "2A35", "indicate": true, "interval_ms": 150,
                            "payloads": ["15BDF00B009FF03C001200"]]),
            // reference §6: 70.5 kg.
            .init(kind: .sigProfile, name: "ws1", address: "F0:F1:F2:F3:F4:13",
                  options: ["service": "181D", "characteristic": "2A9D", "indicate": true, "interval_ms": 150,
                            "payloads": ["0C143701E600D606"]]),
        ]))
        defer { world.kill() }
        let run = try await BluetoothAgentRun.run(world, gateway: "profiles", devices: [
            #"{id: bp-1, address: "F0:F1:F2:F3:F4:11", profile: blood-pressure, patient: P-1}"#,
            #"{id: ox-1, address: "F0:F1:F2:F3:F4:12", profile: pulse-oximeter, patient: P-1}"#,
            #"{id: ws-1, address: "F0:F1:F2:F3:F4:13", profile: weight-scale, patient: P-1}"#,
            #"{id: bp-2, address: "F0:F1:F2:F3:F4:14", profile: blood-pressure, patient: P-1}"#,
        ]) { m in
            let r = readings(m)
            return ["bp-1", "ox-1", "ws-1", "bp-2"].allSatisfy { d in r.filter { $0.device == d }.count >= 3 }
        }
        #expect(run.satisfied, "\(Set(readings(run.messages).map(\.device)))\n\(run.log.suffix(3000))")
        let dir = run.dir

        func observations(_ device: String) throws -> [[String: Any]] {
            let r = try #require(readings(run.messages).first { $0.device == device })
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            return try #require(o["observations"] as? [[String: Any]])
        }
        func find(_ obs: [[String: Any]], _ mdc: Int) -> [String: Any]? { obs.first { $0["mdc_code"] as? Int == mdc } }
        // The cuff's measurement status bits travel as device_status, never as numbers.
        let bpReading = try #require(readings(run.messages).first { $0.device == "bp-1" })
        let bpDoc = try #require(try JSONSerialization.jsonObject(with: Data(bpReading.payload.utf8)) as? [String: Any])
        #expect(Set(bpDoc["device_status"] as? [String] ?? []) ==
                ["body-movement", "cuff-too-loose", "irregular-pulse", "improper-body-position", "device-time-unknown"])
        let bp = try observations("bp-1")
        #expect(find(bp, 150021)?["value"] as? Double == 138 && find(bp, 150021)?["unit"] as? String == "mm[Hg]")
        #expect(find(bp, 150022)?["value"] as? Double == 88)
        #expect(find(bp, 150023)?["value"] as? Double == 120)
        #expect(find(bp, 149546)?["value"] as? Double == 60 && find(bp, 149546)?["unit"] as? String == "/min")
        let ox = try observations("ox-1")
        #expect(find(ox, 150456)?["value"] as? Double == 100 && find(ox, 150456)?["loinc"] as? String == "2708-6")
        #expect(find(ox, 149530)?["value"] as? Double == 90 && find(ox, 149530)?["loinc"] as? String == "8867-4")
        let ws = try observations("ws-1")
        #expect(find(ws, 188736)?["value"] as? Double == 70.5 && find(ws, 188736)?["unit"] as? String == "kg")
        #expect(find(ws, 188736)?["loinc"] as? String == "29463-7")
        // A kPa cuff stays in kPa: nothing is converted unless output.units asks.
        let bp2 = try observations("bp-2")
        #expect(find(bp2, 150021)?["value"] as? Double == 18.9 && find(bp2, 150021)?["unit"] as? String == "kPa")
        // Every reading validates against the schema; no duplicates, no holes.
        let seen = readings(run.messages)
        try await expectValid(seen.map(\.payload), schema: "reading.schema.json", dir: dir)
        for d in ["bp-1", "ox-1", "ws-1", "bp-2"] { #expect(expectNoLossAndRecognisableDuplicates(seen, device: d) >= 3) }
    }

    @Test func aKilopascalCuffIsPublishedInMillimetresOfMercuryOnlyWhenConfigured() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .sigProfile, name: "bp2", address: "F0:F1:F2:F3:F4:14",
                  options: ["service": "1810", "characteristic": "2A35", "indicate": true, "interval_ms": 150,
                            "payloads": ["15BDF00B009FF03C001200"]]),
        ]))
        defer { world.kill() }
        let run = try await BluetoothAgentRun.run(world, gateway: "units", devices: [
            #"{id: bp-2, address: "F0:F1:F2:F3:F4:14", profile: blood-pressure, patient: P-1}"#,
        ], output: [#"units: ["mm[Hg]", Cel]"#]) { readings($0).count >= 2 }
        #expect(run.satisfied, "\(run.log.suffix(3000))")
        let r = try #require(readings(run.messages).first)
        let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
        let obs = try #require(o["observations"] as? [[String: Any]])
        let sys = try #require(obs.first { $0["mdc_code"] as? Int == 150021 })
        #expect(sys["unit"] as? String == "mm[Hg]")
        let v = try #require(sys["value"] as? Double)
        #expect(abs(v - 18.9 / 0.133322387415) < 0.06, "\(v)")
        // The pulse rate is not a pressure: untouched.
        #expect(obs.first { $0["mdc_code"] as? Int == 149546 }?["unit"] as? String == "/min")
    }

    @Test func genericHealthSensorSegmentsAreReassembledIntoOneReading() async throws {
        // reference §9.5: ST's live SpO2 bundle (SpO2 98 %, pulse 98 /min), sent in two segments,
        // then a stray continuation segment (no first segment before it): dropped on its own.
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .sigProfile, name: "ghs1", address: "F0:F1:F2:F3:F4:17",
                  options: ["service": "1840", "characteristic": "2B8B", "interval_ms": 80,
                            "payloads": ["01FF2F00420022729D2B2900000600013C4C020002", "06010C000100B84B0200200262000000010C0001001A480200A00A62000000", "06010C000100B84B0200200262000000010C0001001A480200A00A62000000"]]),
        ]))
        defer { world.kill() }
        let run = try await BluetoothAgentRun.run(world, gateway: "ghs", devices: [
            #"{id: ghs-1, address: "F0:F1:F2:F3:F4:17", profile: generic-health-sensor, patient: P-1}"#,
        ]) { readings($0).count >= 3 }
        #expect(run.satisfied, "\(run.log.suffix(3000))")
        for r in readings(run.messages) {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            let obs = try #require(o["observations"] as? [[String: Any]])
            #expect(obs.first { $0["mdc_code"] as? Int == 150456 }?["value"] as? Double == 98)
            #expect(obs.first { $0["mdc_code"] as? Int == 149530 }?["value"] as? Double == 98)
            #expect(o["time_quality"] as? String == "device-unsynchronized" || o["time_quality"] as? String == "device-corrected"
                    || o["time_quality"] as? String == "device-synchronized", "\(o)")
        }
        #expect(run.log.contains("continuation without a first segment"))
    }

    @Test func cgmRecordsArriveOneReadingEachAndACorruptedCRCIsDropped() async throws {
        // reference §8: two records in one notification (120 and 130 mg/dL), a full record whose
        // E2E-CRC matches (sensor malfunction: no number), and that record with one bit flipped.
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .sigProfile, name: "cgm1", address: "F0:F1:F2:F3:F4:15",
                  options: ["service": "181F", "characteristic": "2AA7", "interval_ms": 100,
                            "payloads": ["06000C10060006000D100B00", "0FE3D2E4050002 14FF02F0E5F38E3F".replacingOccurrences(of: " ", with: ""),
                                         "0FE3D2E4050002 14FF02F0E5F38E3E".replacingOccurrences(of: " ", with: "")]]),
        ]))
        defer { world.kill() }
        let run = try await BluetoothAgentRun.run(world, gateway: "cgm", devices: [
            #"{id: cgm-1, address: "F0:F1:F2:F3:F4:15", profile: cgm, patient: P-1}"#,
        ]) { readings($0).count >= 9 }
        #expect(run.satisfied, "\(run.log.suffix(3000))")
        var values: [Double?] = []
        for r in readings(run.messages) {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            let obs = try #require(o["observations"] as? [[String: Any]])
            let g = try #require(obs.first { $0["mdc_code"] as? Int == 160212 })
            #expect(g["unit"] as? String == "mg/dL")
            values.append(g["value"] as? Double)
            if g["value"] as? Double == nil { #expect(g["status"] as? String != nil) }
        }
        #expect(values.contains(120) && values.contains(130) && values.contains(nil))
        #expect(values.allSatisfy { $0 == nil || $0 == 120 || $0 == 130 }, "\(values)")
        // Per cycle of three notifications: two records, one malfunction record, one dropped.
        let cycles = Double(values.count) / 3
        #expect(values.filter { $0 == nil }.count <= Int(cycles.rounded(.up)))
        #expect(run.log.contains("e2e-crc"), "the dropped record is logged")
    }
}

/// Issue 6: the device clock (Current Time Service). Read and corrected when it cannot be set;
/// set from the gateway when it may be; each reading's time quality says which.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct DeviceClockEndToEndTests {
    func run(writable: Bool, dateTime: Bool = false) async throws -> [String: Any] {
        // A thermometer stamping 2012-12-05 11:50:27 (reference §3.1 golden bytes), its clock one
        // hour behind the gateway's.
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .sigProfile, name: "th1", address: "F0:F1:F2:F3:F4:16",
                  options: ["service": "1809", "characteristic": "2A1C", "indicate": true, "interval_ms": 150,
                            "payloads": ["06B00E00FEDC070C050B321B04"],
                            dateTime ? "date_time_offset_s" : "current_time_offset_s": -3600,
                            dateTime ? "date_time_writable" : "current_time_writable": .bool(writable)]),
        ]))
        defer { world.kill() }
        let run = try await BluetoothAgentRun.run(world, gateway: "clock", devices: [
            #"{id: th-1, address: "F0:F1:F2:F3:F4:16", profile: thermometer, patient: P-1}"#,
        ]) { readings($0).count >= 2 }
        #expect(run.satisfied, "\(run.log.suffix(3000))")
        let r = try #require(readings(run.messages).first)
        return try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
    }

    @Test func aClockThatCannotBeSetIsCorrectedByTheMeasuredOffset() async throws {
        let doc = try await run(writable: false)
        #expect(doc["time_quality"] as? String == "device-corrected")
        // 11:50:27 on a clock one hour behind: 12:50:27 UTC (within the second the test took).
        let measured = try #require(doc["measured_at"] as? String)
        // The device clock has whole seconds: the correction is exact to about a second.
        #expect(measured.hasPrefix("2012-12-05T12:50:2") || measured.hasPrefix("2012-12-05T12:50:3"), "\(measured)")
    }

    @Test func withoutCurrentTimeServiceTheDateTimeCharacteristicIsUsed() async throws {
        let corrected = try await run(writable: false, dateTime: true)
        #expect(corrected["time_quality"] as? String == "device-corrected")
        let set = try await run(writable: true, dateTime: true)
        #expect(set["time_quality"] as? String == "device-synchronized")
    }

    @Test func aWritableClockIsSetFromTheGateway() async throws {
        let doc = try await run(writable: true)
        #expect(doc["time_quality"] as? String == "device-synchronized")
        #expect((doc["measured_at"] as? String)?.hasPrefix("2012-12-05T11:50:27") == true, "\(doc)")
    }
}
