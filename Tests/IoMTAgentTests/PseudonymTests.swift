import Foundation
@testable import IoMTAgent
import IoMTConfig
import IoMTTestSupport
import Testing

/// Issue 8: keyed pseudonyms instead of patient ids on the wire.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct PseudonymTests {
    @Test func pseudonymsAreKeyedDeterministicAndShaped() throws {
        let dir = try TempDir()
        try dir.write("k1", "0123456789abcdef0123456789abcdef\n")
        try dir.write("k2", "fedcba9876543210fedcba9876543210\n")
        chmod(dir.file("k1"), 0o600)
        chmod(dir.file("k2"), 0o600)
        let a = try PatientReference(keyFile: dir.file("k1")), b = try PatientReference(keyFile: dir.file("k2"))
        #expect(a("P-1") == a("P-1"))
        #expect(a("P-1") != a("P-2"))
        #expect(a("P-1") != b("P-1"), "another key, another pseudonym")
        #expect(a("P-1").hasPrefix("psn-") && a("P-1").count == 4 + 32)
        #expect(!a("P-1").contains("P-1"))
        #expect(PatientReference.identity("P-1") == "P-1")
        // RFC 4231-style check that it is HMAC-SHA256 of the id under the file's bytes.
        try dir.write("k3", "Jefe-but-longer-than-32-bytes-key!!")
        chmod(dir.file("k3"), 0o600)
        #expect(try PatientReference(keyFile: dir.file("k3"))("x").count == 36)
    }

    @Test func aLooseOrShortKeyFileIsRefusedWithTheFix() throws {
        let dir = try TempDir()
        try dir.write("loose", "0123456789abcdef0123456789abcdef")
        chmod(dir.file("loose"), 0o644)
        #expect(throws: AgentError.self) { try PatientReference(keyFile: dir.file("loose")) }
        do { _ = try PatientReference(keyFile: dir.file("loose")) } catch { #expect(error.description.contains("chmod 600")) }
        try dir.write("short", "tooshort")
        chmod(dir.file("short"), 0o600)
        do {
            _ = try PatientReference(keyFile: dir.file("short"))
            Issue.record("a short key was accepted")
        } catch {
            #expect(error.description.contains("at least 32"))
        }
    }

    @Test func theBrokerSeesOnlyPseudonymsInReadingsAndAudit() async throws {
        let dir = try TempDir()
        let broker = try await MosquittoBroker.start()
        defer { broker.killNow() }
        try dir.write("pseudonym.key", "5f1c0b7e9d2a4c6e8b3f1a7d5c9e2b4f\n")
        chmod(dir.file("pseudonym.key"), 0o600)
        var setup = AgentSetup(gateway: "psn", stateDir: dir.file("state"), brokerURL: broker.url)
        setup.simulators = [Sim(id: "ox-1", patient: "MRN-0042-REAL", rate: 20, count: 20)]
        let socket = dir.file("ctl.sock")
        try dir.write("agent.yaml", setup.yaml().replacingOccurrences(of: "  format: json\n",
                                                                     with: "  format: json\n  patient_pseudonym_key_file: \(dir.file("pseudonym.key"))\n")
                      + "control:\n  socket: \(socket)\n")
        let sub = try await MQTTTestSubscriber.start(port: broker.port, topicFilter: "\(setup.prefix)/#")
        defer { sub.stop() }
        let agent = try ChildProcess([agentBinary, "run", "--config", dir.file("agent.yaml")])
        defer { agent.signal(SIGKILL) }
        #expect(await waitUntil(sub) { readings($0).count >= 20 }, "\(agent.output.value)")
        let assign = try await ChildProcess.run([agentBinary, "assign", "ox-1", "--patient", "MRN-0099-REAL", "--config", dir.file("agent.yaml")])
        #expect(assign.status == 0, "\(assign.output)")
        #expect(await waitUntil(sub) { m in m.contains { $0.topic.hasSuffix("/audit") } })
        agent.signal(SIGTERM)
        _ = await agent.waitForExit(timeout: .seconds(20))

        let expected = "psn-" + PatientReference.hexHMAC(key: "5f1c0b7e9d2a4c6e8b3f1a7d5c9e2b4f", "MRN-0042-REAL")
        #expect(readings(sub.messages).allSatisfy { $0.payload.contains("\"patient_id\":\"\(expected)\"") })
        for m in sub.messages {
            #expect(!m.payloadString.contains("MRN-00"), "a real patient id reached the broker on \(m.topic)")
        }
        let audit = try #require(sub.messages.first { $0.topic.hasSuffix("/audit") })
        #expect(audit.payloadString.contains("psn-"))
        // The hub's own audit file keeps the real id.
        let file = try String(contentsOfFile: dir.file("state/audit.jsonl"), encoding: .utf8)
        #expect(file.contains("MRN-0099-REAL"))
    }
}

extension PatientReference {
    /// The expected pseudonym computed independently of the type under test (openssl).
    static func hexHMAC(key: String, _ message: String) -> String {
        let r = try? ChildProcess.runBlocking(["sh", "-c", "printf %s '\(message)' | openssl dgst -sha256 -hmac '\(key)' -r"])
        return String((r?.output ?? "").prefix(32))
    }
}
