/// A Bluetooth UUID: 16-, 32- or 128-bit, Core v5.4 Vol 3 Part B 2.5.1.
///
/// Stored as the full 128-bit value in wire order (least-significant octet first), so a 16-bit
/// UUID and its 128-bit form over the Base UUID compare equal.
public struct BluetoothUUID: Hashable, Sendable, CustomStringConvertible {
    /// 16 octets, least-significant first (the order ATT and AD structures carry).
    public let bytes128: [UInt8]

    /// Base UUID 00000000-0000-1000-8000-00805F9B34FB, LSB first.
    static let base: [UInt8] = [0xFB, 0x34, 0x9B, 0x5F, 0x80, 0x00, 0x00, 0x80,
                                0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00]

    public init(_ short: UInt16) {
        var b = Self.base
        b[12] = UInt8(short & 0xFF)
        b[13] = UInt8(short >> 8)
        bytes128 = b
    }

    public init(uuid32: UInt32) {
        var b = Self.base
        b[12] = UInt8(uuid32 & 0xFF)
        b[13] = UInt8((uuid32 >> 8) & 0xFF)
        b[14] = UInt8((uuid32 >> 16) & 0xFF)
        b[15] = UInt8(uuid32 >> 24)
        bytes128 = b
    }

    private init(wire128: [UInt8]) { bytes128 = wire128 }

    /// From 2, 4 or 16 octets in wire order (LSB first); nil for any other length.
    public init?(wireBytes: some Collection<UInt8>) {
        let a = Array(wireBytes)
        switch a.count {
        case 2: self.init(UInt16(a[0]) | UInt16(a[1]) << 8)
        case 4: self.init(uuid32: UInt32(a[0]) | UInt32(a[1]) << 8 | UInt32(a[2]) << 16 | UInt32(a[3]) << 24)
        case 16: self.init(wire128: a)
        default: return nil
        }
    }

    /// The 16-bit alias when this UUID is on the Base UUID and fits 16 bits.
    public var uuid16: UInt16? {
        guard Array(bytes128[0..<12]) == Array(Self.base[0..<12]), bytes128[14] == 0, bytes128[15] == 0 else { return nil }
        return UInt16(bytes128[12]) | UInt16(bytes128[13]) << 8
    }

    /// Shortest wire form: 2 octets when on the Base UUID with a 16-bit alias, else 16.
    public var shortestWireBytes: [UInt8] {
        if let s = uuid16 { return [UInt8(s & 0xFF), UInt8(s >> 8)] }
        return bytes128
    }

    public var description: String {
        if let s = uuid16 {
            let h = String(s, radix: 16, uppercase: true)
            return "0x" + String(repeating: "0", count: 4 - h.count) + h
        }
        let hex = bytes128.reversed().map { b -> String in
            let s = String(b, radix: 16, uppercase: true)
            return s.count == 1 ? "0" + s : s
        }.joined()
        let c = Array(hex)
        return String(c[0..<8]) + "-" + String(c[8..<12]) + "-" + String(c[12..<16]) + "-"
            + String(c[16..<20]) + "-" + String(c[20..<32])
    }
}
