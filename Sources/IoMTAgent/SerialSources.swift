import IoMTConfig
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import Logging

/// The `serial:` entries as reading sources (issue 4). Each entry becomes one `SerialSource`
/// with its built-in profile, the profile's line settings overridden by the entry's, and the
/// OneTouch download watermarks kept under `<state_dir>/serial`.
public func makeSerialSources(config: AgentConfig, clock: any WallClock, logger: Logger) -> [any ReadingSource] {
    config.serial.compactMap { entry -> (any ReadingSource)? in
        guard let profile = SerialProfile.named(entry.profile.rawValue) else {
            logger.error("unknown serial profile; entry skipped", metadata: ["profile": "\(entry.profile.rawValue)", "id": "\(entry.id)"])
            return nil
        }
        let port: PortSpec
        switch entry.port {
        case .path(let p): port = .path(p)
        case let .usb(vendor, product, serial): port = .usb(USBMatch(vendorID: vendor, productID: product, serial: serial))
        }
        return SerialSource(
            configuration: .init(id: entry.id, patientID: entry.patient, profile: profile, port: port,
                                 lineSettings: lineSettings(entry, profile),
                                 reconnectMinMilliseconds: Int64(entry.reconnectMinMilliseconds),
                                 reconnectMaxMilliseconds: Int64(entry.reconnectMaxMilliseconds),
                                 watermarks: WatermarkStore(directory: config.stateDir + "/serial")),
            clock: clock, logger: logger)
    }
}

/// The entry's line settings: nil (the profile's, with its alternatives) unless it overrides any.
func lineSettings(_ entry: AgentConfig.Serial, _ profile: SerialProfile) -> LineSettings? {
    guard entry.baud != nil || entry.dataBits != nil || entry.parity != nil || entry.stopBits != nil
            || entry.hardwareFlowControl != nil, var s = profile.lineSettings.first else { return nil }
    if let b = entry.baud { s.baud = b }
    if let d = entry.dataBits { s.dataBits = d }
    if let p = entry.parity { s.parity = LineSettings.Parity(rawValue: p.rawValue) ?? s.parity }
    if let b = entry.stopBits { s.stopBits = b }
    if let r = entry.hardwareFlowControl { s.hardwareFlowControl = r }
    return s
}
