#if canImport(Glibc)
import Glibc
#endif
import IoMTBluetooth
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import IoMTSMP
import IoMTTestSupport
import Testing

/// Pairing methods, failures, privacy and connection deadlines against Bumble peripherals.
@Suite(.serialized, .timeLimit(.minutes(2))) struct PairingAgainstBumbleTests {
    /// A world with one secure thermometer and a service over it (not yet allow-listed).
    struct Rig {
        let world: BumbleWorld
        let dir: TempDir
        let sink = CollectingSink()
        let service: BluetoothService
        let running: Task<Void, Never>

        init(_ options: [String: BumbleWorld.Option], extra: [BumbleWorld.Peripheral] = []) async throws {
            world = try await BumbleWorld.start(spec: .init(peripherals: [
                .init(kind: .thermometerSecure, name: "t1", address: "F0:F1:F2:F3:F4:02", options: options.merging(["interval_ms": 100]) { a, _ in a }),
            ] + extra))
            dir = try TempDir()
            var o = BluetoothServiceOptions(transport: .tcp(host: "127.0.0.1", port: world.hostPorts[0]), stateDirectory: dir.path)
            o.reconnectMinMs = 200
            o.connectTimeoutMs = 3_000
            service = BluetoothService(options: o, devices: [], sink: sink, clock: SystemWallClock(), logger: testLogger("svc"))
            let s = service
            running = Task { await s.run() }
        }

        func stop() {
            running.cancel()
            world.kill()
        }
    }

    static let t1 = BDAddress("F0:F1:F2:F3:F4:02")!

    @Test func passkeyEntryWithTheRightPasskeyBondsAuthenticated() async throws {
        let rig = try await Rig(["io_capability": "display-only", "passkey": 654321])
        defer { rig.stop() }
        let asked = Watched(0)
        let delegate = PairingDelegate(ioCapability: .keyboardDisplay, passkey: {
            asked.update { $0 += 1 }
            return 654321
        })
        let paired = try await rig.service.pair(address: Self.t1, profile: "thermometer", delegate: delegate, timeoutSeconds: 10)
        #expect(asked.value == 1)
        #expect(paired.secureConnections && paired.authenticated)
        let bond = try #require(try BondStore(stateDirectory: rig.dir.path).bond(for: Self.t1))
        #expect(bond.authenticated)
        await rig.service.setDevices([BLEDevice(id: "t-1", address: paired.identity, profile: "thermometer", patientID: "P-1")])
        #expect(await rig.sink.wait("t-1", atLeast: 2))
    }

    @Test func aWrongPasskeyFailsWithTheReasonAndStoresNothing() async throws {
        let rig = try await Rig(["io_capability": "display-only", "passkey": 654321])
        defer { rig.stop() }
        let delegate = PairingDelegate(ioCapability: .keyboardDisplay, passkey: { 111111 })
        do {
            _ = try await rig.service.pair(address: Self.t1, profile: "thermometer", delegate: delegate, timeoutSeconds: 10)
            Issue.record("pairing with a wrong passkey succeeded")
        } catch {
            #expect("\(error)".contains("confirm value failed"), "\(error)")
        }
        #expect(try BondStore(stateDirectory: rig.dir.path).bond(for: Self.t1) == nil)
    }

    @Test func numericComparisonShowsTheSameNumberOnBothSides() async throws {
        let rig = try await Rig(["io_capability": "display-yes-no"])
        defer { rig.stop() }
        let shown = Watched<UInt32?>(nil)
        let delegate = PairingDelegate(ioCapability: .displayYesNo, confirm: { n in
            shown.update { $0 = n }
            return true
        })
        let paired = try await rig.service.pair(address: Self.t1, profile: nil, delegate: delegate, timeoutSeconds: 10)
        #expect(paired.authenticated && paired.secureConnections)
        #expect(shown.value.map { $0 < 1_000_000 } == true)
    }

    @Test func legacyPairingFallbackBondsAndReEncrypts() async throws {
        let rig = try await Rig(["legacy": true])
        defer { rig.stop() }
        let paired = try await rig.service.pair(address: Self.t1, profile: nil, delegate: .justWorks, timeoutSeconds: 10)
        #expect(!paired.secureConnections)
        let bond = try #require(try BondStore(stateDirectory: rig.dir.path).bond(for: Self.t1))
        #expect(!bond.secureConnections && bond.ltk.count == 16)
        await rig.service.setDevices([BLEDevice(id: "t-1", address: paired.identity, profile: "thermometer", patientID: "P-1")])
        #expect(await rig.sink.wait("t-1", atLeast: 2))
    }

    @Test func aBondedWearableBehindAResolvablePrivateAddressIsRecognisedByItsIRK() async throws {
        let rig = try await Rig(["privacy": true])
        defer { rig.stop() }
        let advertised = try #require(BDAddress(rig.world.address(of: "t1")))
        #expect(advertised.randomSubtype == .resolvablePrivate)
        let paired = try await rig.service.pair(address: advertised, profile: nil, delegate: .justWorks, timeoutSeconds: 10)
        // The identity address came with the IRK during key distribution.
        #expect(paired.identity.address == Self.t1)
        let bond = try #require(try BondStore(stateDirectory: rig.dir.path).bond(for: Self.t1))
        #expect(bond.irk?.count == 16)
        await rig.service.setDevices([BLEDevice(id: "t-1", address: paired.identity, profile: "thermometer", patientID: "P-1")])
        #expect(await rig.sink.wait("t-1", atLeast: 2))
        // A new private address: the session still finds, connects and re-encrypts it.
        let rotated = try await rig.world.commandJSON(#"{"cmd":"rotate-address","peripheral":"t1"}"#)
        let newAddress = try #require(rotated["address"]?.string.flatMap(BDAddress.init))
        #expect(newAddress != advertised && newAddress.randomSubtype == .resolvablePrivate)
        #expect(bond.matches(LEAddress(newAddress, type: .randomDevice)))
        let before = rig.sink.count("t-1")
        _ = try await rig.world.commandJSON(#"{"cmd":"disconnect","peripheral":"t1","reason":8}"#)
        #expect(await rig.sink.wait("t-1", atLeast: before + 3))
        let status = try await rig.world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["t1"]?["encrypted"]?.bool == true)
    }

    @Test func onlyAllowListedDevicesAreConnectedOthersAreSeenInScansOnly() async throws {
        let rig = try await Rig([:], extra: [
            .init(kind: .heartRate, name: "stranger", address: "F0:F1:F2:F3:F4:09"),
        ])
        defer { rig.stop() }
        let rows = Watched<[ScanSighting]>([])
        try await rig.service.scan(seconds: 2) { row in rows.update { $0.append(row) } }
        let stranger = try #require(rows.value.first { $0.address.address == BDAddress("F0:F1:F2:F3:F4:09") })
        #expect(stranger.profile == "heart-rate" && !stranger.paired)
        #expect(rows.value.contains { $0.address.address == Self.t1 && $0.profile == "thermometer" })
        let status = try await rig.world.commandJSON(#"{"cmd":"status"}"#)
        #expect(status["peripherals"]?["stranger"]?["connected"]?.bool == false)
        #expect(status["peripherals"]?["t1"]?["connected"]?.bool == false)
    }

    @Test func aConnectionAttemptToAnAbsentDeviceTimesOutAndIsCancelled() async throws {
        let world = try await BumbleWorld.start(spec: .init(peripherals: [
            .init(kind: .heartRate, name: "hr1", address: "F0:F1:F2:F3:F4:01"),
        ]))
        defer { world.kill() }
        let transport = try openHCITransport(.tcp(host: "127.0.0.1", port: world.hostPorts[0]))
        let host = BluetoothHost(transport: transport, options: .init(ownAddress: randomStatic()), logger: testLogger("host"))
        try await host.start()
        let absent = LEAddress(BDAddress("F0:F1:F2:F3:F4:0A")!, type: .randomDevice)
        do {
            _ = try await host.connect(to: absent, timeoutMs: 400)
            Issue.record("connected to an absent device")
        } catch {
            #expect(error == .connectTimedOut(absent, milliseconds: 400))
        }
        // The cancelled attempt does not block the next one.
        let link = try await host.connect(to: LEAddress(BDAddress("F0:F1:F2:F3:F4:01")!, type: .randomDevice), timeoutMs: 5_000)
        #expect(await link.isConnected)
        await host.shutdown()
    }
}
