import IoMTCore

/// One AD structure: AD Type and its data, Core v5.4 Vol 3 Part C 11 and Core Specification Supplement Part A.
public struct ADStructure: Sendable, Hashable {
    public var type: UInt8
    public var data: [UInt8]
    public init(type: UInt8, data: [UInt8]) { self.type = type; self.data = data }
}

/// AD types used here (Assigned Numbers 2.3; Core Specification Supplement Part A 1.x).
public enum ADType {
    public static let flags: UInt8 = 0x01
    public static let incompleteUUID16: UInt8 = 0x02
    public static let completeUUID16: UInt8 = 0x03
    public static let incompleteUUID32: UInt8 = 0x04
    public static let completeUUID32: UInt8 = 0x05
    public static let incompleteUUID128: UInt8 = 0x06
    public static let completeUUID128: UInt8 = 0x07
    public static let shortenedLocalName: UInt8 = 0x08
    public static let completeLocalName: UInt8 = 0x09
    public static let txPowerLevel: UInt8 = 0x0A
    public static let serviceData16: UInt8 = 0x16
    public static let appearance: UInt8 = 0x19
    public static let serviceData32: UInt8 = 0x20
    public static let serviceData128: UInt8 = 0x21
    public static let manufacturerSpecific: UInt8 = 0xFF
}

/// Advertising or scan response data: a sequence of AD structures (Core v5.4 Vol 3 Part C 11).
public struct AdvertisingData: Sendable, Hashable {
    public var structures: [ADStructure]

    public init(_ structures: [ADStructure] = []) { self.structures = structures }

    /// Each structure is Length (1 octet, covering type + data), AD Type, data. A Length of 0
    /// ends the significant part (the rest is padding), Vol 3 Part C 11. A structure whose
    /// Length runs past the end throws, naming `AD_Data`.
    public static func parse(_ bytes: [UInt8]) throws(ByteReaderError) -> AdvertisingData {
        var r = ByteReader(bytes)
        var out: [ADStructure] = []
        while !r.isAtEnd {
            let len = try r.u8("AD_Length")
            if len == 0 { break }
            let t = try r.u8("AD_Type")
            out.append(ADStructure(type: t, data: Array(try r.bytes(Int(len) - 1, "AD_Data"))))
        }
        return AdvertisingData(out)
    }

    /// Encodes back to Length/Type/Data structures (data longer than 254 octets is truncated).
    public var bytes: [UInt8] {
        var b: [UInt8] = []
        for s in structures {
            let d = s.data.prefix(254)
            b += [UInt8(d.count + 1), s.type] + d
        }
        return b
    }

    private func first(_ type: UInt8) -> [UInt8]? { structures.first { $0.type == type }?.data }

    /// Flags (Supplement Part A 1.3).
    public var flags: UInt8? { first(ADType.flags)?.first }

    /// Complete Local Name if present, else Shortened (Supplement Part A 1.2); invalid UTF-8 is repaired.
    public var localName: String? {
        guard let d = first(ADType.completeLocalName) ?? first(ADType.shortenedLocalName) else { return nil }
        return String(decoding: d, as: UTF8.self)
    }

    /// All service UUIDs from complete and incomplete 16/32/128-bit lists (Supplement Part A 1.1), in order.
    public var serviceUUIDs: [BluetoothUUID] {
        var out: [BluetoothUUID] = []
        for s in structures {
            let width: Int
            switch s.type {
            case ADType.incompleteUUID16, ADType.completeUUID16: width = 2
            case ADType.incompleteUUID32, ADType.completeUUID32: width = 4
            case ADType.incompleteUUID128, ADType.completeUUID128: width = 16
            default: continue
            }
            var i = 0
            while i + width <= s.data.count {
                if let u = BluetoothUUID(wireBytes: s.data[i..<(i + width)]) { out.append(u) }
                i += width
            }
        }
        return out
    }

    /// Service Data for 16/32/128-bit UUIDs (Supplement Part A 1.11); the first occurrence wins.
    public var serviceData: [BluetoothUUID: [UInt8]] {
        var out: [BluetoothUUID: [UInt8]] = [:]
        for s in structures {
            let width: Int
            switch s.type {
            case ADType.serviceData16: width = 2
            case ADType.serviceData32: width = 4
            case ADType.serviceData128: width = 16
            default: continue
            }
            guard s.data.count >= width, let u = BluetoothUUID(wireBytes: s.data.prefix(width)) else { continue }
            if out[u] == nil { out[u] = Array(s.data.dropFirst(width)) }
        }
        return out
    }

    /// Service Data keyed by 16-bit UUID (type 0x16 only).
    public var serviceData16: [UInt16: [UInt8]] {
        var out: [UInt16: [UInt8]] = [:]
        for s in structures where s.type == ADType.serviceData16 && s.data.count >= 2 {
            let u = UInt16(s.data[0]) | UInt16(s.data[1]) << 8
            if out[u] == nil { out[u] = Array(s.data.dropFirst(2)) }
        }
        return out
    }

    /// Manufacturer Specific Data keyed by Company Identifier (Supplement Part A 1.4).
    public var manufacturerData: [UInt16: [UInt8]] {
        var out: [UInt16: [UInt8]] = [:]
        for s in structures where s.type == ADType.manufacturerSpecific && s.data.count >= 2 {
            let c = UInt16(s.data[0]) | UInt16(s.data[1]) << 8
            if out[c] == nil { out[c] = Array(s.data.dropFirst(2)) }
        }
        return out
    }

    /// Appearance (Supplement Part A 1.12).
    public var appearance: UInt16? {
        guard let d = first(ADType.appearance), d.count >= 2 else { return nil }
        return UInt16(d[0]) | UInt16(d[1]) << 8
    }

    /// TX Power Level in dBm (Supplement Part A 1.5).
    public var txPowerLevel: Int8? { first(ADType.txPowerLevel)?.first.map { Int8(bitPattern: $0) } }
}
