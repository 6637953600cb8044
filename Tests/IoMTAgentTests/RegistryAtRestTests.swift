import Foundation
@testable import IoMTAgent
import IoMTConfig
import IoMTCore
import IoMTRegistry
import IoMTTestSupport
import Testing

/// Issue 8, the device registry and the audit log at rest: sealed with AES-256-GCM under the
/// at-rest key's `registry` / `audit` subkeys. A copied state directory shows no patient id; the
/// wrong key is refused naming the file, and nothing is changed; files from before migrate.
@Suite(.serialized, .timeLimit(.minutes(2)))
struct RegistryAtRestTests {
    static let patient = "PATIENT-7731-XQ"
    static let otherPatient = "PATIENT-9902-ZK"

    /// An `AtRestKey` as the agent loads it (`security.key_file`), from `byte` repeated.
    func key(_ dir: TempDir, byte: String) throws -> AtRestKey {
        let name = "key-\(byte)"
        try dir.write(name, String(repeating: byte, count: 32) + "\n")
        chmod(dir.file(name), 0o600)
        let yaml = AgentSetup(gateway: "rest", stateDir: dir.file("state"), brokerURL: "mqtt://127.0.0.1:1").yaml()
            + "security:\n  key_file: \(dir.file(name))\n"
        try dir.write("\(name).yaml", yaml)
        return try #require(try AtRestKey.load(config: AgentConfig.load(path: dir.file("\(name).yaml")), environment: [:]))
    }

    func device(patient: String = RegistryAtRestTests.patient) -> RegisteredDevice {
        RegisteredDevice(id: "ble-c0ffee000001", transport: "ble", address: "C0:FF:EE:00:00:01", addressType: "public",
                         profile: "pulse-oximeter", patientID: patient, serialNumber: "SN-4455",
                         boundAt: Timestamp(millisecondsSinceEpoch: 1_700_000_000_000))
    }

    func bytes(_ path: String) throws -> [UInt8] { [UInt8](try #require(FileManager.default.contents(atPath: path))) }

    func contains(_ hay: [UInt8], _ needle: String) -> Bool { hay.contains(subsequence: Array(needle.utf8)) }

    @Test func sealedRegistryRoundTripsAndItsBytesHoldNoPatientID() throws {
        let dir = try TempDir()
        let k = try key(dir, byte: "5a")
        let registry = try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
        try registry.add(device())
        let raw = try bytes(registry.path)
        #expect(raw.starts(with: Array("IOMTREG1".utf8)))
        for secret in [Self.patient, "SN-4455", "C0:FF:EE:00:00:01", "pulse-oximeter"] {
            #expect(!contains(raw, secret), "\(secret) in the sealed registry")
        }
        let again = try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
        #expect(again.list() == [device()])
        _ = try again.assign(deviceID: device().id, patientID: Self.otherPatient, at: Timestamp(millisecondsSinceEpoch: 1_700_000_001_000))
        #expect(try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry")).patient(of: device().id) == Self.otherPatient)
        #expect(!contains(try bytes(registry.path), Self.otherPatient))
    }

    @Test func wrongOrMissingKeyIsRefusedNamingTheFileAndNothingChanges() throws {
        let dir = try TempDir()
        let k = try key(dir, byte: "5a")
        let other = try key(dir, byte: "c3")
        let registry = try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
        try registry.add(device())
        let before = try bytes(registry.path)

        for (sealingKey, why) in [(other.subkey("registry"), "wrong key"), (nil, "no at-rest key is configured"),
                                  (k.subkey("audit"), "wrong key")] {
            let error = #expect(throws: RegistryError.self) {
                try DeviceRegistry(stateDir: dir.file("state"), sealingKey: sealingKey)
            }
            guard case .sealed(let path, let detail)? = error else { Issue.record("\(String(describing: error))"); continue }
            #expect(path == registry.path && detail.contains(why), "\(detail)")
            #expect(error?.description.contains("nothing was changed or deleted") == true)
        }
        #expect(try bytes(registry.path) == before, "the file is unchanged")
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.file("state"))
        #expect(!names.contains { $0.contains("corrupt") }, "nothing moved aside: \(names)")
        #expect(try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry")).list() == [device()])
    }

