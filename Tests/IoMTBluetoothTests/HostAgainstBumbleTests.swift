#if canImport(Glibc)
import Glibc
#endif
import IoMTATT
import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import IoMTTestSupport
import Logging
import Testing

/// Collects what the Bluetooth service hands the gateway.
final class CollectingSink: ReadingSink, Sendable {
    let readings = Watched<[DeviceReading]>([])
    func submit(_ reading: DeviceReading) async -> IngestOutcome {
        readings.update { $0.append(reading) }
        return .accepted(id: ReadingID(high: 0, low: 0), sequence: 1)
    }
    func count(_ device: String) -> Int { readings.value.filter { $0.device.id == device }.count }
    func wait(_ device: String, atLeast n: Int, timeout: Duration = .seconds(20)) async -> Bool {
        await readings.wait(timeout: timeout) { $0.filter { $0.device.id == device }.count >= n }
    }
}

func testLogger(_ label: String) -> Logger {
    var l = Logger(label: label)
    l.logLevel = .warning
    return l
}

func randomStatic() -> BDAddress {
    var b = secureRandomBytes(6)
    b[5] |= 0xC0
    return BDAddress(wireBytes: b)!
}

/// Our host against Bumble's virtual controllers and peripherals (real code no one here wrote).
/// Each test starts its own world (fresh controllers: reference quirk 2) and stops it.
@Suite(.serialized, .timeLimit(.minutes(2))) struct HostAgainstBumbleTests {
    @Test func scansConnectsDiscoversAndReceivesHeartRateNotifications() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["serial": "HR-0001", "interval_ms": 50]),
        ]))
        defer { world.kill() }
        let transport = try openHCITransport(.tcp(host: "127.0.0.1", port: world.hostPorts[0]))
        let host = BluetoothHost(transport: transport, options: .init(ownAddress: randomStatic()), logger: testLogger("host"))
        try await host.start()
        let adverts = await host.advertisements()
        try await host.setScanning(true)
        var seen: BluetoothHost.Advertisement?
        for await ad in adverts where ad.address.address == BDAddress("F0:F1:F2:F3:F4:01") {
            seen = ad
            break
        }
        let ad = try #require(seen)
        #expect(ad.data.serviceUUIDs.contains(BluetoothUUID(0x180D)))
        #expect(ad.address.type == .randomDevice)
        try await host.setScanning(false)

        let link = try await host.connect(to: ad.address, timeoutMs: 5_000)
        let mtu = try await link.gattRequest(.exchangeMTU)
        guard case .mtu(let m) = mtu else { Issue.record("no MTU: \(mtu)"); return }
        #expect(m >= 23)
        guard case .services(let services) = try await link.gattRequest(.discoverPrimaryServices) else { Issue.record("no services"); return }
        let hrs = try #require(services.first { $0.uuid == BluetoothUUID(0x180D) })
        guard case .characteristics(let chars) = try await link.gattRequest(.discoverCharacteristics(start: hrs.start, end: hrs.end)) else {
            Issue.record("no characteristics"); return
        }
        let measurement = try #require(chars.first { $0.uuid == BluetoothUUID(0x2A37) })
        #expect(measurement.properties.contains(.notify))
        guard case .descriptors(let ds) = try await link.gattRequest(.discoverDescriptors(start: measurement.valueHandle + 1, end: hrs.end)) else {
            Issue.record("no descriptors"); return
        }
        let cccd = try #require(ds.first { $0.uuid == BluetoothUUID(0x2902) })
        _ = try await link.gattRequest(.subscribe(cccdHandle: cccd.handle, indications: false))
        var values: [[UInt8]] = []
        for await event in link.events {
            if case let .notification(handle, value) = event, handle == measurement.valueHandle {
                values.append(value)
                if values.count == 5 { break }
            }
        }
        #expect(values.count == 5)
        // Flags + uint8 bpm 60..99 (scripts/ble/README.md).
        #expect(values.allSatisfy { $0.count >= 2 && (60...99).contains($0[1]) })
        await link.disconnect()
        for await event in link.events { if case .disconnected = event { break } }
        #expect(await link.isConnected == false)
        await host.shutdown()
    }

    @Test func serviceTurnsNotificationsIntoReadingsForTwoPeripheralsAndReconnectsADropper() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["serial": "HR-0001", "interval_ms": 50]),
            .init(kind: .dropper, name: "drop", address: "F0:F1:F2:F3:F4:03", options: ["drop_after": 4, "away_ms": 500, "interval_ms": 50]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        var options = BluetoothServiceOptions(transport: .tcp(host: "127.0.0.1", port: world.hostPorts[0]), stateDirectory: dir.path)
        options.reconnectMinMs = 200
        options.reconnectMaxMs = 1_000
        let service = BluetoothService(options: options, devices: [
            BLEDevice(id: "hr-1", address: LEAddress(BDAddress("F0:F1:F2:F3:F4:01")!, type: .randomDevice), profile: "heart-rate", patientID: "P-1"),
            BLEDevice(id: "drop-1", address: LEAddress(BDAddress("F0:F1:F2:F3:F4:03")!, type: .randomDevice), profile: "heart-rate", patientID: "P-2"),
        ], sink: sink, clock: SystemWallClock(), logger: testLogger("svc"))
        let running = Task { await service.run() }
        defer { running.cancel() }
        #expect(await sink.wait("hr-1", atLeast: 5))
        // The dropper drops after 4 notifications and comes back: more than 4 means a reconnect.
        #expect(await sink.wait("drop-1", atLeast: 9, timeout: .seconds(30)))
        let r = try #require(sink.readings.value.first { $0.device.id == "hr-1" })
        #expect(r.patientID == "P-1")
        #expect(r.device.transport == .ble)
        #expect(r.device.profile == "heart-rate")
        #expect(r.device.serialNumber == "HR-0001")
        #expect(r.timeQuality == .gatewayReceipt)
        #expect(r.observations.first?.code == MDCCode(rawValue: 147842))
        let statuses = await service.statuses()
        #expect(statuses.map(\.deviceID) == ["drop-1", "hr-1"])
        // Battery Service read on connection (the world's heart-rate default is 87 %).
        #expect(await service.battery(of: "hr-1") == 87)
    }

    @Test func pairsWithSecureConnectionsThenReEncryptsWithTheStoredBondAfterReconnect() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02", options: ["serial": "TH-1", "interval_ms": 100]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        var options = BluetoothServiceOptions(transport: .tcp(host: "127.0.0.1", port: world.hostPorts[0]), stateDirectory: dir.path)
        options.reconnectMinMs = 200
        let address = BDAddress("F0:F1:F2:F3:F4:02")!
        let service = BluetoothService(options: options, devices: [], sink: sink, clock: SystemWallClock(), logger: testLogger("svc"))
        let running = Task { await service.run() }
        defer { running.cancel() }
        let paired = try await service.pair(address: address, profile: nil, delegate: .justWorks, timeoutSeconds: 10)
        #expect(paired.profile == "thermometer")
        #expect(paired.secureConnections)
        #expect(paired.identityInfo.serialNumber == "TH-1")
        // The bond is on disk, owner-only.
        let bond = try #require(try BondStore(stateDirectory: dir.path).bond(for: address))
        #expect(bond.ltk.count == 16 && bond.secureConnections)
        var st = stat()
        #expect(stat(BondStore(stateDirectory: dir.path).directory + "/F0F1F2F3F402.bond", &st) == 0)
        #expect(st.st_mode & 0o777 == 0o600)

        // Now allow-listed: the session re-encrypts with the stored key and subscribes (the CCCD
        // write needs encryption), indications become temperature readings.
        await service.setDevices([BLEDevice(id: "t-1", address: paired.identity, profile: "thermometer", patientID: "P-3")])
        #expect(await sink.wait("t-1", atLeast: 3))
        let r = try #require(sink.readings.value.first)
        #expect(r.observations.first?.code == MDCCode(rawValue: 150364))
        #expect(r.observations.first?.unit == "Cel")
        // Drop the link from the peripheral's side: the session reconnects and re-encrypts.
        let before = sink.count("t-1")
        _ = try await world.commandJSON(#"{"cmd":"disconnect","peripheral":"t1","reason":8}"#)
        #expect(await sink.wait("t-1", atLeast: before + 3))
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["t1"]?["encrypted"]?.bool == true)
    }

    @Test func aPeripheralSendingGarbageCostsNothingButItsBadPackets() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .garbage, name: "g1", address: "F0:F1:F2:F3:F4:05", options: ["interval_ms": 50]),
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["interval_ms": 50]),
        ]))
        defer { world.kill() }
        let dir = try TempDir()
        let sink = CollectingSink()
        let options = BluetoothServiceOptions(transport: .tcp(host: "127.0.0.1", port: world.hostPorts[0]), stateDirectory: dir.path)
        let service = BluetoothService(options: options, devices: [
            BLEDevice(id: "g-1", address: LEAddress(BDAddress("F0:F1:F2:F3:F4:05")!, type: .randomDevice), profile: "heart-rate", patientID: "P-4"),
            BLEDevice(id: "hr-1", address: LEAddress(BDAddress("F0:F1:F2:F3:F4:01")!, type: .randomDevice), profile: "heart-rate", patientID: "P-1"),
        ], sink: sink, clock: SystemWallClock(), logger: testLogger("svc"))
        let running = Task { await service.run() }
        defer { running.cancel() }
        // Valid notifications after the garbage arrive as readings, on the same link.
        #expect(await sink.wait("g-1", atLeast: 10))
        #expect(await sink.wait("hr-1", atLeast: 10))
        let status = try await world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["g1"]?["connected"]?.bool == true)
    }
}

