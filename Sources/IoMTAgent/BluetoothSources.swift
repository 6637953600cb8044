import IoMTBluetooth
import IoMTConfig
import IoMTControl
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import IoMTHealthProfiles
import IoMTRegistry
import IoMTSMP
import Logging

/// The `bluetooth:` section as one reading source (issue 5), or nil without the section. Its
/// allow-list: the devices configured there plus the Bluetooth devices of the registry (paired
/// from the CLI). A bad adapter string is a configuration error, reported before anything starts.
/// `cursors` are the source cursors the buffer stored (a glucose meter's download resumes there).
public func makeBluetoothSource(config: AgentConfig, registry: DeviceRegistry?, atRestKey: AtRestKey? = nil, clock: any WallClock,
                                logger: Logger, cursors: [String: String] = [:]) throws(AgentError) -> BluetoothSource? {
    guard let b = config.bluetooth else { return nil }
    let spec: HCITransportSpec
    do {
        spec = try HCITransportSpec(parsing: b.adapter)
    } catch {
        throw AgentError("bluetooth.adapter: \(error)")
    }
    var options = BluetoothServiceOptions(transport: spec, snoopPath: b.snoop, stateDirectory: config.stateDir)
    options.connectTimeoutMs = UInt64(b.connectTimeoutMilliseconds)
    options.reconnectMinMs = UInt64(b.reconnectMinMilliseconds)
    options.reconnectMaxMs = UInt64(b.reconnectMaxMilliseconds)
    options.bondKey = atRestKey?.subkey("bonds")
    options.cursors = cursors
    options.broadcasters = try b.broadcasters.map(makeBroadcaster)
    var devices: [BLEDevice] = []
    for d in b.devices {
        guard let address = BDAddress(d.address) else { throw AgentError("bluetooth.devices: bad address \(d.address)") }
        devices.append(BLEDevice(id: d.id, address: LEAddress(address, type: d.addressType == .public ? .publicDevice : .randomDevice),
                                 profile: d.profile.rawValue, patientID: d.patient))
    }
    let configured = Set(devices.map(\.id))
    for entry in registry.map(registeredBLEDevices) ?? [] where !configured.contains(entry.id) {
        devices.append(entry)
    }
    return BluetoothSource(options: options, devices: devices, clock: clock, logger: logger)
}

/// A `bluetooth.broadcasters` entry with its advertisement profile: the document
/// `AgentConfig.load` already read, or the file read now (a configuration built with `parse(yaml:)`).
func makeBroadcaster(_ entry: AgentConfig.Bluetooth.Broadcaster) throws(AgentError) -> BLEBroadcaster {
    var address: BDAddress?
    if let text = entry.address {
        guard let a = BDAddress(text) else { throw AgentError("bluetooth.broadcasters: bad address \(text)") }
        address = a
    }
    let document: AdvertisementProfileDocument
    if let d = entry.profileDocument {
        document = d
    } else {
        do {
            document = try AdvertisementProfileDocument.load(path: entry.profile)
        } catch {
            throw AgentError("bluetooth.broadcasters: \(error)")
        }
    }
    return BLEBroadcaster(id: entry.id, address: address, patientID: entry.patient, profile: advertisementProfile(document),
                          repeatWindowMs: UInt64(entry.repeatWindowSeconds) * 1000)
}

/// The configuration's advertisement profile document as the decoder's profile.
func advertisementProfile(_ d: AdvertisementProfileDocument) -> AdvertisementProfile {
    let source: AdvertisementProfile.Source
    switch d.source {
    case .serviceData(let uuid): source = .serviceData(uuid16: uuid)
    case .manufacturerData(let company): source = .manufacturerData(companyID: company)
    }
    func condition(_ c: AdvertisementProfileDocument.Condition) -> AdvertisementProfile.Condition {
        .init(offset: c.offset, mask: c.mask, equals: c.equals)
    }
    let fields = d.fields.compactMap { f -> AdvertisementProfile.Field? in
        // The two enumerations name the same encodings (a test pins it).
        guard let encoding = AdvertisementProfile.Encoding(rawValue: f.encoding.rawValue) else { return nil }
        return .init(name: f.name, offset: f.offset, encoding: encoding, scale: f.scale, offsetValue: f.offsetValue,
                     code: MDCCode(rawValue: f.mdc), unit: UCUMUnit(rawValue: f.unit), invalidRaw: f.invalidRaw,
                     when: f.when.map(condition))
    }
    return AdvertisementProfile(name: d.name, source: source, require: d.require.map(condition), fields: fields)
}

