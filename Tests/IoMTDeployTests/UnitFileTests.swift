import Foundation
import IoMTTestSupport
import Testing

/// `deploy/iomt-agent.service`, `deploy/sysusers.d`, `deploy/tmpfiles.d` against systemd's own
/// tools (offline: no systemd runs here), and the unit's settings the agent relies on.
@Suite(.timeLimit(.minutes(2)))
struct UnitFileTests {
    static let unitPath = "\(repoRoot)/deploy/iomt-agent.service"

    /// The unit with ExecStart pointing at the real (debug) binary, since `systemd-analyze
    /// verify` checks that the executable exists.
    static func unitForVerify(in dir: TempDir) throws -> String {
        let text = try readText(unitPath).replacingOccurrences(of: "/usr/local/bin/iomt-agent", with: agentBinary)
        try dir.write("iomt-agent.service", text)
        return dir.file("iomt-agent.service")
    }

    @Test func systemdAnalyzeVerifyPassesWithoutAnyWarning() async throws {
        guard let analyze = which("systemd-analyze") else {
            print("SKIP systemd-analyze verify: systemd-analyze is not installed (Debian package systemd; scripts/setup.sh installs it)")
            return
        }
        let dir = try TempDir()
        let unit = try Self.unitForVerify(in: dir)
        let result = try await sh([analyze, "verify", unit])
        #expect(result.status == 0, "systemd-analyze verify: \(result.output)")
        // verify exits 0 on unknown keys and bad values ("ignoring"): any output is a finding.
        #expect(result.output.trimmingCharacters(in: .whitespacesAndNewlines).isEmpty, "\(result.output)")
    }

    @Test func verifyWouldCatchAMisspelledKey() async throws {
        guard let analyze = which("systemd-analyze") else {
            print("SKIP: systemd-analyze is not installed")
            return
        }
        let dir = try TempDir()
        let unit = try Self.unitForVerify(in: dir)
        try dir.write("iomt-agent.service", try readText(unit).replacingOccurrences(of: "WatchdogSec=", with: "WatchDogSec="))
        let result = try await sh([analyze, "verify", unit])
        #expect(result.output.contains("WatchDogSec"), "the warning check above would be blind: \(result.output)")
    }

    @Test func offlineSecurityExposureStaysLow() async throws {
        guard let analyze = which("systemd-analyze") else {
            print("SKIP systemd-analyze security: not installed")
            return
        }
        let dir = try TempDir()
        let unit = try Self.unitForVerify(in: dir)
        let result = try await sh([analyze, "security", "--offline=true", "--no-pager", unit])
        guard let line = result.output.split(separator: "\n").first(where: { $0.contains("Overall exposure level") }),
              let score = line.split(separator: " ").compactMap({ Double($0) }).first else {
            if result.output.contains("--offline") || result.output.contains("unrecognized option") {
                print("SKIP systemd-analyze security --offline: not supported by this systemd: \(result.output)")
                return
            }
            Issue.record("no exposure level in: \(result.output)")
            return
        }
        // 3.8 when written (systemd 252); 10 is an unhardened service. The remaining exposure is the
        // HCI capabilities, the serial devices and the network the agent exists for.
        #expect(score <= 4.5, "exposure \(score): hardening was lost?\n\(result.output)")
    }

    @Test func unitSettingsTheAgentRelyOn() async throws {
        let unit = UnitFile(text: try readText(Self.unitPath))
        let s = "Service"
        #expect(unit.value(s, "Type") == "notify")
        #expect(unit.value(s, "NotifyAccess") == "main")
        #expect(unit.value(s, "WatchdogSec").flatMap(Int.init).map { $0 >= 10 } == true, "WatchdogSec")
        #expect(unit.value(s, "User") == "iomt" && unit.value(s, "Group") == "iomt")
        #expect(unit.value(s, "ExecStart") == "/usr/local/bin/iomt-agent run --config /etc/iomt-agent/agent.yaml")
        #expect(unit.value(s, "KillSignal") == "SIGTERM")
        #expect(unit.value(s, "TimeoutStopSec").flatMap(Int.init).map { $0 >= 10 } == true)
        #expect(unit.value(s, "Restart") == "always")
        let noRestart = Set((unit.value(s, "RestartPreventExitStatus") ?? "").split(separator: " ").map(String.init))
        #expect(noRestart.isSuperset(of: ["78", "64"]), "configuration errors must not restart in a loop")
        #expect(unit.value("Unit", "StartLimitBurst") != nil && unit.value("Unit", "StartLimitIntervalSec") != nil)

        #expect(unit.value(s, "StateDirectory") == "iomt-agent" && unit.value(s, "StateDirectoryMode") == "0700")
        #expect(unit.value(s, "RuntimeDirectory") == "iomt-agent" && unit.value(s, "RuntimeDirectoryMode") == "0750")
        #expect(unit.value(s, "ConfigurationDirectory") == "iomt-agent")

        for (key, value) in [("ProtectSystem", "strict"), ("ProtectHome", "true"), ("PrivateTmp", "true"),
                             ("NoNewPrivileges", "true"), ("DevicePolicy", "closed")] {
            #expect(unit.value(s, key) == value, "\(key)=\(unit.value(s, key) ?? "unset")")
        }
        // PrivateDevices=true would hide /dev/ttyUSB* and friends.
        #expect(unit.value(s, "PrivateDevices") != "true" && unit.value(s, "PrivateDevices") != "yes")
        let allowed = Set(unit.values(s, "DeviceAllow"))
        #expect(allowed.isSuperset(of: ["char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"]), "\(allowed)")
        let families = Set((unit.value(s, "RestrictAddressFamilies") ?? "").split(separator: " ").map(String.init))
        #expect(families == ["AF_UNIX", "AF_INET", "AF_INET6", "AF_BLUETOOTH"], "\(families)")
        let bounding = Set((unit.value(s, "CapabilityBoundingSet") ?? "").split(separator: " ").map(String.init))
        let ambient = Set((unit.value(s, "AmbientCapabilities") ?? "").split(separator: " ").map(String.init))
        #expect(bounding == ["CAP_NET_ADMIN", "CAP_NET_RAW"] && ambient == bounding, "\(bounding) \(ambient)")
        #expect(unit.value(s, "PrivateUsers") == nil, "PrivateUsers would void the capabilities")
        #expect(unit.value("Install", "WantedBy") == "multi-user.target")
    }

