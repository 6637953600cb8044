import IoMTCore
import IoMTRegistry
import IoMTTestSupport
import Testing
#if canImport(Glibc)
import Glibc
#endif

struct FixedClock: WallClock {
    var ms: Int64 = 1_764_000_000_000
    func now() -> Timestamp { Timestamp(millisecondsSinceEpoch: ms) }
}

func mode(_ path: String) -> mode_t {
    var st = stat()
    _ = stat(path, &st)
    return st.st_mode & 0o777
}

func oximeter(_ patient: String = "P-1") -> RegisteredDevice {
    RegisteredDevice(id: RegisteredDevice.bleID(address: "C0:FF:EE:00:00:01")!, transport: "ble", address: "C0:FF:EE:00:00:01",
                     addressType: "random", profile: "pulse-oximeter", patientID: patient, displayName: "Nonin 3230",
                     manufacturer: "Nonin", model: "3230", serialNumber: "SN1", firmware: "1.2",
                     pairedAt: FixedClock().now(), boundAt: FixedClock().now())
}

@Suite struct DeviceRegistryTests {
    @Test func bleIDsAreTheIdentityAddressInLowercaseHex() {
        #expect(RegisteredDevice.bleID(address: "C0:FF:EE:00:00:01") == "ble-c0ffee000001")
        #expect(RegisteredDevice.bleID(address: "c0ffee000001") == "ble-c0ffee000001")
        #expect(RegisteredDevice.bleID(address: "C0:FF:EE") == nil)
        #expect(RegisteredDevice.bleID(address: "zz:FF:EE:00:00:01") == nil)
    }

    @Test func entriesPersistAcrossReopenWithEveryField() throws {
        let dir = try TempDir()
        let r = try DeviceRegistry(stateDir: dir.path)
        try r.add(oximeter())
        let again = try DeviceRegistry(stateDir: dir.path)
        #expect(again.list() == [oximeter()])
        #expect(again.device(address: "c0:ff:ee:00:00:01")?.serialNumber == "SN1")
        #expect(again.recoveredFromCorruption == nil)
        #expect(mode(dir.file("registry.json")) == 0o600)
    }

    @Test func assignRebindsAndReportsThePreviousPatient() throws {
        let dir = try TempDir()
        let r = try DeviceRegistry(stateDir: dir.path)
        try r.add(oximeter("P-1"))
        let later = Timestamp(millisecondsSinceEpoch: FixedClock().ms + 60_000)
        let (before, entry) = try r.assign(deviceID: "ble-c0ffee000001", patientID: "P-2", at: later)
        #expect(before == "P-1")
        #expect(entry.patientID == "P-2" && entry.boundAt == later)
        #expect(try DeviceRegistry(stateDir: dir.path).patient(of: "ble-c0ffee000001") == "P-2")
        #expect(throws: RegistryError.unknownDevice("nope")) { try r.assign(deviceID: "nope", patientID: "P-3", at: later) }
    }

    @Test func removeDischargesAndAnUnknownDeviceIsAnError() throws {
        let dir = try TempDir()
        let r = try DeviceRegistry(stateDir: dir.path)
        try r.add(oximeter())
        #expect(try r.remove(deviceID: "ble-c0ffee000001").patientID == "P-1")
        #expect(try DeviceRegistry(stateDir: dir.path).list().isEmpty)
        #expect(throws: RegistryError.unknownDevice("ble-c0ffee000001")) { try r.remove(deviceID: "ble-c0ffee000001") }
    }