    @Test func damagedSealedRegistryIsRefusedAndNeitherMovedNorRewritten() throws {
        let dir = try TempDir()
        let k = try key(dir, byte: "5a")
        let registry = try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
        try registry.add(device())
        var raw = try bytes(registry.path)
        raw[raw.count - 5] ^= 0x01  // one bit of the ciphertext or tag
        try Data(raw).write(to: URL(fileURLWithPath: registry.path))
        let truncated = Array(raw.prefix(20))  // magic and part of the nonce only
        for content in [raw, truncated] {
            try Data(content).write(to: URL(fileURLWithPath: registry.path))
            let error = #expect(throws: RegistryError.self) {
                try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
            }
            #expect(error?.description.contains("damaged file") == true, "\(String(describing: error))")
            #expect(try bytes(registry.path) == content)
        }
        let names = try FileManager.default.contentsOfDirectory(atPath: dir.file("state"))
        #expect(!names.contains { $0.contains("corrupt") }, "\(names)")
    }

    @Test func aSealedAppendAfterATornLastLineStartsItsOwnLineAndOpens() throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.file("state"), withIntermediateDirectories: true)
        let k = try key(dir, byte: "5a")
        let log = AuditLog(stateDir: dir.file("state"), gatewayID: "rest", sealingKey: k.subkey("audit"))
        let first = log.event(.assign, deviceID: "ox-1", patientBefore: nil, patientAfter: Self.patient, actor: .local())
        try log.append(first)
        // A crash in the middle of the next append left half a line without its newline.
        let handle = try #require(FileHandle(forWritingAtPath: log.path))
        handle.seekToEndOfFile()
        handle.write(Data("sealed1:AAAA".utf8))
        handle.closeFile()
        let second = log.event(.discharge, deviceID: "ox-1", patientBefore: Self.patient, patientAfter: nil, actor: .local())
        try log.append(second)
        let read = try log.read()
        #expect(read.events == [first, second])
        #expect(read.unreadable == [2], "the torn line is reported, the new one is line 3")
    }

    @Test func plaintextRegistryFromBeforeIsReadAndSealedWhenOpenedWithTheKey() throws {
        let dir = try TempDir()
        let plain = try DeviceRegistry(stateDir: dir.file("state"))
        try plain.add(device())
        #expect(contains(try bytes(plain.path), Self.patient), "written in clear without a key")
        let k = try key(dir, byte: "5a")
        let sealed = try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry"))
        #expect(sealed.list() == [device()])
        let raw = try bytes(plain.path)
        #expect(raw.starts(with: Array("IOMTREG1".utf8)) && !contains(raw, Self.patient))
    }

    @Test func auditLinesAreSealedOneByOneAndOldPlaintextLinesStayReadable() throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.file("state"), withIntermediateDirectories: true)
        let actor = AuditActor(uid: 0, user: "root", pid: 1, via: "local")
        // A plaintext line from before the key was configured.
        let old = AuditLog(stateDir: dir.file("state"), gatewayID: "rest")
        let first = old.event(.assign, deviceID: "ox-1", patientBefore: nil, patientAfter: "P-OLD-1", actor: actor)
        try old.append(first)
        let k = try key(dir, byte: "5a")
        let log = AuditLog(stateDir: dir.file("state"), gatewayID: "rest", sealingKey: k.subkey("audit"))
        try log.checkKey()
        let second = log.event(.pair, deviceID: "ble-c0ffee000001", patientBefore: nil, patientAfter: Self.patient, actor: actor)
        let third = log.event(.assign, deviceID: "ble-c0ffee000001", patientBefore: Self.patient, patientAfter: Self.otherPatient,
                              actor: actor, detail: "re-bound")
        try log.append(second)
        try log.append(third)

        let raw = try bytes(log.path)
        let lines = raw.split(separator: 0x0A).map { String(decoding: $0, as: UTF8.self) }
        #expect(lines.count == 3)
        #expect(lines[0].hasPrefix("{") && lines[0].contains("P-OLD-1"), "the old line is kept as it was")
        #expect(lines[1].hasPrefix("sealed1:") && lines[2].hasPrefix("sealed1:"))
        #expect(!contains(raw, Self.patient) && !contains(raw, Self.otherPatient) && !contains(raw, "re-bound"))

        let read = try log.read()
        #expect(read.events == [first, second, third])
        #expect(read.unreadable.isEmpty)

        // A sealed line replayed at another line number does not open (the line number is
        // authenticated): it is reported, the others still read.
        try dir.write("state/audit.jsonl", [lines[0], lines[1], lines[2], lines[1]].joined(separator: "\n") + "\n")
        let replayed = try log.read()
        #expect(replayed.events == [first, second, third] && replayed.unreadable == [4])
        // Every sealed line out of place: indistinguishable from the wrong key, and said so.
        try dir.write("state/audit.jsonl", [lines[0], lines[2], lines[1]].joined(separator: "\n") + "\n")
        let swapped = #expect(throws: RegistryError.self) { try log.read() }
        #expect(swapped?.description.contains("wrong key") == true)
    }

    @Test func auditLogWithTheWrongKeyIsRefusedAndLeftUnchanged() throws {
        let dir = try TempDir()
        try FileManager.default.createDirectory(atPath: dir.file("state"), withIntermediateDirectories: true)
        let k = try key(dir, byte: "5a")
        let log = AuditLog(stateDir: dir.file("state"), gatewayID: "rest", sealingKey: k.subkey("audit"))
        try log.append(log.event(.assign, deviceID: "ox-1", patientBefore: nil, patientAfter: Self.patient,
                                 actor: .local()))
        let before = try bytes(log.path)
        let wrong = AuditLog(stateDir: dir.file("state"), gatewayID: "rest", sealingKey: try key(dir, byte: "c3").subkey("audit"))
        let none = AuditLog(stateDir: dir.file("state"), gatewayID: "rest")
        for (candidate, why) in [(wrong, "wrong key"), (none, "no at-rest key is configured")] {
            let checked = #expect(throws: RegistryError.self) { try candidate.checkKey() }
            guard case .sealed(let path, let detail)? = checked else { Issue.record("\(String(describing: checked))"); continue }
            #expect(path == log.path && detail.contains(why), "\(detail)")
            let read = #expect(throws: RegistryError.self) { try candidate.read() }
            guard case .sealed(_, let readDetail)? = read else { Issue.record("\(String(describing: read))"); continue }
            #expect(readDetail.contains(why), "\(readDetail)")
        }
        #expect(try bytes(log.path) == before)
    }

    /// The stolen-card test for the registry and the audit log: the CLI (working alone on the
    /// state directory, as a nurse would) binds a device to a patient with `security.key_file`
    /// set; a copy of the state directory holds the patient id nowhere; the same CLI with
    /// another key refuses with the file named, and the files are unchanged.
    @Test func aCopiedStateDirectoryHoldsNoPatientIDFromTheRegistryOrTheAuditLog() async throws {
        let dir = try TempDir()
        var setup = AgentSetup(gateway: "rest-cli", stateDir: dir.file("state"), brokerURL: "mqtt://127.0.0.1:1")
        setup.simulators = [Sim(id: "ox-9", patient: "P-CONFIG", rate: 1)]
        try dir.write("state.key", String(repeating: "5a", count: 32) + "\n")
        chmod(dir.file("state.key"), 0o600)
        let yaml = setup.yaml() + "control:\n  socket: \(dir.file("ctl.sock"))\nsecurity:\n  key_file: \(dir.file("state.key"))\n"
        try dir.write("agent.yaml", yaml)
        let assign = try await ChildProcess.run([agentBinary, "assign", "ox-9", "--patient", Self.patient,
                                                 "--config", dir.file("agent.yaml")], timeout: .seconds(60))
        #expect(assign.status == 0, "\(assign.output)")

        let copy = try TempDir()
        #expect(try await ChildProcess.run(["cp", "-a", dir.file("state") + "/.", copy.path]).status == 0)
        let names = try FileManager.default.contentsOfDirectory(atPath: copy.path)
        #expect(names.contains("registry.json") && names.contains("audit.jsonl"), "\(names)")
        for name in ["registry.json", "audit.jsonl"] {
            #expect(!contains(try bytes(copy.path + "/" + name), Self.patient), "\(name) holds the patient id")
        }

        // The hospital's key reads them back.
        let k = try #require(try AtRestKey.load(config: AgentConfig.load(path: dir.file("agent.yaml")), environment: [:]))
        #expect(try DeviceRegistry(stateDir: dir.file("state"), sealingKey: k.subkey("registry")).patient(of: "ox-9") == Self.patient)
        let events = try AuditLog(stateDir: dir.file("state"), gatewayID: "rest-cli", sealingKey: k.subkey("audit")).read().events
        #expect(events.map(\.patientAfter) == [Self.patient])

        // Another key: refused, the file named, nothing changed.
        let before = try bytes(dir.file("state/registry.json"))
        // The sealed buffer opens first and would refuse the other key itself (StolenCardTests);
        // without it the registry is the one that must refuse.
        for name in ["buffer.db", "buffer.db-wal", "buffer.db-shm"] where FileManager.default.fileExists(atPath: dir.file("state/\(name)")) {
            try FileManager.default.moveItem(atPath: dir.file("state/\(name)"), toPath: dir.file(name))
        }
        try dir.write("other.key", String(repeating: "c3", count: 32) + "\n")
        chmod(dir.file("other.key"), 0o600)
        try dir.write("agent.yaml", yaml.replacingOccurrences(of: dir.file("state.key"), with: dir.file("other.key")))
        let refused = try await ChildProcess.run([agentBinary, "assign", "ox-9", "--patient", Self.otherPatient,
                                                  "--config", dir.file("agent.yaml")], timeout: .seconds(60))
        #expect(refused.status != 0)
        #expect(refused.output.contains("registry.json") && refused.output.contains("wrong key"), "\(refused.output)")
        #expect(try bytes(dir.file("state/registry.json")) == before)
    }
}
