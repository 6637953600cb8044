import Foundation
import IoMTTestSupport
import Testing

/// `scripts/install.sh` into a temporary DESTDIR and `scripts/build-deb.sh` on the debug binary
/// (the release build is what users package; it takes minutes, so the tests package the debug
/// build with --allow-dynamic-swift and check the structure).
@Suite(.timeLimit(.minutes(5)))
struct InstallAndPackageTests {
    static let install = "\(repoRoot)/scripts/install.sh"
    static let buildDeb = "\(repoRoot)/scripts/build-deb.sh"

    /// Every file install.sh puts down for PREFIX=/usr, with its mode.
    static let usrLayout: [(String, Int)] = [
        ("/usr/bin/iomt-agent", 0o755),
        ("/usr/lib/systemd/system/iomt-agent.service", 0o644),
        ("/usr/lib/sysusers.d/iomt-agent.conf", 0o644),
        ("/usr/lib/tmpfiles.d/iomt-agent.conf", 0o644),
        ("/usr/lib/udev/rules.d/70-iomt-serial.rules", 0o644),
        ("/usr/lib/udev/rules.d/72-iomt-bluetooth.rules", 0o644),
        ("/etc/iomt-agent", 0o750),
        ("/etc/iomt-agent/agent.yaml", 0o640),
        ("/usr/share/iomt-agent/profiles/masimo-ascii1.yaml", 0o644),
        ("/usr/share/iomt-agent/profiles/weight-scale-advert.yaml", 0o644),
        ("/usr/share/doc/iomt-agent/README.md", 0o644),
        ("/usr/share/doc/iomt-agent/DEPLOY.md", 0o644),
        ("/usr/share/doc/iomt-agent/UDEV.md", 0o644),
        ("/usr/share/doc/iomt-agent/agent.yaml.example", 0o644),
        ("/usr/share/doc/iomt-agent/71-iomt-beds.rules.example", 0o644),
        ("/usr/share/bash-completion/completions/iomt-agent", 0o644),
        ("/usr/share/zsh/vendor-completions/_iomt-agent", 0o644),
        ("/usr/share/fish/vendor_completions.d/iomt-agent.fish", 0o644),
    ]

