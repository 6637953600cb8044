import Crypto
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import IoMTATT
import IoMTSMP
import IoMTHealthProfiles
import Logging

/// A wearable the agent may connect to (the allow-list): only these are ever connected;
/// every other device is seen in scans only.
public struct BLEDevice: Sendable, Hashable {
    public var id: String
    /// The address it was paired or configured with (its identity address when it has one).
    public var address: LEAddress
    public var profile: String
    public var patientID: String
    public init(id: String, address: LEAddress, profile: String, patientID: String) {
        self.id = id
        self.address = address
        self.profile = profile
        self.patientID = patientID
    }

    /// The device id used when none is configured: `ble-` and the identity address in hex.
    public static func defaultID(_ address: BDAddress) -> String {
        BluetoothDeviceID.make(littleEndianAddress: address.bytes)
    }
}

public struct BluetoothServiceOptions: Sendable {
    public var transport: HCITransportSpec
    public var snoopPath: String?
    public var stateDirectory: String
    public var connectTimeoutMs: UInt64 = 10_000
    public var reconnectMinMs: UInt64 = 1_000
    public var reconnectMaxMs: UInt64 = 30_000
    /// Seals the bond files (AES-256-GCM) when set (issue 8: `security.key_file`).
    public var bondKey: SymmetricKey?
    /// The per-device source cursors the buffer stored with the readings (`buffer.loadCursors()`):
    /// a glucose meter's download resumes after the last record made durable.
    public var cursors: [String: String] = [:]
    /// Broadcast-only sensors read from advertisements (``Broadcasters``).
    public var broadcasters: [BLEBroadcaster] = []
    public init(transport: HCITransportSpec, snoopPath: String? = nil, stateDirectory: String) {
        self.transport = transport
        self.snoopPath = snoopPath
        self.stateDirectory = stateDirectory
    }
}

/// A row of the live scan table.
public struct ScanSighting: Sendable, Hashable {
    public var address: LEAddress
    public var name: String?
    public var rssi: Int8?
    public var services: [BluetoothUUID]
    /// The profile that would serve it, if any.
    public var profile: String?
    public var paired: Bool
}

/// What pairing produced, for the registry.
public struct PairingOutcome: Sendable, Hashable {
    public var identity: LEAddress
    /// The advertised local name.
    public var name: String?
    public var profile: String
    public var identityInfo: DeviceIdentity
    public var secureConnections: Bool
    public var authenticated: Bool
}

public struct BluetoothError: Error, Sendable, CustomStringConvertible {
    public enum Kind: Sendable { case notFound, failed, unavailable }
    public var kind: Kind
    public var description: String
    public init(_ d: String, kind: Kind = .failed) { description = d; self.kind = kind }
}

