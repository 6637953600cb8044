import IoMTCore

/// A Bluetooth device address (BD_ADDR), Core v5.4 Vol 6 Part B 1.3.
///
/// `bytes` are in HCI/air order (least-significant octet first); `description` prints the
/// conventional most-significant-first form `C0:11:22:33:44:55`.
public struct BDAddress: Hashable, Sendable, CustomStringConvertible, Comparable {
    /// Least-significant octet first, as on the wire.
    public let bytes: [UInt8]

    /// From 6 octets in wire order (LSB first). Returns nil unless exactly 6 octets.
    public init?(wireBytes: some Collection<UInt8>) {
        guard wireBytes.count == 6 else { return nil }
        self.bytes = Array(wireBytes)
    }

    /// From wire-order octets, zero-padded or truncated to 6 (for decoders that already read exactly 6).
    init(padding wire: some Collection<UInt8>) {
        self.bytes = Array((Array(wire) + [0, 0, 0, 0, 0, 0]).prefix(6))
    }

    /// From text `AA:BB:CC:DD:EE:FF` (MSB first, case-insensitive, `-` also accepted).
    public init?(_ text: String) {
        let parts = text.split(whereSeparator: { $0 == ":" || $0 == "-" })
        guard parts.count == 6 else { return nil }
        var out: [UInt8] = []
        for p in parts.reversed() {
            guard p.count == 2, let v = UInt8(p, radix: 16) else { return nil }
            out.append(v)
        }
        self.bytes = out
    }

    public var description: String {
        bytes.reversed().map { b in
            let s = String(b, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined(separator: ":")
    }

    /// The two most significant bits of a random address, Core v5.4 Vol 6 Part B 1.3.2.
    public var randomSubtype: RandomAddressSubtype {
        switch bytes[5] >> 6 {
        case 0b11: return .staticAddress
        case 0b01: return .resolvablePrivate
        case 0b00: return .nonResolvablePrivate
        default: return .reserved
        }
    }

    public static func < (a: BDAddress, b: BDAddress) -> Bool {
        a.bytes.reversed().lexicographicallyPrecedes(b.bytes.reversed())
    }
}

/// Sub-types of a random device address, Core v5.4 Vol 6 Part B 1.3.2.
public enum RandomAddressSubtype: Sendable, Hashable {
    case staticAddress, resolvablePrivate, nonResolvablePrivate, reserved
}

/// LE address type as HCI carries it (Core v5.4 Vol 4 Part E 7.7.65.2 / 7.8.12).
/// Open: unknown values survive.
public struct AddressType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    public static let publicDevice = AddressType(rawValue: 0x00)
    public static let randomDevice = AddressType(rawValue: 0x01)
    /// Public identity address (resolved by the controller).
    public static let publicIdentity = AddressType(rawValue: 0x02)
    /// Random (static) identity address (resolved by the controller).
    public static let randomIdentity = AddressType(rawValue: 0x03)
    /// Anonymous advertisement (extended advertising report only).
    public static let anonymous = AddressType(rawValue: 0xFF)

    public var isRandom: Bool { rawValue == 0x01 || rawValue == 0x03 }
    public var description: String {
        switch rawValue {
        case 0: return "public"
        case 1: return "random"
        case 2: return "public-identity"
        case 3: return "random-identity"
        case 0xFF: return "anonymous"
        default: return "type-0x\(String(rawValue, radix: 16))"
        }
    }
}

/// An address together with its type: what identifies an LE peer on the air.
public struct LEAddress: Hashable, Sendable, CustomStringConvertible {
    public var address: BDAddress
    public var type: AddressType
    public init(_ address: BDAddress, type: AddressType) {
        self.address = address
        self.type = type
    }
    public var description: String { "\(address)/\(type)" }
}

/// An HCI connection handle (12 bits), Core v5.4 Vol 4 Part E 5.4.2.
public struct ConnectionHandle: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    public init(rawValue: UInt16) { self.rawValue = rawValue & 0x0FFF }
    public var description: String { "0x" + String(rawValue, radix: 16) }
}