    static func allFiles(under root: String) -> Set<String> {
        var out: Set<String> = []
        guard let e = FileManager.default.enumerator(atPath: root) else { return out }
        while let rel = e.nextObject() as? String {
            var isDir: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(root)/\(rel)", isDirectory: &isDir), !isDir.boolValue {
                out.insert("/" + rel)
            }
        }
        return out
    }

    @Test func installIntoDestdirPutsEveryFileWithItsModeAndActivatesNothing() async throws {
        let dest = try TempDir()
        let result = try await sh(["/usr/bin/env", "DESTDIR=\(dest.path)", "PREFIX=/usr", Self.install, "--binary", agentBinary])
        #expect(result.status == 0, "\(result.output)")
        for (path, mode) in Self.usrLayout {
            let m = fileMode(dest.path + path)
            #expect(m?.mode == mode, "\(path): mode \(m.map { String($0.mode, radix: 8) } ?? "missing"), want \(String(mode, radix: 8))")
        }
        // Nothing else (no stray files), and every directory is 0755 except /etc/iomt-agent.
        let expected = Set(Self.usrLayout.map(\.0).filter { $0 != "/etc/iomt-agent" })
        #expect(Self.allFiles(under: dest.path) == expected,
                "unexpected: \(Self.allFiles(under: dest.path).subtracting(expected)), missing: \(expected.subtracting(Self.allFiles(under: dest.path)))")
        for dir in ["/usr", "/usr/bin", "/usr/lib/systemd/system", "/usr/share/doc/iomt-agent", "/etc"] {
            #expect(fileMode(dest.path + dir)?.mode == 0o755, "\(dir)")
        }
        // With a DESTDIR the activation commands are printed, not run.
        #expect(result.output.contains("nothing activated"), "\(result.output)")
        #expect(result.output.contains("systemd-sysusers /usr/lib/sysusers.d/iomt-agent.conf"))
        #expect(result.output.contains("systemctl enable --now iomt-agent"))

        // The unit names the installed binary and the installed documentation.
        let unit = UnitFile(text: try readText(dest.path + "/usr/lib/systemd/system/iomt-agent.service"))
        #expect(unit.value("Service", "ExecStart") == "/usr/bin/iomt-agent run --config /etc/iomt-agent/agent.yaml")
        #expect(unit.value("Unit", "Documentation")?.contains("file:///usr/share/doc/iomt-agent/DEPLOY.md") == true)
        // The installed binary, files and completions are the real ones.
        let cmp = try await sh(["cmp", agentBinary, dest.path + "/usr/bin/iomt-agent"])
        #expect(cmp.status == 0, "\(cmp.output)")
        #expect(try readText(dest.path + "/etc/iomt-agent/agent.yaml") == readText("\(repoRoot)/deploy/agent.yaml"))
        let bash = try readText(dest.path + "/usr/share/bash-completion/completions/iomt-agent")
        #expect(bash.contains("iomt-agent") && bash.contains("config"), "bash completion looks empty")
        let check = try await sh([dest.path + "/usr/bin/iomt-agent", "config", "check", "--config", dest.path + "/etc/iomt-agent/agent.yaml"])
        #expect(check.status == 0, "the installed configuration fails config check: \(check.output)")

        // systemd finds the sysusers and tmpfiles entries where they were put.
        if let tmpfiles = which("systemd-tmpfiles") {
            let cat = try await sh([tmpfiles, "--root=\(dest.path)", "--cat-config"])
            #expect(cat.output.contains("\(dest.path)/usr/lib/tmpfiles.d/iomt-agent.conf"), "\(cat.output.prefix(500))")
        }
        // The installed unit verifies, once pointed at a binary that exists on this machine.
        if let analyze = which("systemd-analyze") {
            let copy = try TempDir()
            try copy.write("iomt-agent.service", try readText(dest.path + "/usr/lib/systemd/system/iomt-agent.service")
                .replacingOccurrences(of: "/usr/bin/iomt-agent", with: dest.path + "/usr/bin/iomt-agent"))
            let verify = try await sh([analyze, "verify", copy.file("iomt-agent.service")])
            #expect(verify.status == 0 && verify.output.isEmpty, "\(verify.output)")
        }
    }

    @Test func aSecondInstallNeverOverwritesTheConfiguration() async throws {
        let dest = try TempDir()
        let first = try await sh([Self.install, "--destdir", dest.path, "--binary", agentBinary, "--no-completions"])
        #expect(first.status == 0, "\(first.output)")
        // Default prefix /usr/local: unit under /usr/local/lib, rules under /etc/udev/rules.d.
        #expect(fileMode(dest.path + "/usr/local/bin/iomt-agent")?.mode == 0o755)
        #expect(fileMode(dest.path + "/usr/local/lib/systemd/system/iomt-agent.service")?.mode == 0o644)
        #expect(fileMode(dest.path + "/etc/udev/rules.d/72-iomt-bluetooth.rules")?.mode == 0o644)
        #expect(fileMode(dest.path + "/usr/local/share/bash-completion") == nil, "--no-completions")
        let unit = UnitFile(text: try readText(dest.path + "/usr/local/lib/systemd/system/iomt-agent.service"))
        #expect(unit.value("Service", "ExecStart")?.hasPrefix("/usr/local/bin/iomt-agent run") == true)

        let config = dest.path + "/etc/iomt-agent/agent.yaml"
        let edited = "# edited on site\ngateway: {id: ward3-bed1}\nbroker: {url: mqtt://10.0.0.5}\n"
        try edited.write(toFile: config, atomically: false, encoding: .utf8)
        chmod(config, 0o600)
        let second = try await sh([Self.install, "--destdir", dest.path, "--binary", agentBinary, "--no-completions"])
        #expect(second.status == 0, "\(second.output)")
        #expect(try readText(config) == edited, "install.sh overwrote an existing configuration")
        #expect(fileMode(config)?.mode == 0o600, "install.sh changed the mode of an existing configuration")
        #expect(second.output.contains("agent.yaml exists: kept"), "\(second.output)")
        #expect(try readText(dest.path + "/usr/local/share/doc/iomt-agent/agent.yaml.example") == readText("\(repoRoot)/deploy/agent.yaml"))
    }

    @Test func installRefusesAMissingBinaryAndARelativePrefix() async throws {
        let dest = try TempDir()
        let missing = try await sh([Self.install, "--destdir", dest.path, "--binary", dest.file("nope")])
        #expect(missing.status != 0 && missing.output.contains("not an executable"), "\(missing.output)")
        let relative = try await sh([Self.install, "--destdir", dest.path, "--binary", agentBinary, "--prefix", "usr"])
        #expect(relative.status != 0 && relative.output.contains("must be absolute"), "\(relative.output)")
        #expect(Self.allFiles(under: dest.path).isEmpty, "a refused install wrote files")
    }

    @Test func debPackageOfTheDebugBinaryHasTheRightFilesModesConffilesAndDepends() async throws {
        guard let dpkgDeb = which("dpkg-deb") else {
            print("SKIP build-deb.sh: dpkg-deb is not installed")
            return
        }
        let out = try TempDir()
        // A binary loading the Swift runtime dynamically is refused without the explicit flag.
        let refused = try await sh([Self.buildDeb, "--binary", agentBinary, "--out", out.path, "--no-strip", "--compression", "gzip"], timeout: .seconds(120))
        #expect(refused.status != 0 && refused.output.contains("--static-swift-stdlib"), "\(refused.output)")

        let built = try await sh([Self.buildDeb, "--binary", agentBinary, "--out", out.path, "--no-strip", "--allow-dynamic-swift",
                                "--compression", "gzip"],
                           timeout: .seconds(240))
        #expect(built.status == 0, "\(built.output)")
        let deb = try #require(built.output.split(separator: "\n").last.map(String.init), "\(built.output)")
        let arch = try await sh(["dpkg", "--print-architecture"]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        let name = (deb as NSString).lastPathComponent
        #expect(name.hasPrefix("iomt-agent_") && name.hasSuffix("_\(arch).deb"), "\(name)")

        // Control fields.
        func field(_ f: String) async throws -> String {
            try await sh([dpkgDeb, "-f", deb, f]).output.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        #expect(try await field("Package") == "iomt-agent")
        #expect(try await field("Architecture") == arch)
        let version = try await field("Version")
        #expect(name == "iomt-agent_\(version)_\(arch).deb")
        #expect(version.first?.isNumber == true, "\(version)")
        let depends = Set(try await field("Depends").split(separator: ",").map { $0.trimmingCharacters(in: .whitespaces) })
        #expect(depends.isSuperset(of: ["libmosquitto1", "libsqlite3-0", "libc6"]), "\(depends)")
        #expect(!depends.contains { $0.contains("swift") }, "\(depends)")
        #expect(try await field("Description").contains("TEST BUILD"), "a debug package must say so")

        // Control archive: conffiles and maintainer scripts.
        let control = try TempDir()
        #expect(try await sh([dpkgDeb, "-e", deb, control.file("DEBIAN")]).status == 0)
        #expect(control.read("DEBIAN/conffiles") == "/etc/iomt-agent/agent.yaml\n")
        for script in ["postinst", "prerm", "postrm"] {
            #expect(fileMode(control.file("DEBIAN/\(script)"))?.mode == 0o755, "\(script) mode")
            let syntax = try await sh(["sh", "-n", control.file("DEBIAN/\(script)")])
            #expect(syntax.status == 0, "\(script): \(syntax.output)")
        }
        let postinst = control.read("DEBIAN/postinst") ?? ""
        for step in ["systemd-sysusers ${ROOT:+--root=\"$ROOT\"} \"$ROOT/usr/lib/sysusers.d/iomt-agent.conf\"",
                     "systemd-tmpfiles ${ROOT:+--root=\"$ROOT\"} --create \"$ROOT/usr/lib/tmpfiles.d/iomt-agent.conf\"",
                     "udevadm trigger", "systemctl daemon-reload"] {
            #expect(postinst.contains(step), "postinst lacks \(step)")
        }
        // It never enables or starts the service: only the hint (inside the heredoc) names it.
        let commands = postinst.components(separatedBy: "HINT").enumerated().filter { $0.offset % 2 == 0 }
            .map(\.element).joined().split(separator: "\n")
            .filter { !$0.trimmingCharacters(in: .whitespaces).hasPrefix("#") }
        let starting = commands.filter { $0.contains("systemctl enable") || $0.contains("systemctl start") || $0.contains("--now") }
        #expect(starting.isEmpty, "postinst starts the agent: \(starting)")
        #expect(commands.contains { $0.contains("systemctl try-restart") }, "an upgrade restarts a running agent")
        #expect(postinst.contains("systemctl enable --now iomt-agent"), "the hint")
        #expect(!(control.read("DEBIAN/postrm") ?? "").contains("rm -rf /var/lib"), "purge must keep the buffer")

        // Data archive: every file of the install layout, owned by root, with its mode.
        let listing = try await sh([dpkgDeb, "-c", deb]).output
        var listed: [String: (mode: String, owner: String)] = [:]
        for line in listing.split(separator: "\n") {
            let f = line.split(separator: " ", omittingEmptySubsequences: true)
            guard f.count >= 6 else { continue }
            var path = String(f[5])
            if path.hasPrefix(".") { path.removeFirst() }
            if path.count > 1 && path.hasSuffix("/") { path.removeLast() }
            listed[path] = (String(f[0]), String(f[1]))
        }
        for (path, mode) in Self.usrLayout {
            let entry = listed[path]
            #expect(entry != nil, "\(path) not in the package")
            guard let entry else { continue }
            #expect(entry.owner == "root/root", "\(path) owned by \(entry.owner)")
            let bits = entry.mode.dropFirst().map { $0 == "-" ? 0 : 1 }.reduce(0) { $0 << 1 | $1 }
            #expect(bits == mode, "\(path): \(entry.mode), want \(String(mode, radix: 8))")
        }

        // Extract and run the packaged binary.
        let root = try TempDir()
        #expect(try await sh([dpkgDeb, "-x", deb, root.path]).status == 0)
        let help = try await sh([root.path + "/usr/bin/iomt-agent", "--help"])
        #expect(help.status == 0 && help.output.contains("USAGE: iomt-agent"), "\(help.output)")
        let check = try await sh([root.path + "/usr/bin/iomt-agent", "config", "check", "--config", root.path + "/etc/iomt-agent/agent.yaml"])
        #expect(check.status == 0, "\(check.output)")
    }

    /// The package installed, upgraded over an edited configuration and purged with the real dpkg,
    /// into a scratch root (`dpkg --root --force-script-chrootless`: the maintainer scripts run
    /// here with DPKG_ROOT set, so the account and permissions land inside the scratch root).
    @Test func dpkgInstallUpgradeAndPurgeInAScratchRoot() async throws {
        guard let dpkg = which("dpkg"), which("dpkg-deb") != nil else {
            print("SKIP dpkg --root: dpkg is not installed")
            return
        }
        guard getuid() == 0 else {
            print("SKIP dpkg --root: needs root (dpkg sets file owners)")
            return
        }
        guard which("systemd-sysusers") != nil, which("systemd-tmpfiles") != nil else {
            print("SKIP dpkg --root: systemd-sysusers/systemd-tmpfiles not installed (Debian package systemd)")
            return
        }
        let out = try TempDir()
        let built = try await sh([Self.buildDeb, "--binary", agentBinary, "--out", out.path, "--no-strip", "--allow-dynamic-swift",
                            "--compression", "gzip"], timeout: .seconds(240))
        let deb = try #require(built.status == 0 ? built.output.split(separator: "\n").last.map(String.init) : nil, "\(built.output)")

        let root = try TempDir()
        for dir in ["var", "var/lib", "var/lib/dpkg", "var/lib/dpkg/info", "var/lib/dpkg/updates", "etc"] {
            try root.makeDirectory(dir)
        }
        try root.write("var/lib/dpkg/status", "")
        let base = [dpkg, "--root=\(root.path)", "--force-script-chrootless", "--force-depends", "--log=/dev/null"]
        let hostHadUser = (try await sh(["getent", "passwd", "iomt"])).status == 0

        let install = try await sh(base + ["-i", deb])
        #expect(install.status == 0, "\(install.output)")
        #expect(install.output.contains("installed but not started"), "the postinst hint: \(install.output)")
        let passwd = root.read("etc/passwd") ?? ""
        let fields = try #require(passwd.split(separator: "\n").first { $0.hasPrefix("iomt:") }?.split(separator: ":"),
                                  "postinst made no iomt user: \(passwd)")
        let uid = try #require(UInt32(fields[2]))
        let gid = try #require(UInt32(fields[3]))
        let etc = fileMode(root.file("etc/iomt-agent"))
        #expect(etc?.mode == 0o750 && etc?.uid == 0 && etc?.gid == gid, "\(String(describing: etc))")
        let yaml = fileMode(root.file("etc/iomt-agent/agent.yaml"))
        #expect(yaml?.mode == 0o640 && yaml?.uid == 0 && yaml?.gid == gid, "\(String(describing: yaml))")
        let state = fileMode(root.file("var/lib/iomt-agent"))
        #expect(state?.mode == 0o700 && state?.uid == uid && state?.gid == gid, "\(String(describing: state))")
        #expect(fileMode(root.file("usr/bin/iomt-agent"))?.mode == 0o755)
        #expect(fileMode(root.file("etc/systemd/system/multi-user.target.wants/iomt-agent.service")) == nil,
                "the package enabled the service")

        // Upgrade over an edited configuration (a conffile): kept.
        let config = root.file("etc/iomt-agent/agent.yaml")
        let edited = (root.read("etc/iomt-agent/agent.yaml") ?? "") + "# edited on site\n"
        try root.write("etc/iomt-agent/agent.yaml", edited)
        let upgrade = try await sh(base + ["--force-confold", "-i", deb])
        #expect(upgrade.status == 0, "\(upgrade.output)")
        #expect(try readText(config) == edited, "the upgrade replaced the edited configuration")

        // Purge: the program and the configuration go, the buffer stays.
        try root.write("var/lib/iomt-agent/buffer.db", "readings not yet delivered")
        let purge = try await sh(base + ["--purge", "iomt-agent"])
        #expect(purge.status == 0, "\(purge.output)")
        #expect(fileMode(root.file("usr/bin/iomt-agent")) == nil)
        #expect(fileMode(config) == nil, "purge keeps the configuration")
        #expect(root.read("var/lib/iomt-agent/buffer.db") == "readings not yet delivered", "purge deleted the buffer")
        #expect(purge.output.contains("was kept"), "\(purge.output)")

        // Nothing reached this machine's own accounts.
        let hostHasUser = (try await sh(["getent", "passwd", "iomt"])).status == 0
        #expect(hostHasUser == hostHadUser, "the maintainer scripts changed the host's accounts")
    }
}