/// The Bluetooth side of the agent: owns the controller through a `BluetoothHost`, keeps one
/// session per allow-listed wearable (connect when it advertises, re-encrypt with its bond,
/// subscribe to its measurements, decode, hand readings to the sink, reconnect with backoff),
/// and serves scan and pair for the CLI. A controller that goes away is reopened with backoff.
public actor BluetoothService {
    public let options: BluetoothServiceOptions
    let sink: any ReadingSink
    let clock: any WallClock
    let logger: Logger
    let bonds: BondStore

    private var devices: [String: BLEDevice]
    private var host: BluetoothHost?
    private var hostWaiters: [(Int, CheckedContinuation<BluetoothHost, any Error>)] = []
    private var nextWaiterID = 0
    private var sessions: [String: Task<Void, Never>] = [:]
    private var sightings: [String: AsyncStream<BluetoothHost.Advertisement>.Continuation] = [:]
    private var linkState: [String: String] = [:]
    private var connectGate = false
    private var gateWaiters: [CheckedContinuation<Void, Never>] = []
    private var pairing: Set<BDAddress> = []
    /// Device information read on the first connection of each device (serial number etc.).
    private var identities: [String: DeviceIdentity] = [:]
    public private(set) var decodeErrors = 0
    private var lastReadingAt: [String: Timestamp] = [:]
    /// What is known of each device's clock on its current link (Current Time Service).
    private var clockStates: [String: DeviceClockState] = [:]
    /// The latest source cursor per device: loaded from the buffer, moved as readings are accepted.
    var cursors: [String: String]
    /// Glucose download stats and their waiters (GlucoseDownload.swift).
    var glucose = GlucoseBook()
    private var readingWaiters: [(id: Int, device: String, continuation: CheckedContinuation<Timestamp?, Never>)] = []

    let board: StatusBoard
    let broadcasters: Broadcasters

    public init(options: BluetoothServiceOptions, devices: [BLEDevice], sink: any ReadingSink, clock: any WallClock,
                logger: Logger, board: StatusBoard? = nil) {
        self.board = board ?? StatusBoard([])
        self.options = options
        self.sink = sink
        self.clock = clock
        self.logger = logger
        self.bonds = BondStore(stateDirectory: options.stateDirectory, key: options.bondKey)
        self.devices = Dictionary(devices.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        self.cursors = options.cursors
        self.broadcasters = Broadcasters(options.broadcasters, sink: sink, clock: clock, logger: logger, board: self.board)
    }

    // MARK: - Running

    /// Runs until cancelled: opens the controller, scans, keeps the sessions; reopens the
    /// controller with backoff when it fails.
    public func run() async {
        var backoff: UInt64 = 500
        while !Task.isCancelled {
            do {
                let ownAddress = try loadOrCreateOwnAddress(stateDirectory: options.stateDirectory)
                let transport = try openHCITransport(options.transport, snoopPath: options.snoopPath)
                var hostOptions = BluetoothHost.Options(ownAddress: ownAddress)
                hostOptions.commandTimeoutMs = 2_000
                let h = BluetoothHost(transport: transport, options: hostOptions, logger: logger)
                try await h.start()
                try await h.setScanning(true)
                backoff = 500
                await serve(h)
            } catch {
                logger.error("Bluetooth controller unavailable", metadata: ["transport": "\(options.transport)", "error": "\(error)"])
            }
            host = nil
            for (_, t) in sessions { t.cancel() }
            sessions.removeAll()
            for (_, s) in sightings { s.finish() }
            sightings.removeAll()
            for id in devices.keys { setState(id, "controller unavailable") }
            if Task.isCancelled { break }
            try? await Task.sleep(for: .milliseconds(Int64(backoff)))
            backoff = min(backoff * 2, 30_000)
        }
    }

    /// One controller's lifetime: route advertisements to sessions until the host fails.
    private func serve(_ h: BluetoothHost) async {
        host = h
        for (_, w) in hostWaiters { w.resume(returning: h) }
        hostWaiters.removeAll()
        for device in devices.values { startSession(device, host: h) }
        let adverts = await h.advertisements()
        let late = await h.unsolicitedConnections()
        let lateTask = Task { for await link in late { await self.adoptLate(link) } }
        let broadcast = broadcasters.count > 0 ? await h.advertisements() : nil
        let broadcastTask = Task { [broadcasters] in if let broadcast { await broadcasters.run(broadcast) } }
        defer { lateTask.cancel(); broadcastTask.cancel() }
        await withTaskCancellationHandler {
            for await ad in adverts {
                route(ad)
            }
        } onCancel: {
            Task { await h.shutdown() }
        }
        if let f = await h.failed { logger.warning("Bluetooth host stopped", metadata: ["reason": "\(f)"]) }
        await h.shutdown()
    }

    private func route(_ ad: BluetoothHost.Advertisement) {
        guard ad.connectable else { return }
        for (id, device) in devices where sessions[id] != nil {
            if matches(device, ad.address) { sightings[id]?.yield(ad) }
        }
    }

    private func matches(_ device: BLEDevice, _ address: LEAddress) -> Bool {
        if device.address.address == address.address { return true }
        if let bond = try? bonds.bond(for: device.address.address) { return bond.matches(address) }
        return false
    }

    /// A connection that completed after its attempt had been given up (reference quirk 3):
    /// ended: the session that gave the attempt up reconnects on the next advertisement, in order.
    private func adoptLate(_ link: LELink) async {
        logger.info("late connection completion; disconnecting it (the session reconnects)", metadata: ["peer": "\(link.peer)"])
        await link.disconnect()
    }

    private func startSession(_ device: BLEDevice, host h: BluetoothHost) {
        let (stream, cont) = AsyncStream.makeStream(of: BluetoothHost.Advertisement.self, bufferingPolicy: .bufferingNewest(1))
        sightings[device.id] = cont
        setState(device.id, "waiting for advertisement")
        sessions[device.id] = Task { await self.session(device, host: h, sightings: stream) }
    }

    /// Replaces the allow-list (pairing, assign, discharge). Sessions of removed devices end.
    public func setDevices(_ list: [BLEDevice]) {
        let new = Dictionary(list.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        for (id, t) in sessions where new[id] != devices[id] {
            t.cancel()
            sessions[id] = nil
            sightings[id]?.finish()
            sightings[id] = nil
            setState(id, nil)
        }
        devices = new
        if let h = host {
            for device in new.values where sessions[device.id] == nil { startSession(device, host: h) }
        }
    }

    // MARK: - A device session

    private func session(_ device: BLEDevice, host h: BluetoothHost, sightings: AsyncStream<BluetoothHost.Advertisement>) async {
        var backoff = options.reconnectMinMs
        var notBefore: UInt64 = 0
        for await ad in sightings {
            if Task.isCancelled { break }
            if hostNow() < notBefore || pairing.contains(device.address.address) { continue }
            setState(device.id, "connecting")
            let link: LELink
            do {
                link = try await withConnectGate { try await h.connect(to: ad.address, timeoutMs: self.options.connectTimeoutMs) }
            } catch {
                logger.info("connection attempt failed", metadata: ["device": "\(device.id)", "error": "\(error)"])
                setState(device.id, "waiting for advertisement (last attempt: \(error))")
                notBefore = hostNow() + jittered(backoff)
                backoff = min(backoff * 2, options.reconnectMaxMs)
                continue
            }
            let started = hostNow()
            setState(device.id, "connected")
            let outcome = await runLink(device, link)
            await link.disconnect()
            setState(device.id, "waiting for advertisement (\(outcome))")
            // A link that lived a while resets the backoff: the wearable just went out of range.
            if hostNow() - started > 30_000 { backoff = options.reconnectMinMs }
            notBefore = hostNow() + jittered(backoff)
            backoff = min(backoff * 2, options.reconnectMaxMs)
        }
        setState(device.id, nil)
    }

    private func jittered(_ ms: UInt64) -> UInt64 {
        ms / 2 + UInt64.random(in: 0...max(1, ms / 2))
    }

    private func withConnectGate<T: Sendable>(_ body: @Sendable () async throws -> T) async throws -> T {
        while connectGate {
            await withCheckedContinuation { gateWaiters.append($0) }
        }
        connectGate = true
        defer {
            connectGate = false
            if !gateWaiters.isEmpty { gateWaiters.removeFirst().resume() }
        }
        return try await body()
    }

    /// One connection's life; returns why it ended (for the status line).
    private func runLink(_ device: BLEDevice, _ link: LELink) async -> String {
        guard let profile = BLEProfile.named(device.profile) else {
            logger.error("unknown Bluetooth profile", metadata: ["device": "\(device.id)", "profile": "\(device.profile)"])
            return "unknown profile \(device.profile)"
        }
        do {
            let bond = try bonds.bond(for: device.address.address)
            if let bond {
                try await link.encrypt(ltk: bond.ltk, ediv: bond.ediv, rand: bond.rand)
            }
            _ = try? await link.gattRequest(.exchangeMTU)
            guard case .services(let services) = try await link.gattRequest(.discoverPrimaryServices) else {
                return "unexpected discovery result"
            }
            guard let service = services.first(where: { $0.uuid == BluetoothUUID(profile.service) }) else {
                logger.error("device lacks its profile's service", metadata: ["device": "\(device.id)", "service": "\(BluetoothUUID(profile.service))"])
                return "no \(profile.name) service"
            }
            if identities[device.id] == nil, let info = services.first(where: { $0.uuid == BluetoothUUID(0x180A) }) {
                identities[device.id] = await readIdentity(link, info)
            }
            if let battery = services.first(where: { $0.uuid == BluetoothUUID(0x180F) }) {
                await readBattery(device, link, battery)
            }
            setClockState(device.id, .unknown)
            if let cts = services.first(where: { $0.uuid == BluetoothUUID(0x1805) }) {
                setClockState(device.id, await synchroniseClock(device, link, cts))
            }
            if let sc = services.first(where: { $0.uuid == BluetoothUUID(0x1801) }),
               case .characteristics(let gattChars)? = try? await link.gattRequest(.discoverCharacteristics(start: sc.start, end: sc.end)),
               let changed = gattChars.first(where: { $0.uuid == BluetoothUUID(0x2A05) }) {
                await link.setServiceChangedHandle(changed.valueHandle)
            }
            guard case .characteristics(let chars) = try await link.gattRequest(.discoverCharacteristics(start: service.start, end: service.end)) else {
                return "unexpected discovery result"
            }
            if profile.usesRecordAccess {
                // Glucose: download the stored records with the RACP, then stay live (GlucoseDownload.swift).
                return try await runGlucose(device, link, service: service, characteristics: chars, hasBond: bond != nil)
            }
            if case .unknown? = clockStates[device.id], let dateTime = chars.first(where: { $0.uuid == BluetoothUUID(0x2A08) }) {
                // No Current Time Service, but the profile's service has a Date Time 0x2A08.
                setClockState(device.id, await synchroniseDateTime(device, link, dateTime))
            }
            var decoders: [UInt16: (BLEProfile.Measurement, MeasurementSession)] = [:]
            for m in profile.measurements {
                guard let idx = chars.firstIndex(where: { $0.uuid == BluetoothUUID(m.characteristic) }) else { continue }
                let c = chars[idx]
                let end = idx + 1 < chars.count ? chars[idx + 1].declarationHandle - 1 : service.end
                guard c.valueHandle < end,
                      case .descriptors(let ds) = try await link.gattRequest(.discoverDescriptors(start: c.valueHandle + 1, end: end)),
                      let cccd = ds.first(where: { $0.uuid == BluetoothUUID(0x2902) }) else { continue }
                do {
                    _ = try await link.gattRequest(.subscribe(cccdHandle: cccd.handle, indications: m.indicated))
                } catch {
                    if bond == nil, Self.needsSecurity(error) {
                        logger.error("the device requires pairing before it sends measurements: run `iomt-agent pair`",
                                     metadata: ["device": "\(device.id)"])
                        return "needs pairing"
                    }
                    throw error
                }
                decoders[c.valueHandle] = (m, m.makeSession())
            }
            guard !decoders.isEmpty else { return "no measurement characteristic to subscribe to" }
            logger.info("subscribed to measurements", metadata: ["device": "\(device.id)", "profile": "\(profile.name)"])
            for await event in link.events {
                switch event {
                case let .notification(handle, value), let .indication(handle, value):
                    guard let (m, session) = decoders[handle] else { continue }
                    await deliver(device, profile, m, session, value)
                case .securityRequested:
                    if let bond { _ = try? await link.encrypt(ltk: bond.ltk, ediv: bond.ediv, rand: bond.rand) }
                case .serviceChanged:
                    logger.info("the device's services changed; reconnecting to rediscover", metadata: ["device": "\(device.id)"])
                    return "services changed"
                case .disconnected(let reason):
                    return "disconnected: \(reason)"
                }
            }
            return "link ended"
        } catch {
            logger.warning("Bluetooth link failed", metadata: ["device": "\(device.id)", "error": "\(error)"])
            return "\(error)"
        }
    }

    /// Device Information as the reading's `device.info` (issue 6: DIS into the device identity).
    static func identityInfo(_ i: DeviceIdentity) -> [String: String] {
        var out: [String: String] = [:]
        out["manufacturer"] = i.manufacturer
        out["model"] = i.model
        out["firmware"] = i.firmwareRevision
        out["hardware"] = i.hardwareRevision
        out["software"] = i.softwareRevision
        out["system_id"] = i.systemID?.compactHex
        out["regulatory"] = i.regulatoryData.map { hex($0.raw) }
        return out
    }

    /// ATT said the link needs encryption or authentication (Core v5.4 Vol 3 Part F 3.4.1.1).
    static func needsSecurity(_ error: LinkError) -> Bool {
        guard case .gatt(let g) = error, case .att(let code, _) = g else { return false }
        return code == .insufficientEncryption || code == .insufficientAuthentication
    }

    /// The device clock's state on this link, and its measured offset on the status board (the
    /// clock-drift alert looks there).
    private func setClockState(_ id: String, _ state: DeviceClockState) {
        clockStates[id] = state
        if case .measuredOffset(let ms) = state { board.setClockOffset(id, ms) } else { board.setClockOffset(id, nil) }
    }

    /// Current Time Service 0x1805 (reference §10.5): read the device clock; set it from the
    /// gateway's when it is off by more than 8 s (or unknown) and the characteristic is writable,
    /// else remember the offset so measurement times are corrected and marked as such. The hub's
    /// clock is taken as UTC and the device's local time as UTC too (no Local Time Information).
    private func synchroniseClock(_ device: BLEDevice, _ link: LELink, _ service: GATTService) async -> DeviceClockState {
        guard case .characteristics(let chars)? = try? await link.gattRequest(.discoverCharacteristics(start: service.start, end: service.end)),
              let current = chars.first(where: { $0.uuid == BluetoothUUID(0x2A2B) }),
              case .value(let v)? = try? await link.gattRequest(.read(handle: current.valueHandle)) else { return .unknown }
        let now = clock.now()
        let deviceTime: CurrentTime
        do {
            deviceTime = try CurrentTime.decode(v)
        } catch {
            logger.warning("malformed Current Time ignored", metadata: ["device": "\(device.id)", "error": "\(error)"])
            return .unknown
        }
        if deviceTime.needsSetting(gatewayNow: now, utcOffsetMinutes: 0) && current.properties.contains(.write) {
            let value = CurrentTime(gatewayTime: clock.now(), utcOffsetMinutes: 0).encoded
            if (try? await link.gattRequest(.write(handle: current.valueHandle, value: value))) != nil {
                logger.info("device clock set from the gateway", metadata: ["device": "\(device.id)"])
                return .setByGateway
            }
        }
        guard let offset = deviceTime.offset(from: now, utcOffsetMinutes: 0) else { return .unknown }
        logger.info("device clock offset measured", metadata: ["device": "\(device.id)", "offset_ms": "\(offset)"])
        return .measuredOffset(milliseconds: offset)
    }

    /// Date Time 0x2A08 in the profile's service (reference §10.4), for devices without the
    /// Current Time Service: same policy (set when off by more than 8 s and writable, else offset).
    private func synchroniseDateTime(_ device: BLEDevice, _ link: LELink, _ c: GATTCharacteristic) async -> DeviceClockState {
        guard case .value(let v)? = try? await link.gattRequest(.read(handle: c.valueHandle)) else { return .unknown }
        let now = clock.now()
        guard let dt = try? DateTimeCharacteristic.decode(v), let deviceTime = DeviceTime(dt) else {
            logger.warning("malformed or unknown Date Time ignored", metadata: ["device": "\(device.id)"])
            return .unknown
        }
        let offset = deviceTime.instant(assumedUTCOffsetMinutes: 0).millisecondsSinceEpoch - now.millisecondsSinceEpoch
        if offset.magnitude > 8_000 && c.properties.contains(.write) {
            let value = DateTimeCharacteristic.encode(CurrentTime(gatewayTime: clock.now(), utcOffsetMinutes: 0).dateTime)
            if (try? await link.gattRequest(.write(handle: c.valueHandle, value: value))) != nil {
                logger.info("device clock set from the gateway (Date Time)", metadata: ["device": "\(device.id)"])
                return .setByGateway
            }
        }
        return .measuredOffset(milliseconds: offset)
    }

    /// Battery Level 0x2A19 (Battery Service 0x180F), read on each connection into the device's
    /// status (issue 6: battery into device status; `iomt-agent devices` shows it).
    private func readBattery(_ device: BLEDevice, _ link: LELink, _ service: GATTService) async {
        guard case .characteristics(let chars)? = try? await link.gattRequest(.discoverCharacteristics(start: service.start, end: service.end)),
              let level = chars.first(where: { $0.uuid == BluetoothUUID(0x2A19) }),
              case .value(let v)? = try? await link.gattRequest(.read(handle: level.valueHandle)) else { return }
        do {
            let status = try DeviceStatus.decodeBatteryLevel(v)
            if case .numeric(let percent) = status.battery.value, (0...100).contains(percent) {
                board.setBattery(device.id, Int(percent))
            } else {
                logger.warning("battery level out of range ignored", metadata: ["device": "\(device.id)"])
            }
        } catch {
            logger.warning("malformed battery level ignored", metadata: ["device": "\(device.id)", "error": "\(error)"])
        }
    }

    private func readIdentity(_ link: LELink, _ service: GATTService) async -> DeviceIdentity {
        var identity = DeviceIdentity()
        guard case .characteristics(let chars)? = try? await link.gattRequest(.discoverCharacteristics(start: service.start, end: service.end)) else {
            return identity
        }
        for c in chars {
            guard let u = c.uuid.uuid16, [0x2A29, 0x2A24, 0x2A25, 0x2A26, 0x2A27, 0x2A28, 0x2A23, 0x2A50, 0x2A2A].contains(u),
                  c.properties.contains(.read),
                  case .value(let v)? = try? await link.gattRequest(.read(handle: c.valueHandle)) else { continue }
            do { try identity.apply(uuid: u, value: v) } catch {
                logger.warning("malformed Device Information value ignored", metadata: ["uuid": "\(c.uuid)", "error": "\(error)"])
            }
        }
        return identity
    }

    private func deliver(_ device: BLEDevice, _ profile: BLEProfile, _ m: BLEProfile.Measurement,
                         _ session: MeasurementSession, _ value: [UInt8]) async {
        let all: [DecodedMeasurement]
        do {
            all = try session.decode(value)
        } catch {
            decodeErrors += 1
            logger.warning("malformed measurement dropped", metadata: ["device": "\(device.id)", "error": "\(error)"])
            return
        }
        for decoded in all { _ = await submitDecoded(device, profileName: profile.name, decoded) }
    }

    /// Hands one decoded measurement to the sink; true when it was accepted (durable).
    func submitDecoded(_ device: BLEDevice, profileName: String, _ decoded: DecodedMeasurement,
                       sourceCursor: String? = nil) async -> Bool {
        guard decoded.isPatientData else {
            logger.info("control-solution or test measurement not published", metadata: ["device": "\(device.id)"])
            return false
        }
        let received = clock.now()
        let (measured, quality) = resolveMeasurementTime(decoded.deviceTime, receivedAt: received,
                                                         clock: clockStates[device.id] ?? .unknown, gatewayUTCOffsetMinutes: 0)
        let reading = DeviceReading(
            device: DeviceRef(id: device.id, profile: profileName, transport: .ble,
                              serialNumber: identities[device.id]?.serialNumber,
                              info: identities[device.id].map(Self.identityInfo) ?? [:]),
            patientID: device.patientID, measuredAt: measured, receivedAt: received, timeQuality: quality,
            observations: decoded.observations, sourceCursor: sourceCursor,
            deviceStatus: decoded.statuses.map(\.rawValue))
        guard case .accepted = await sink.submit(reading) else { return false }
        lastReadingAt[device.id] = received
        let waiting = readingWaiters.filter { $0.device == device.id }
        readingWaiters.removeAll { $0.device == device.id }
        for w in waiting { w.continuation.resume(returning: received) }
        return true
    }

    /// The time of the first reading accepted from `deviceID` from now on, or nil after `timeout`
    /// (`pair` confirms with it that readings flow).
    public func firstReading(of deviceID: String, timeout: Duration) async -> Timestamp? {
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = Task {
            try? await Task.sleep(for: timeout)
            self.expireReadingWaiter(id)
        }
        defer { timer.cancel() }
        return await withCheckedContinuation { c in readingWaiters.append((id, deviceID, c)) }
    }

    private func expireReadingWaiter(_ id: Int) {
        guard let i = readingWaiters.firstIndex(where: { $0.id == id }) else { return }
        readingWaiters.remove(at: i).continuation.resume(returning: nil)
    }

    /// Adds (or replaces) one device of the allow-list.
    public func addDevice(_ device: BLEDevice) {
        var list = Array(devices.values.filter { $0.id != device.id })
        list.append(device)
        setDevices(list)
    }

    /// Removes one device from the allow-list; its session ends.
    public func removeDevice(id: String) {
        setDevices(devices.values.filter { $0.id != id })
    }

    // MARK: - Status, scan, pair, forget

    private func setState(_ id: String, _ state: String?) {
        linkState[id] = state
        guard let d = devices[id] else { board.remove(id); return }
        if let state {
            board.set(SourceStatus(deviceID: id, profile: d.profile, transport: .ble, connected: state == "connected", detail: state))
        } else {
            board.remove(id)
        }
    }

    /// Battery level in percent, as last read from the device (nil before the first connection).
    public func battery(of deviceID: String) -> Int? { board.battery(deviceID) }

    /// Per device: connected or why not (PHI-free).
    public func statuses() -> [SourceStatus] {
        devices.values.sorted { $0.id < $1.id }.map { d in
            let state = linkState[d.id] ?? "not started"
            return SourceStatus(deviceID: d.id, profile: d.profile, transport: .ble, connected: state == "connected", detail: state)
        }
    }

    /// The running host; waits up to `timeoutMs` for the controller to come up (start-up, or a
    /// controller being reopened).
    private func currentHost(timeoutMs: UInt64 = 5_000) async throws -> BluetoothHost {
        if let host { return host }
        let id = nextWaiterID
        nextWaiterID += 1
        let timer = Task {
            try? await Task.sleep(for: .milliseconds(Int64(timeoutMs)))
            self.expireHostWaiter(id)
        }
        defer { timer.cancel() }
        return try await withCheckedThrowingContinuation { c in hostWaiters.append((id, c)) }
    }

    private func expireHostWaiter(_ id: Int) {
        guard let i = hostWaiters.firstIndex(where: { $0.0 == id }) else { return }
        hostWaiters.remove(at: i).1.resume(throwing: BluetoothError("the Bluetooth controller is not available (see the agent's log)", kind: .unavailable))
    }

    /// Scans for `seconds`, reporting each device once per advertisement (the caller aggregates).
    public func scan(seconds: Int, report: @escaping @Sendable (ScanSighting) async -> Void) async throws {
        let h = try await currentHost()
        let adverts = await h.advertisements()
        let known = Set((try? bonds.loadAll())?.map(\.identity.address) ?? []).union(devices.values.map(\.address.address))
        let deadline = hostNow() + UInt64(max(1, seconds)) * 1000
        let stopper = Task { try? await Task.sleep(for: .seconds(max(1, seconds))) }
        await withTaskGroup(of: Void.self) { group in
            group.addTask { _ = await stopper.value }
            group.addTask {
                for await ad in adverts {
                    if hostNow() >= deadline { break }
                    let services = ad.data.serviceUUIDs
                    await report(ScanSighting(address: ad.address, name: ad.data.localName, rssi: ad.rssi, services: services,
                                         profile: BLEProfile.serving(services)?.name, paired: known.contains(ad.address.address)))
                }
            }
            _ = await group.next()
            group.cancelAll()
        }
    }

    /// Connects to `address`, pairs and bonds, reads Device Information, stores the bond.
    /// The caller binds the device to the patient (registry) and then calls `setDevices`.
    public func pair(address: BDAddress, profile requested: String?, delegate: PairingDelegate,
                     timeoutSeconds: Int = 30) async throws -> PairingOutcome {
        let h = try await currentHost()
        pairing.insert(address)
        defer { pairing.remove(address) }
        // Find it: its address type and services come from its advertisement.
        let adverts = await h.advertisements()
        let deadline = hostNow() + UInt64(timeoutSeconds) * 1000
        var found: BluetoothHost.Advertisement?
        let timeout = Task { try? await Task.sleep(for: .seconds(timeoutSeconds)) }
        let search = Task { () -> BluetoothHost.Advertisement? in
            for await ad in adverts where ad.address.address == address && ad.connectable { return ad }
            return nil
        }
        Task { _ = await timeout.value; search.cancel() }
        found = await search.value
        timeout.cancel()
        guard let ad = found, hostNow() <= deadline else {
            throw BluetoothError("\(address) was not found: is it advertising (pairing mode) and in range?", kind: .notFound)
        }
        let profileName = requested ?? BLEProfile.serving(ad.data.serviceUUIDs)?.name
        guard let profileName, BLEProfile.named(profileName) != nil else {
            throw BluetoothError("no profile serves \(address) (advertised services: \(ad.data.serviceUUIDs.map(\.description).joined(separator: ", "))); name one with --profile")
        }
        let link = try await withConnectGate { try await h.connect(to: ad.address, timeoutMs: self.options.connectTimeoutMs) }
        do {
            let result = try await link.pair(delegate)
            let identity = result.peerIdentity ?? ad.address
            let bond = Bond(identity: identity, ltk: result.ltk, ediv: result.ediv, rand: result.rand, keySize: result.keySize,
                            secureConnections: result.secureConnections, authenticated: result.authenticated,
                            irk: result.peerIRK, createdAt: clock.now())
            try bonds.save(bond)
            var info = DeviceIdentity()
            if case .services(let services)? = try? await link.gattRequest(.discoverPrimaryServices),
               let dis = services.first(where: { $0.uuid == BluetoothUUID(0x180A) }) {
                info = await readIdentity(link, dis)
            }
            await link.disconnect()
            logger.info("paired", metadata: ["peer": "\(identity)", "secure_connections": "\(result.secureConnections)"])
            return PairingOutcome(identity: identity, name: ad.data.localName, profile: profileName, identityInfo: info,
                                secureConnections: result.secureConnections, authenticated: result.authenticated)
        } catch {
            await link.disconnect()
            throw BluetoothError("pairing with \(address) failed: \(error)")
        }
    }

    /// Deletes a device's bond (discharge); its session ends if it is still allow-listed.
    public func forget(address: BDAddress) throws {
        try bonds.remove(address)
    }
}
