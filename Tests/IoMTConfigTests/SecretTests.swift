import Foundation
import Testing
@testable import IoMTConfig

/// Secrets must never reach an error message or the summary.
@Suite struct SecretTests {
    @Test func passwordKeyIsRefusedWithoutEchoingIt() throws {
        let e = problems(minimalYAML + "\n  username: gw\n  password: hunter2\n")
        let p = try #require(problem(e, at: "broker.password"))
        #expect(p.line == 6)
        #expect(p.message.contains("password_file"))
        #expect(!e.description.contains("hunter2"))
        #expect(!String(describing: e.problems).contains("hunter2"))
    }

    @Test func secretInUnknownKeysAnywhereIsNotEchoed() throws {
        let e = problems("""
            gateway:
              id: g
              token: hunter2
            broker:
              url: mqtt://h
              pasword: hunter2
              qos: hunter2x
            api_secret: hunter2
            """)
        #expect(e.problems.count == 4)
        #expect(!e.description.contains("hunter2\"") && !e.description.contains(": hunter2"))
        #expect(e.problems.filter { $0.message.contains("hunter2") }.map(\.keyPath) == ["broker.qos"])
    }

    @Test func credentialsInBrokerURLAreNotEchoed() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: mqtt://gw:hunter2@broker:1883\n")
        let p = try #require(problem(e, at: "broker.url"))
        #expect(p.message.contains("password_file"))
        #expect(!e.description.contains("hunter2"))
    }

    @Test func syntaxErrorDoesNotQuoteTheLine() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  password: \"hunter2\n")
        #expect(e.problems.count == 1)
        #expect(!e.description.contains("hunter2"))
    }

    @Test func duplicateKeyErrorDoesNotQuoteTheDocument() throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: mqtt://h\n  password: hunter2\n  url: mqtt://h\n")
        #expect(!e.description.contains("hunter2"))
    }

    @Test func summaryShowsOnlyThePasswordFilePath() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("iomt-config-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        let passwordPath = dir.appendingPathComponent("broker.password").path
        try "hunter2\n".write(toFile: passwordPath, atomically: true, encoding: .utf8)
        let configPath = dir.appendingPathComponent("agent.yaml").path
        try """
            gateway:
              id: hub-001
            broker:
              url: mqtts://broker.example.org
              username: gw
              password_file: \(passwordPath)
            """.write(toFile: configPath, atomically: true, encoding: .utf8)
        let c = try AgentConfig.load(path: configPath)
        let summary = c.renderSummary()
        #expect(summary.contains("password_file: \(passwordPath)"))
        #expect(summary.contains("username: gw"))
        #expect(!summary.contains("hunter2"))
        #expect(!String(describing: c).contains("hunter2"))
    }
}

@Suite struct SecretPathTests {
    @Test(arguments: ["password_file: hunter2", "key_file: \"-----BEGIN PRIVATE KEY-----\\nhunter2\\n\"", "ca_file: hunter2"])
    func secretPastedInsteadOfAPathIsRefusedWithoutEcho(line: String) throws {
        let e = problems("gateway:\n  id: g\nbroker:\n  url: mqtts://h\n  username: gw\n  \(line)\n")
        let key = String(line.prefix { $0 != ":" })
        let p = try #require(e.problems.first { $0.keyPath == "broker.\(key)" })
        #expect(p.line == 6)
        #expect(p.message.contains("must be the path of a file"))
        #expect(!e.description.contains("hunter2"))
    }

    @Test func relativePathWithDotSlashIsAccepted() throws {
        let c = try parseValid("gateway:\n  id: g\nbroker:\n  url: mqtt://h\n  username: gw\n  password_file: ./broker.password\n")
        #expect(c.broker.passwordFile == "./broker.password")
    }
}

@Test func passwordFileGivenAsTheConfigIsNotEchoed() throws {
    for text in ["hunter2\n", "gw:hunter2\n", "- hunter2\n"] {
        let e = problems(text, source: "/etc/iomt-agent/broker.password")
        #expect(e.problems.count == 1)
        #expect(e.problems.first?.message.contains("must be a mapping") == true)
        #expect(!e.description.contains("hunter2"))
    }
}
