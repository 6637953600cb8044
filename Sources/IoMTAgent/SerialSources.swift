import IoMTConfig
import IoMTCore
import IoMTSerial
import IoMTSerialPort
import Logging

/// The `serial:` entries as reading sources (issue 4). Each entry becomes one `SerialSource`
/// with its built-in profile, the profile's line settings overridden by the entry's, and the
/// device's source cursor (the OneTouch download watermark) as the buffer stored it.
public func makeSerialSources(config: AgentConfig, clock: any WallClock, logger: Logger,
                              cursors: [String: String] = [:]) -> [any ReadingSource] {
    config.serial.compactMap { entry -> (any ReadingSource)? in
        let named: SerialProfile?
        if entry.profile == .line {
            named = lineProfile(entry, logger: logger).map { SerialProfile.line($0) }
        } else {
            named = SerialProfile.named(entry.profile.rawValue)
        }
        guard let profile = named else {
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
                                 storedCursor: cursors[entry.id]),
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

/// The entry's line profile: the document `AgentConfig.load` already read, or the file read now
/// (a configuration built with `parse(yaml:)`); nil, logged, if it cannot be read.
func lineProfile(_ entry: AgentConfig.Serial, logger: Logger) -> LineProfile? {
    var document = entry.lineProfileDocument
    if document == nil, let path = entry.lineProfile {
        do {
            document = try LineProfileDocument.load(path: path)
        } catch {
            logger.error("cannot load the line profile; entry skipped", metadata: ["id": "\(entry.id)", "problems": "\(error)"])
            return nil
        }
    }
    guard let d = document else { return nil }
    let fields = d.fields.map { f -> LineProfile.Field in
        switch f.kind {
        case let .measurement(mdc, unit, scale, min, max):
            let range: ClosedRange<Double>? = (min != nil || max != nil) ? (min ?? -.greatestFiniteMagnitude)...(max ?? .greatestFiniteMagnitude) : nil
            return .init(capture: f.capture, kind: .measurement(code: MDCCode(rawValue: mdc), unit: UCUMUnit(rawValue: unit),
                                                                 scale: scale, plausible: range))
        case let .flags(radix, bits):
            return .init(capture: f.capture, kind: .flags(radix: radix, rules: bits.map {
                LineProfile.FlagRule(mask: $0.mask, condition: DeviceCondition(rawValue: $0.condition),
                                     blocks: $0.status.map { ValueStatus(rawValue: $0) })
            }))
        }
    }
    return LineProfile(name: d.name,
                       lineSettings: LineSettings(baud: d.baud, dataBits: d.dataBits,
                                                  parity: LineSettings.Parity(rawValue: d.parity.rawValue) ?? .none,
                                                  stopBits: d.stopBits, hardwareFlowControl: d.hardwareFlowControl),
                       pattern: d.pattern, maxLineLength: d.maxLineLength, fields: fields)
}
