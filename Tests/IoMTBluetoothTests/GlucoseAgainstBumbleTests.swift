import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTTestSupport
import Testing

/// The glucose RACP download of `BluetoothService` against Bumble's simulated glucose meter
/// (scripts/ble/virtual_world.py, kind `glucose-meter`: record i has sequence i+1, 90 + 7i mg/dL,
/// base time 2026-01-01 08:00 + i hours, -5 min offset on every 3rd, a context on even i).
@Suite(.serialized, .timeLimit(.minutes(2))) struct GlucoseAgainstBumbleTests {
    static let meterAddress = "F0:F1:F2:F3:F4:11"

    func meter(_ name: String = "g1", address: String = meterAddress, _ options: [String: BumbleWorld.Option] = [:]) -> BumbleWorld.Peripheral {
        .init(kind: .glucoseMeter, name: name, address: address, options: ["serial": "GL-1"].merging(options) { _, b in b })
    }

    func service(_ world: BumbleWorld, _ dir: TempDir, devices: [BLEDevice], cursors: [String: String] = [:],
                 sink: CollectingSink) -> BluetoothService {
        var options = BluetoothServiceOptions(transport: .tcp(host: "127.0.0.1", port: world.hostPorts[0]), stateDirectory: dir.path)
        options.reconnectMinMs = 200
        options.reconnectMaxMs = 1_000
        options.cursors = cursors
        return BluetoothService(options: options, devices: devices, sink: sink, clock: SystemWallClock(), logger: testLogger("glucose"))
    }

    func glucoseDevice(_ id: String = "gl-1", _ address: String = meterAddress) -> BLEDevice {
        BLEDevice(id: id, address: LEAddress(BDAddress(address)!, type: .randomDevice), profile: "glucose", patientID: "P-9")
    }

    func racpRequests(_ world: BumbleWorld, _ name: String = "g1") async throws -> [String] {
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        return status["peripherals"]?[name]?["racp_requests"]?.array?.compactMap(\.string) ?? []
    }

    @Test func downloadsAllRecordsWithContextThenOnlyTheNewOnesAfterAReconnect() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [meter()]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        let service = service(world, dir, devices: [glucoseDevice()], sink: sink)
        let running = Task { await service.run() }
        defer { running.cancel() }

        let first = try #require(await service.glucoseDownloads(of: "gl-1", atLeast: 1, timeout: .seconds(30)))
        #expect(first.lastDownloadRecords == 5)
        #expect(first.recordsWithContext == 3)  // records 1, 3, 5
        #expect(first.contextsMissing == 0)
        let readings = sink.readings.value
        #expect(readings.map(\.sourceCursor) == (1...5).map { "glucose/1 \($0)" })
        let r = try #require(readings.first)
        #expect(r.device.profile == "glucose")
        #expect(r.device.serialNumber == "GL-1")
        #expect(r.patientID == "P-9")
        #expect(r.observations.first?.code == MDCCode(rawValue: 160184))  // capillary whole blood
        #expect(r.observations.first?.unit == "mg/dL")
        #expect(readings.map { $0.observations.first?.value } == [90, 97, 104, 111, 118].map { .numeric($0) })
        // Device time = base time + offset (record 2: 09:00 - 5 min), the meter's clock not set by us.
        #expect(readings[0].measuredAt == Timestamp(millisecondsSinceEpoch: 1_767_254_400_000))
        #expect(readings[1].measuredAt == Timestamp(millisecondsSinceEpoch: 1_767_254_400_000 + 55 * 60_000))
        #expect(r.timeQuality == .deviceUnsynchronized)
        #expect(try await racpRequests(world) == ["0101"])

        // Away: two measurements taken while disconnected, then back in range.
        _ = try await world.commandJSON(#"{"cmd":"stop-advertising","peripheral":"g1"}"#)
        _ = try await world.commandJSON(#"{"cmd":"disconnect","peripheral":"g1"}"#)
        #expect(try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)["sequence"]?.int == 6)
        #expect(try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)["sequence"]?.int == 7)
        _ = try await world.commandJSON(#"{"cmd":"start-advertising","peripheral":"g1"}"#)
        let second = try #require(await service.glucoseDownloads(of: "gl-1", atLeast: 2, timeout: .seconds(30)))
        #expect(second.lastDownloadRecords == 2)
        #expect(second.recordsWithContext == 4)  // record 7 too
        #expect(second.duplicatesDropped == 0)
        #expect(try await racpRequests(world) == ["0101", "0103010600"])  // >= 6, the cursor at work
        #expect(sink.readings.value.map(\.sourceCursor) == (1...7).map { "glucose/1 \($0)" })

        // Live: a measurement taken while connected is notified and delivered without a request.
        #expect(try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)["sequence"]?.int == 8)
        #expect(await sink.wait("gl-1", atLeast: 8))
        #expect(sink.readings.value.last?.sourceCursor == "glucose/1 8")
        #expect(try await racpRequests(world).count == 2)
        #expect(sink.count("gl-1") == 8)
    }

    @Test func aServiceStartedWithTheStoredCursorFetchesNothingOldAndNoRecordsFoundIsNotAnError() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [meter()]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        // The cursor the buffer stored with record 5 (what `buffer.loadCursors()` returns).
        let service = service(world, dir, devices: [glucoseDevice()], cursors: ["gl-1": "glucose/1 5"], sink: sink)
        let running = Task { await service.run() }
        defer { running.cancel() }
        let stats = try #require(await service.glucoseDownloads(of: "gl-1", atLeast: 1, timeout: .seconds(30)))
        #expect(stats.lastDownloadRecords == 0)
        #expect(stats.lastFailure == nil)
        #expect(try await racpRequests(world) == ["0103010600"])
        #expect(sink.count("gl-1") == 0)
        // Still connected and live after "no records found".
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["g1"]?["connected"]?.bool == true)
        _ = try await world.commandJSON(#"{"cmd":"add-record","peripheral":"g1"}"#)
        #expect(await sink.wait("gl-1", atLeast: 1))
        #expect(sink.readings.value.map(\.sourceCursor) == ["glucose/1 6"])
    }

    @Test func aMeterBusyWithAProcedureIsAbortedAndAskedAgainWithTheOldAndTheNewErrorCodes() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            meter("old", address: "F0:F1:F2:F3:F4:12", ["att_errors": "gls-1.0", "busy_first": 1, "records": 3]),
            meter("new", address: "F0:F1:F2:F3:F4:13", ["busy_first": 1, "records": 3, "units": "mmol/L"]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        let service = service(world, dir, devices: [glucoseDevice("gl-old", "F0:F1:F2:F3:F4:12"), glucoseDevice("gl-new", "F0:F1:F2:F3:F4:13")],
                              sink: sink)
        let running = Task { await service.run() }
        defer { running.cancel() }
        for (id, name) in [("gl-old", "old"), ("gl-new", "new")] {
            let stats = try #require(await service.glucoseDownloads(of: id, atLeast: 1, timeout: .seconds(30)), "\(id)")
            #expect(stats.lastDownloadRecords == 3)
            // Refused (0x80 or 0xFE), aborted, asked again.
            #expect(try await racpRequests(world, name) == ["0101", "0300", "0101"])
            #expect(sink.count(id) == 3)
        }
        let mmol = sink.readings.value.filter { $0.device.id == "gl-new" }
        #expect(mmol.first?.observations.first?.unit == "mmol/L")
        #expect(mmol.map { $0.observations.first?.value } == [5.0, 5.4, 5.8].map { .numeric($0) })
    }

    @Test func aMeterRequiringEncryptionDownloadsOverTheEncryptedLinkOncePaired() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [meter("g1", ["secure": true])]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        let service = service(world, dir, devices: [], sink: sink)
        let running = Task { await service.run() }
        defer { running.cancel() }
        let paired = try await service.pair(address: BDAddress(Self.meterAddress)!, profile: nil, delegate: .justWorks, timeoutSeconds: 10)
        #expect(paired.profile == "glucose")  // found by its advertised 0x1808
        await service.setDevices([glucoseDevice()])
        let stats = try #require(await service.glucoseDownloads(of: "gl-1", atLeast: 1, timeout: .seconds(30)))
        #expect(stats.lastDownloadRecords == 5)
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["g1"]?["encrypted"]?.bool == true)
    }
}