    @Test func unitDirectoriesMatchTheDefaultConfiguration() async throws {
        let unit = UnitFile(text: try readText(Self.unitPath))
        let config = try readText("\(repoRoot)/deploy/agent.yaml")
        let stateDir = "/var/lib/" + (unit.value("Service", "StateDirectory") ?? "?")
        #expect(config.contains("\nstate_dir: \(stateDir)\n"), "agent.yaml's state_dir is not the unit's \(stateDir)")
        // ProtectSystem=strict: the state directory is the only writable place the agent needs.
        let configDir = "/etc/" + (unit.value("Service", "ConfigurationDirectory") ?? "?")
        #expect(unit.value("Service", "ExecStart")?.hasSuffix("--config \(configDir)/agent.yaml") == true)
    }

    @Test func defaultConfigurationPassesConfigCheck() async throws {
        let result = try await sh([agentBinary, "config", "check", "--config", "\(repoRoot)/deploy/agent.yaml"])
        #expect(result.status == 0 && result.output.contains("configuration OK"), "\(result.output)")
        let config = try readText("\(repoRoot)/deploy/agent.yaml")
        #expect(config.contains("# bluetooth:"), "the commented Bluetooth example is missing")
        #expect(config.contains("\ncontrol:\n"), "the control socket section is missing")
    }

    @Test func sysusersCreatesTheServiceAccount() async throws {
        guard let sysusers = which("systemd-sysusers") else {
            print("SKIP systemd-sysusers: not installed (Debian package systemd)")
            return
        }
        let root = try TempDir()
        try root.makeDirectory("etc")
        let result = try await sh([sysusers, "--root=\(root.path)", "\(repoRoot)/deploy/sysusers.d/iomt-agent.conf"])
        #expect(result.status == 0, "\(result.output)")
        let passwd = root.read("etc/passwd") ?? ""
        let user = passwd.split(separator: "\n").map { $0.split(separator: ":", omittingEmptySubsequences: false).map(String.init) }
            .first { $0.first == "iomt" }
        let u = try #require(user, "no iomt in \(passwd)")
        #expect(u.count == 7 && u[5] == "/var/lib/iomt-agent" && u[6] == "/usr/sbin/nologin", "\(u)")
        #expect(Int(u[2]).map { $0 > 0 && $0 < 1000 } == true, "a system uid: \(u[2])")
        let group = (root.read("etc/group") ?? "").split(separator: "\n").first { $0.hasPrefix("iomt:") }
        #expect(group.map { $0.split(separator: ":")[2] == u[3] } == true, "group iomt with the user's gid: \(String(describing: group))")
    }

    @Test func tmpfilesGivesTheConfigurationToGroupIomt() async throws {
        guard let sysusers = which("systemd-sysusers"), let tmpfiles = which("systemd-tmpfiles") else {
            print("SKIP systemd-tmpfiles: not installed (Debian package systemd)")
            return
        }
        let root = try TempDir()
        try root.makeDirectory("etc")
        try await sh([sysusers, "--root=\(root.path)", "\(repoRoot)/deploy/sysusers.d/iomt-agent.conf"])
        try root.makeDirectory("etc/iomt-agent")
        try root.write("etc/iomt-agent/agent.yaml", "gateway: {id: x}\n")
        let result = try await sh([tmpfiles, "--root=\(root.path)", "--create", "\(repoRoot)/deploy/tmpfiles.d/iomt-agent.conf"])
        #expect(result.status == 0, "\(result.output)")
        let gid = (root.read("etc/group") ?? "").split(separator: "\n").first { $0.hasPrefix("iomt:") }
            .flatMap { UInt32($0.split(separator: ":")[2]) }
        let uid = (root.read("etc/passwd") ?? "").split(separator: "\n").first { $0.hasPrefix("iomt:") }
            .flatMap { UInt32($0.split(separator: ":")[2]) }
        let g = try #require(gid)
        let u = try #require(uid)
        let etc = fileMode(root.file("etc/iomt-agent"))
        #expect(etc?.mode == 0o750 && etc?.uid == 0 && etc?.gid == g, "\(String(describing: etc))")
        let yaml = fileMode(root.file("etc/iomt-agent/agent.yaml"))
        #expect(yaml?.mode == 0o640 && yaml?.uid == 0 && yaml?.gid == g, "\(String(describing: yaml))")
        let state = fileMode(root.file("var/lib/iomt-agent"))
        #expect(state?.mode == 0o700 && state?.uid == u && state?.gid == g, "\(String(describing: state))")
    }
}
