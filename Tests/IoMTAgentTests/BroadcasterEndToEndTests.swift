import Foundation
import IoMTTestSupport
import Testing

/// Issue 6 end to end, broadcast-only sensors: a Bumble scale that never connects advertises its
/// weighings as Service Data 0x181D; the real agent, with the shipped example profile
/// (deploy/profiles/weight-scale-advert.yaml), publishes each stabilized weighing exactly once to a
/// real mosquitto, with the profile's MDC code and unit. A neighbour's scale carrying the same
/// service data at another address, and the payloads the profile's `require` refuses (not yet
/// stable, load removed), are not published.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct BroadcasterEndToEndTests {
    static let profile = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("deploy/profiles/weight-scale-advert.yaml").path

    @Test func eachStableWeighingIsPublishedOnceAndTheNeighbourAndUnstablePayloadsAreNot() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            // Octet 0 flags (0x20 stabilized, 0x01 pounds, 0x80 load removed), octets 1-2 weight.
            .init(kind: .broadcaster, name: "s1", address: "F0:F1:F2:F3:F4:10",
                  options: ["service_data": "181D", "payloads": [
                    "001027",  // 10000: not stabilized yet → nothing
                    "20606D",  // 28000 / 200 = 140 kg
                    "21B837",  // 14264 / 100 = 142.64 lb
                    "A0B837",  // load removed → nothing
                  ]]),
            // The neighbour's scale: same service data, another address, a weight of its own (50 kg).
            .init(kind: .broadcaster, name: "s2", address: "F0:F1:F2:F3:F4:20",
                  options: ["service_data": "181D", "payloads": ["201027"]]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "broadcast", stateDir: dir.file("state"), brokerURL: broker.url)
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              broadcasters:
                - id: scale-1
                  address: "F0:F1:F2:F3:F4:10"
                  patient: P-1
                  profile: \(Self.profile)
                  repeat_window_s: 3600

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        let statusTopic = "\(setup.prefix)/status"
        @Sendable func detail(_ m: ReceivedMessage) -> String? {
            guard m.topic == statusTopic, let o = json(m), let devices = o["devices"] as? [[String: Any]] else { return nil }
            return devices.first { $0["id"] as? String == "scale-1" }?["detail"] as? String
        }
        @Sendable func statuses(_ ms: [ReceivedMessage]) -> [String] { ms.compactMap(detail) }
        @Sendable func weights(_ ms: [ReceivedMessage]) -> [SeenReading] { readings(ms) }

        // The agent has seen the unstable payload (the scale's status says so) and published nothing.
        #expect(await waitUntil(sub) { m in
            statuses(m).contains { $0.hasPrefix("last seen 2") && $0.contains("last published never") }
        }, "\(statuses(sub.messages).suffix(3))\n\(agent.output.value.suffix(3000))")
        #expect(readings(sub.messages).isEmpty)

        _ = try await world.command(#"{"cmd":"next-payload","peripheral":"s1"}"#)
        #expect(await waitUntil(sub) { Set(readings($0).map(\.id)).count >= 1 }, "\(agent.output.value.suffix(3000))")
        _ = try await world.command(#"{"cmd":"next-payload","peripheral":"s1"}"#)
        #expect(await waitUntil(sub) { Set(readings($0).map(\.id)).count >= 2 }, "\(agent.output.value.suffix(3000))")
        _ = try await world.command(#"{"cmd":"next-payload","peripheral":"s1"}"#)
        // Three more status rounds (1 s apart) with the load-removed payload on the air.
        let before = statuses(sub.messages).count
        #expect(await waitUntil(sub) { statuses($0).count >= before + 3 })
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        let seen = readings(sub.messages)
        #expect(Set(seen.map(\.device)) == ["scale-1"], "the neighbour's scale was attributed: \(Set(seen.map(\.device)))")
        // Exactly one reading per distinct stable payload (a QoS 1 redelivery repeats the same id).
        let distinct = Dictionary(seen.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a }).values.sorted { $0.sequence < $1.sequence }
        #expect(distinct.count == 2, "\(distinct.map(\.payload))")
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "scale-1") == 2)
        func body(_ r: SeenReading) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
        }
        func observations(_ r: SeenReading) throws -> [[String: Any]] { try #require(try body(r)["observations"] as? [[String: Any]]) }
        guard distinct.count == 2 else { return }
        let kg = try observations(distinct[0]), lb = try observations(distinct[1])
        #expect(kg.count == 1 && lb.count == 1)
        #expect(kg.first?["mdc_code"] as? Int == 188736 && kg.first?["value"] as? Double == 140 && kg.first?["unit"] as? String == "kg")
        #expect(lb.first?["mdc_code"] as? Int == 188736 && lb.first?["value"] as? Double == 142.64
                && lb.first?["unit"] as? String == "[lb_av]")
        let first = try body(distinct[0])
        #expect((first["device"] as? [String: Any])?["profile"] as? String == "weight-scale-advert")
        #expect((first["device"] as? [String: Any])?["transport"] as? String == "ble")
        #expect(first["time_quality"] as? String == "gateway-receipt")
        try await expectValid(seen.map(\.payload), schema: "reading.schema.json", dir: dir)
        // The status ends with both weighings published and nothing undecodable.
        let last = try #require(statuses(sub.messages).last)
        #expect(last.contains("last published 2") && !last.contains("undecodable"), "\(last)")
    }
}