/// The registry's Bluetooth devices as allow-list entries.
func registeredBLEDevices(_ registry: DeviceRegistry) -> [BLEDevice] {
    registry.list().compactMap { e in
        guard e.transport == "ble", let text = e.address, let address = BDAddress(text) else { return nil }
        let type: AddressType = e.addressType == "public" ? .publicDevice : .randomDevice
        return BLEDevice(id: e.id, address: LEAddress(address, type: type), profile: e.profile, patientID: e.patientID)
    }
}

/// The control socket's `scan`, `pair` and bond deletion over the running Bluetooth service.
struct AgentBluetoothControl: BluetoothControl {
    let source: BluetoothSource
    let registry: DeviceRegistry
    /// How long `pair` waits for the first reading before it answers without one.
    var firstReadingTimeout: Duration = .seconds(30)

    var adapterDescription: String { get async { "\(source.options.transport)" } }

    func scan(seconds: Int, report: @escaping @Sendable (IoMTControl.ScanRow) async -> Void) async throws {
        let service = await source.service()
        try await service.scan(seconds: seconds) { s in
            await report(IoMTControl.ScanRow(
                address: s.address.address.description, addressType: s.address.type.isRandom ? "random" : "public",
                name: s.name, rssi: s.rssi.map { Int($0) }, services: s.services.map(\.description),
                profile: s.profile, paired: s.paired))
        }
    }

    func pair(address text: String, patient: String, profile: String?, passkey: PasskeyPrompt) async throws -> IoMTControl.PairedDevice {
        guard let address = BDAddress(text) else { throw BluetoothControlError(.invalidArgument, "not a Bluetooth address: \(text)") }
        let service = await source.service()
        // Ask for MITM-capable methods: the person at the terminal can type or compare digits.
        let delegate = PairingDelegate(
            ioCapability: .keyboardDisplay,
            passkey: { (try? await passkey.ask(.enterPasskey)).flatMap { if case .passkey(let n) = $0 { n } else { nil } } },
            display: { n in _ = try? await passkey.ask(.displayPasskey(n)) },
            confirm: { n in
                if case .confirmed(let ok)? = try? await passkey.ask(.confirmNumber(n)) { return ok }
                return false
            })
        let outcome: PairingOutcome
        do {
            outcome = try await service.pair(address: address, profile: profile, delegate: delegate)
        } catch let e as BluetoothError {
            throw BluetoothControlError(e.kind == .notFound ? .notFound : .pairingFailed, e.description)
        }
        let id = BLEDevice.defaultID(outcome.identity.address)
        await service.addDevice(BLEDevice(id: id, address: outcome.identity, profile: outcome.profile, patientID: patient))
        let first = await service.firstReading(of: id, timeout: firstReadingTimeout)
        return IoMTControl.PairedDevice(
            address: outcome.identity.address.description, addressType: outcome.identity.type.isRandom ? "random" : "public",
            profile: outcome.profile, name: outcome.name, manufacturer: outcome.identityInfo.manufacturer,
            model: outcome.identityInfo.model, serialNumber: outcome.identityInfo.serialNumber,
            firmware: outcome.identityInfo.firmwareRevision, firstReadingAt: first)
    }

    func forget(deviceID: String) async throws {
        let service = await source.service()
        await service.removeDevice(id: deviceID)
        if let text = registry.device(id: deviceID)?.address ?? deviceAddress(deviceID), let address = BDAddress(text) {
            try await service.forget(address: address)
        }
    }

    func linkStates() async -> [String: LinkState] {
        var out: [String: LinkState] = [:]
        for s in source.sourceStatuses {
            out[s.deviceID] = LinkState(connected: s.connected, battery: source.battery(of: s.deviceID), detail: s.detail)
        }
        return out
    }

    /// `ble-f0f1f2f3f401` → `F0:F1:F2:F3:F4:01` (the registry entry is already gone on discharge).
    private func deviceAddress(_ id: String) -> String? { BluetoothDeviceID.address(of: id) }
}
