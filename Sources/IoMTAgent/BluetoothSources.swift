import IoMTBluetooth
import IoMTConfig
import IoMTCore
import IoMTHCI
import IoMTHCITransport
import Logging

/// The `bluetooth:` section as one reading source (issue 5), or nil without the section.
/// A bad adapter string is a configuration error, reported before anything starts.
public func makeBluetoothSource(config: AgentConfig, clock: any WallClock, logger: Logger) throws(AgentError) -> BluetoothSource? {
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
    var devices: [BLEDevice] = []
    for d in b.devices {
        guard let address = BDAddress(d.address) else { throw AgentError("bluetooth.devices: bad address \(d.address)") }
        devices.append(BLEDevice(id: d.id, address: LEAddress(address, type: d.addressType == .public ? .publicDevice : .randomDevice),
                                 profile: d.profile.rawValue, patientID: d.patient))
    }
    return BluetoothSource(options: options, devices: devices, clock: clock, logger: logger)
}
