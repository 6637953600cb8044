import Foundation
import IoMTTestSupport
import Testing

/// Issue 6 (glucose RACP download) through the whole agent: a Bumble glucose meter, our host inside
/// `iomt-agent run`, the SQLite buffer, a real mosquitto. The download cursor is stored in the
/// buffer with the readings, so it survives `kill -9`.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct GlucoseAgentTests {
    @Test func theDownloadCursorSurvivesKill9SoARestartFetchesOnlyTheNewRecords() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .glucoseMeter, name: "g1", address: "F0:F1:F2:F3:F4:11", options: ["serial": "GL-7"]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        let setup = AgentSetup(gateway: "glucose-e2e", stateDir: dir.file("state"), brokerURL: broker.url)
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(world.hostPorts[0])
              reconnect_min_ms: 200
              devices:
                - {id: gl-1, address: "F0:F1:F2:F3:F4:11", profile: glucose, patient: P-9}

            """)
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        var agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }

        #expect(await waitUntil(sub) { Set(readings($0).filter { $0.device == "gl-1" }.map(\.sequence)).count >= 5 },
                "the stored records did not arrive: \(agent.output.value)")
        // kill -9: the readings and the cursor were committed together before they were published.
        agent.signal(SIGKILL)
        _ = await agent.waitForExit(timeout: .seconds(10))
        // Two measurements taken while the agent is down (the world dropped the link with it).
        _ = try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)
        _ = try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)
        agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        #expect(await waitUntil(sub) { Set(readings($0).filter { $0.device == "gl-1" }.map(\.sequence)).count >= 7 },
                "the new records did not arrive after the restart: \(agent.output.value)")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        // The restarted agent asked only for the records after the stored cursor.
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["g1"]?["racp_requests"]?.array?.compactMap(\.string) == ["0101", "0103010600"],
                "agent: \(agent.output.value)\nworld: \((try? String(contentsOfFile: world.logFile, encoding: .utf8)) ?? "")")
        let seen = readings(sub.messages).filter { $0.device == "gl-1" }
        #expect(expectNoLossAndRecognisableDuplicates(seen, device: "gl-1") == 7)
        // Seven distinct records (by value: 90 + 7i mg/dL), none downloaded twice.
        var values: [Int: Double] = [:]
        for r in seen {
            let o = try #require(try JSONSerialization.jsonObject(with: Data(r.payload.utf8)) as? [String: Any])
            let obs = try #require(o["observations"] as? [[String: Any]])
            #expect(obs.first?["unit"] as? String == "mg/dL")
            #expect((o["device"] as? [String: Any])?["serial_number"] as? String == "GL-7")
            values[r.sequence] = obs.first?["value"] as? Double
        }
        let bySequence: [Double?] = values.keys.sorted().map { values[$0] }
        let expected: [Double?] = (0..<7).map { i -> Double? in Double(90 + 7 * i) }
        #expect(bySequence == expected)
        try await expectValid(seen.map(\.payload), schema: "reading.schema.json", dir: dir)
    }
}
