import IoMTCore

/// System ID 0x2A23: `manufacturer-defined identifier u40 | OUI u24` (little-endian).
/// GSS §3.216 System ID; reference §10.1.
public struct SystemID: Hashable, Sendable {
    /// The 8 octets as sent on the air (always 8: only `decode` makes a `SystemID`).
    public private(set) var onAir: [UInt8]

    public static func decode(_ bytes: [UInt8]) throws -> SystemID {
        var r = ByteReader(bytes)
        return SystemID(onAir: Array(try r.bytes(8, "system id")))
    }

    public var manufacturerIdentifier: UInt64 { (0..<5).reduce(0) { $0 | UInt64(onAir[$1]) << (8 * UInt64($1)) } }
    public var organizationallyUniqueIdentifier: UInt32 { UInt32(onAir[5]) | UInt32(onAir[6]) << 8 | UInt32(onAir[7]) << 16 }
    /// EUI-64 = OUI ‖ manufacturer identifier (the SIG example 0x123456FFFE9ABCDE).
    public var eui64: UInt64 { UInt64(organizationallyUniqueIdentifier) << 40 | manufacturerIdentifier }

    /// The PHD identifier text: 8 upper-case hex pairs joined by "-".
    ///
    /// Rule chosen (reference §13.9): the **on-air byte order**, as in the PHD IG's Nonin example
    /// (`74-E8-FF-FE-FF-05-1C-00` for BT MAC 00-1C-05-FF-E8-74), so identifiers match what
    /// IG-conformant gateways send. Stable: it feeds the de-duplication identifier.
    public var phdIdentifier: String { onAir.map { hex2($0) }.joined(separator: "-") }
    /// The same without dashes (the device part of the IG conditional-create identifier, §12.2).
    public var compactHex: String { onAir.map { hex2($0) }.joined() }
}

func hex2(_ b: UInt8) -> String {
    let h = Array("0123456789ABCDEF")
    return String([h[Int(b >> 4)], h[Int(b & 0xF)]])
}

/// PnP ID 0x2A50: `vendor-ID source u8 | vendor ID u16 | product ID u16 | product version u16`.
public struct PnPID: Hashable, Sendable {
    public var vendorIDSource: UInt8
    public var vendorID: UInt16
    public var productID: UInt16
    public var productVersion: UInt16

    public init(vendorIDSource: UInt8, vendorID: UInt16, productID: UInt16, productVersion: UInt16) {
        self.vendorIDSource = vendorIDSource; self.vendorID = vendorID; self.productID = productID; self.productVersion = productVersion
    }

    public static func decode(_ bytes: [UInt8]) throws -> PnPID {
        var r = ByteReader(bytes)
        return PnPID(vendorIDSource: try r.u8("vendor id source"), vendorID: try r.u16le("vendor id"),
                     productID: try r.u16le("product id"), productVersion: try r.u16le("product version"))
    }
}

/// IEEE 11073-20601 Regulatory Certification Data List 0x2A2A: MDER, **big-endian**
/// (reference §10.2, §13.1): `count u16 | length u16 | count × {auth-body u8 | struct type u8 |
/// length u16 | data}`. The raw bytes are always kept; entries when they parse.
public struct RegulatoryCertificationData: Hashable, Sendable {
    public struct Entry: Hashable, Sendable {
        public var authorizingBody: UInt8
        public var structureType: UInt8
        public var data: [UInt8]
        public init(authorizingBody: UInt8, structureType: UInt8, data: [UInt8]) {
            self.authorizingBody = authorizingBody; self.structureType = structureType; self.data = data
        }
    }
    public var raw: [UInt8]
    public var entries: [Entry]

    public static func decode(_ bytes: [UInt8]) throws -> RegulatoryCertificationData {
        var r = ByteReader(bytes)
        let count = try r.u16be("reg cert count")
        let length = try r.u16be("reg cert length")
        guard Int(length) <= r.remaining else {
            throw HealthDecodeError(field: "reg cert length", reason: "\(length) > \(r.remaining) octets left")
        }
        var entries: [Entry] = []
        for _ in 0..<count {
            let body = try r.u8("reg cert auth body")
            let type = try r.u8("reg cert struct type")
            let n = try r.u16be("reg cert data length")
            entries.append(Entry(authorizingBody: body, structureType: type, data: Array(try r.bytes(Int(n), "reg cert data"))))
        }
        return RegulatoryCertificationData(raw: bytes, entries: entries)
    }
}

/// The identity of a device, from the Device Information Service 0x180A (reference §10.1).
public struct DeviceIdentity: Hashable, Sendable {
    public var manufacturer: String?
    public var model: String?
    public var serialNumber: String?
    public var hardwareRevision: String?
    public var firmwareRevision: String?
    public var softwareRevision: String?
    public var systemID: SystemID?
    public var pnpID: PnPID?
    public var regulatoryData: RegulatoryCertificationData?

    public init() {}

    /// DIS UTF-8 strings (0x2A24-0x2A29): invalid UTF-8 is replaced, trailing NULs and spaces
    /// dropped, control characters removed, at most 256 characters kept.
    public static func string(_ bytes: [UInt8]) -> String? {
        var b = bytes
        while let last = b.last, last == 0 || last == 0x20 { b.removeLast() }
        let s = String(decoding: b, as: UTF8.self)
        let clean = String(String.UnicodeScalarView(s.unicodeScalars.filter { $0.value >= 0x20 && $0.value != 0x7F }).prefix(256))
        return clean.isEmpty ? nil : clean
    }

    /// Applies one DIS characteristic value by its UUID (0x2A23-0x2A29, 0x2A2A, 0x2A50); unknown
    /// UUIDs are ignored.
    public mutating func apply(uuid: UInt16, value: [UInt8]) throws {
        switch uuid {
        case 0x2A29: manufacturer = Self.string(value)
        case 0x2A24: model = Self.string(value)
        case 0x2A25: serialNumber = Self.string(value)
        case 0x2A27: hardwareRevision = Self.string(value)
        case 0x2A26: firmwareRevision = Self.string(value)
        case 0x2A28: softwareRevision = Self.string(value)
        case 0x2A23: systemID = try SystemID.decode(value)
        case 0x2A50: pnpID = try PnPID.decode(value)
        case 0x2A2A: regulatoryData = try RegulatoryCertificationData.decode(value)
        default: break
        }
    }

    /// A device id stable across Bluetooth address changes (issue 6): the system id
    /// (`sysid-<16 hex>`), else manufacturer/model/serial (`serial-<…>`), else nil (the host then
    /// uses the bonded identity address).
    public var stableID: String? {
        if let s = systemID { return "sysid-" + s.compactHex }
        if let serial = serialNumber {
            let parts = [manufacturer, model, serial].map { ($0 ?? "").filter { $0.isLetter || $0.isNumber || $0 == "-" || $0 == "." } }
            return "serial-" + parts.joined(separator: "_")
        }
        return nil
    }
}

/// Battery Level 0x2A19 (Battery Service 0x180F): u8 0-100 %. GSS §3.27; reference §10.3.
public struct DeviceStatus: Hashable, Sendable {
    /// `MDC_ATTR_VAL_BATT_CHARGE` 67996 `%`; a value above 100 is `.outOfRange`.
    public var battery: Observation

    public static func decodeBatteryLevel(_ bytes: [UInt8]) throws -> DeviceStatus {
        var r = ByteReader(bytes)
        let level = try r.u8("battery level")
        return DeviceStatus(battery: makeObservation(.batteryCharge, .numeric(Double(level)), .percent))
    }
}