    @Test func aTornTmpFileFromACrashIsIgnored() throws {
        let dir = try TempDir()
        try DeviceRegistry(stateDir: dir.path).add(oximeter())
        // A crash between writing registry.json.tmp and the rename leaves a partial tmp file.
        try dir.write("registry.json.tmp", #"{"schema":"iomt-registry/1","devices":[{"id":"ble-"#)
        let r = try DeviceRegistry(stateDir: dir.path)
        #expect(r.list() == [oximeter()])
        #expect(r.recoveredFromCorruption == nil)
        // And the next write replaces it.
        _ = try r.assign(deviceID: "ble-c0ffee000001", patientID: "P-9", at: FixedClock().now())
        #expect(try DeviceRegistry(stateDir: dir.path).patient(of: "ble-c0ffee000001") == "P-9")
    }

    @Test func aCorruptFileIsMovedAsideWithAClearErrorNotSilentlyReset() throws {
        let dir = try TempDir()
        try dir.write("registry.json", "{\"schema\":\"iomt-registry/1\",\"devices\":[{\"id\":")
        let r = try DeviceRegistry(stateDir: dir.path, clock: FixedClock())
        let problem = try #require(r.recoveredFromCorruption)
        guard case let .corrupt(path, movedTo, _) = problem else {
            Issue.record("unexpected \(problem)")
            return
        }
        #expect(path == dir.file("registry.json"))
        #expect(movedTo.hasPrefix(dir.file("registry.json.corrupt-")))
        #expect(dir.read(String(movedTo.dropFirst(dir.path.count + 1)))?.contains("iomt-registry/1") == true)
        #expect(problem.description.contains("moved to"))
        #expect(r.list().isEmpty)
    }

    @Test func anEntryMissingAFieldIsCorruptionNamingTheField() throws {
        let dir = try TempDir()
        try dir.write("registry.json", #"{"schema":"iomt-registry/1","devices":[{"id":"x","transport":"ble","profile":"p","bound_at":"2026-01-01T00:00:00.000Z"}]}"#)
        let r = try DeviceRegistry(stateDir: dir.path)
        #expect(r.recoveredFromCorruption?.description.contains("patient_id") == true)
    }

    @Test func patientIDsWithControlCharactersOrWildcardsAreRefused() throws {
        let dir = try TempDir()
        let r = try DeviceRegistry(stateDir: dir.path)
        try r.add(oximeter())
        for bad in ["", "P/1", "P+1", "P#1", "P\n1", String(repeating: "p", count: 65)] {
            #expect(throws: RegistryError.self) { try r.assign(deviceID: "ble-c0ffee000001", patientID: bad, at: FixedClock().now()) }
        }
    }
}

@Suite struct AuditLogTests {
    @Test func eachEventIsOneFsyncedJSONLineInA0600File() throws {
        let dir = try TempDir()
        let log = AuditLog(stateDir: dir.path, gatewayID: "hub-1", clock: FixedClock())
        let actor = AuditActor(uid: 1000, user: "nurse", pid: 42, via: "socket")
        let a = log.event(.assign, deviceID: "ox-1", patientBefore: "P-1", patientAfter: "P-2", actor: actor)
        let b = log.event(.discharge, deviceID: "ox-1", patientBefore: "P-2", patientAfter: nil, actor: actor,
                          outcome: "refused", detail: "3 reading(s) still buffered")
        try log.append(a)
        try log.append(b)
        #expect(mode(log.path) == 0o600)
        let text = try #require(dir.read("audit.jsonl"))
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        #expect(text.hasSuffix("\n"))
        let first = try JSONValue.parse(String(lines[0]))
        #expect(first["schema"]?.stringValue == "iomt-audit/1")
        #expect(first["at"]?.stringValue == FixedClock().now().rfc3339)
        #expect(first["action"]?.stringValue == "assign")
        #expect(first["patient"]?["before"]?.stringValue == "P-1")
        #expect(first["patient"]?["after"]?.stringValue == "P-2")
        #expect(first["actor"]?["uid"]?.intValue == 1000)
        #expect(first["actor"]?["user"]?.stringValue == "nurse")
        #expect(first["outcome"]?.stringValue == "ok")
        let (events, bad) = try log.read()
        #expect(events == [a, b])
        #expect(bad.isEmpty)
        #expect(a.id != b.id)
    }

    @Test func unreadableLinesAreReportedByNumber() throws {
        let dir = try TempDir()
        let log = AuditLog(stateDir: dir.path, gatewayID: "hub-1")
        try log.append(log.event(.assign, deviceID: "d", patientBefore: nil, patientAfter: "P", actor: .local()))
        let fd = open(log.path, O_WRONLY | O_APPEND)
        _ = Array("{torn\n".utf8).withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        close(fd)
        let (events, bad) = try log.read()
        #expect(events.count == 1)
        #expect(bad == [2])
    }

    @Test func theLocalActorIsThisProcessUser() {
        let me = AuditActor.local()
        #expect(me.uid == getuid())
        #expect(me.pid == getpid())
        #expect(me.via == "local")
    }
}

@Suite struct JSONReaderTests {
    @Test func valuesRoundTripThroughTheProjectWriter() throws {
        let v = JSONValue.obj(["s": .string("a\"b\\c\n\u{1}é😀"), "i": .int(-42), "d": .double(2.5), "b": .bool(false),
                               "n": .null, "a": .array([.int(1), .obj([:])])])
        #expect(try JSONValue.parse(v.bytes) == v)
    }

    @Test func strictnessRefusesWhatRFC8259Refuses() {
        for bad in ["01", "1.", "-", "[1,]", "{\"a\":1,}", "'a'", "\"\\x\"", "\"\u{1}\"", "nul", "1 2", "\"\\ud800\"", "NaN", "{\"a\" 1}"] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONValue.parse(bad) }
        }
    }

    @Test func surrogatePairsAndEscapesDecode() throws {
        #expect(try JSONValue.parse(#""\ud83d\ude00\u00e9\/""#) == .string("😀é/"))
    }

    @Test func truncatedInputNamesWhereItStopped() {
        do {
            _ = try JSONValue.parse(#"{"a":[1,2"#)
            Issue.record("accepted")
        } catch {
            #expect(error.message.contains("end of input"))
            #expect(error.offset == 9)
        }
    }
}