extension HostAgainstBumbleTests {
    /// The UART transport (termios, H4 over a serial line) against a Bumble controller served on
    /// a pseudo-terminal: the same host, scanning, connecting and receiving notifications. (A
    /// real UART controller, e.g. an nRF52 with Zephyr's HCI UART firmware, is untested.)
    @Test func theUARTTransportOverAPseudoTerminalCarriesAWholeSession() async throws {
        let world = try await BumbleWorld.start(spec: .init(hosts: 0, uartHosts: 1, peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01", options: ["interval_ms": 50]),
        ]))
        defer { world.kill() }
        let spec = try HCITransportSpec(parsing: "uart:\(world.uartPaths[0])?baud=1000000&flow=none")
        let dir = try TempDir()
        let sink = CollectingSink()
        let options = BluetoothServiceOptions(transport: spec, snoopPath: dir.file("uart.btsnoop"), stateDirectory: dir.path)
        let service = BluetoothService(options: options, devices: [
            BLEDevice(id: "hr-1", address: LEAddress(BDAddress("F0:F1:F2:F3:F4:01")!, type: .randomDevice), profile: "heart-rate", patientID: "P-1"),
        ], sink: sink, clock: SystemWallClock(), logger: testLogger("svc"))
        let running = Task { await service.run() }
        defer { running.cancel() }
        #expect(await sink.wait("hr-1", atLeast: 10))
    }
}
