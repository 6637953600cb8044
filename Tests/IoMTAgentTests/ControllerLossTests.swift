import Foundation
import IoMTTestSupport
import Testing

/// The fear "a hub that wedges until someone reboots it": the Bluetooth controller vanishes
/// (its process is killed) while the agent streams; the agent keeps running its other sources,
/// says so in its status, and picks the controller up again when it comes back, without restart.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct ControllerLossTests {
    @Test func aVanishedControllerIsReopenedWhenItComesBackAndOtherSourcesNeverStop() async throws {
        let spec: (UInt16) -> BumbleWorld.Spec = { port in
            .init(ports: port == 0 ? [] : [port], peripherals: [
                .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["interval_ms": 100]),
            ])
        }
        let first = try await BumbleWorld.start(spec: spec(0))
        let port = first.hostPorts[0]
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        var setup = AgentSetup(gateway: "ctl-loss", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.simulators = [Sim(id: "sim-1", rate: 10)]
        try dir.write("agent.yaml", setup.yaml() + """
            bluetooth:
              adapter: tcp:127.0.0.1:\(port)
              devices:
                - {id: hr-1, address: "F0:F1:F2:F3:F4:01", profile: heart-rate, patient: P-1}

            """)
        let prefix = setup.prefix
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "hr-1" }.count >= 5 }, "\(agent.output.value)")

        // The controller dies (kill -9 of the world: its TCP port closes).
        first.kill()
        #expect(await agent.output.wait(timeout: .seconds(10)) { $0.contains("Bluetooth controller lost") || $0.contains("controller unavailable") })
        let simBefore = readings(sub.messages).filter { $0.device == "sim-1" }.count
        #expect(await waitUntil(sub) { readings($0).filter { $0.device == "sim-1" }.count >= simBefore + 10 },
                "the simulator stopped with the controller")
        #expect(await waitUntil(sub) { m in
            m.contains { $0.topic == "\(prefix)/status" && $0.payloadString.contains("controller unavailable") }
        }, "the status does not say the controller is gone")
        #expect(agent.isRunning)

        // It comes back on the same port: the agent reopens it and the wearable streams again.
        let hrBefore = readings(sub.messages).filter { $0.device == "hr-1" }.count
        let second = try await BumbleWorld.start(spec: spec(port))
        defer { second.kill() }
        #expect(await waitUntil(sub, timeout: .seconds(60)) { readings($0).filter { $0.device == "hr-1" }.count >= hrBefore + 5 },
                "no readings after the controller came back: \(agent.output.value.suffix(3000))")
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))
        #expect(expectNoLossAndRecognisableDuplicates(readings(sub.messages), device: "hr-1") >= 10)
    }
}
