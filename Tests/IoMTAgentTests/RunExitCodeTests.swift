import Foundation
import IoMTTestSupport
import Testing

/// `run` with a broken configuration exits 78 (EX_CONFIG) with the problems and no usage text:
/// the unit's RestartPreventExitStatus=78 then stops systemd from restarting it in a loop.
@Suite struct RunExitCodeTests {
    @Test func aBrokenConfigurationExits78WithTheKeyPathAndNoUsage() async throws {
        let dir = try TempDir()
        try dir.write("agent.yaml", "gateway:\n  id: hub-1\nbroker:\n  url: ftp://nowhere\nbluetooth:\n  adapter: bluetooth0\n")
        let r = try await ChildProcess.run([agentBinary, "run", "--config", dir.file("agent.yaml")], timeout: .seconds(30))
        #expect(r.status == 78, "\(r.output)")
        #expect(r.output.contains("broker.url") && r.output.contains("bluetooth.adapter"), "\(r.output)")
        #expect(!r.output.contains("Usage:"), "\(r.output)")
    }
}

extension RunExitCodeTests {
    /// Issue 8: a TLS client key others can read stops the agent, with the fix in the message.
    @Test func aWorldReadableTLSClientKeyIsRefused() async throws {
        let dir = try TempDir()
        try dir.write("client.key", "-----BEGIN PRIVATE KEY-----\nnot a real key\n-----END PRIVATE KEY-----\n")
        chmod(dir.file("client.key"), 0o644)
        try dir.write("agent.yaml", """
            gateway: {id: hub-1}
            state_dir: \(dir.file("state"))
            broker:
              url: mqtts://127.0.0.1:8883
              ca_file: \(dir.file("client.key"))
              cert_file: \(dir.file("client.key"))
              key_file: \(dir.file("client.key"))

            """)
        let r = try await ChildProcess.run([agentBinary, "run", "--config", dir.file("agent.yaml")], timeout: .seconds(30))
        #expect(r.status == 78, "\(r.output)")
        #expect(r.output.contains("loose permissions") && r.output.contains("chmod 600"), "\(r.output)")
    }
}
