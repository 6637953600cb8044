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
